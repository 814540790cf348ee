"""The curation stages by name: one table that the command line reads for its choices (without importing any
stage, so ``--help`` answers at once) and that :func:`build_stage` reads to make one."""

from __future__ import annotations

import importlib
from dataclasses import fields
from typing import Any

# name -> "module:Class" of the stage (its config dataclass is the class's ``config_class``)
STAGE_CLASSES = {
    "captioned": "curation.stages.captioned:CaptionedStage",
    "pseudo-videos": "curation.stages.pseudo_videos:PseudoVideoStage",
    "short-videos": "curation.stages.short_videos:ShortVideosStage",
    "long-videos": "curation.stages.long_videos:LongVideosStage",
}
STAGE_NAMES = tuple(sorted(STAGE_CLASSES))


def stage_class(name: str) -> Any:
    """The stage class registered as ``name``; ValueError naming the known ones otherwise."""
    if name not in STAGE_CLASSES:
        raise ValueError(f"unknown stage {name!r}; choose one of {list(STAGE_NAMES)}")
    module, cls = STAGE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_stage(name: str, config: dict[str, Any], seed: int) -> Any:
    """The stage object for ``name`` with its config section (every setting checked)."""
    cls = stage_class(name)
    cfg_cls = cls.config_class
    allowed = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"stage {name}: unknown settings {unknown} (allowed: {sorted(allowed)})")
    return cls(cfg_cls(**config), seed=seed)
