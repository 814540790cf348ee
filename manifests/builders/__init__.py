"""Builders that turn each dataset's published layout into a source manifest.

Each module exposes ``build(root) -> BuildResult``; :data:`BUILDERS` maps source names to them.
"""

from __future__ import annotations

from collections.abc import Callable

from manifests.builders import kinetics, laion, moments, pexels, tgif, vatex, videolt, webvid
from manifests.builders.common import BuildResult, ManifestBuildError

BUILDERS: dict[str, Callable[[str], BuildResult]] = {
    "kinetics700": kinetics.build,
    "moments": moments.build,
    "videolt": videolt.build,
    "laion": laion.build,
    "webvid": webvid.build,
    "tgif": tgif.build,
    "vatex": vatex.build,
    "pexels": pexels.build,
}

__all__ = ["BUILDERS", "BuildResult", "ManifestBuildError"]
