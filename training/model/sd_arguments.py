"""The constructor arguments a VidRD model hands on to the diffusers 2D model it inflates."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any


def sd_arguments(config: Mapping[str, Any], diffusers_class: type) -> dict[str, Any]:
    """The entries of a model's registered config that ``diffusers_class`` takes as constructor arguments (the
    temporal layers' own settings are not among them), lists as tuples: a config read back from JSON holds lists
    where the constructor was given tuples."""
    names = inspect.signature(diffusers_class.__init__).parameters
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
