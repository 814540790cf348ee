"""Builders that turn each dataset's published layout into a source manifest.

Each module exposes ``build(root) -> BuildResult``; :data:`BUILDERS` maps source names to them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from manifests.builders.common import BuildResult, ManifestBuildError
from manifests.sources import BUILDER_MODULES

BUILDERS: dict[str, Callable[[str], BuildResult]] = {
    name: importlib.import_module(module).build for name, module in BUILDER_MODULES.items()
}

__all__ = ["BUILDERS", "BuildResult", "ManifestBuildError"]
