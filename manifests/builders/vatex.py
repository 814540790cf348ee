"""VATEX as released.

Layout::

    ROOT/vatex_training_v1.0.json, vatex_validation_v1.0.json, vatex_public_test_english_v1.1.json
        [{"videoID": "<youtube_id>_<start:06d>_<end:06d>", "enCap": [10 English captions], ...}]
    ROOT/videos/<videoID>.mp4      (trimmed clips; any depth works)

All English captions are kept; the trainer picks one at random each time a sample is read.
"""

from __future__ import annotations

import json

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    read_text,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "vatex"


def _split_of(name: str) -> str:
    for s in ("training", "validation", "test"):
        if s in name:
            return s
    return "unknown"


def build(root: str) -> BuildResult:
    """Source manifest of VATEX under ``root``."""
    fs, base = url_to_fs(root)
    jsons = sorted(fs.glob(f"{base}/vatex_*.json"))
    if not jsons:
        raise ManifestBuildError(f"{root}/vatex_*.json not found (e.g. vatex_training_v1.0.json)")
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    for path in jsons:
        try:
            items = json.loads(read_text(path, root))
        except json.JSONDecodeError as e:
            raise ManifestBuildError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
        except RecursionError as e:
            raise ManifestBuildError(f"{path}: JSON nested too deeply to read") from e
        if not isinstance(items, list):
            raise ManifestBuildError(f"{path}: expected a JSON list of {{videoID, enCap}} objects")
        split = _split_of(path.rsplit("/", 1)[-1])
        for i, item in enumerate(items):
            where = f"{path}[{i}]"
            vid = item.get("videoID") if isinstance(item, dict) else None
            if isinstance(vid, int) and not isinstance(vid, bool):
                vid = str(vid)
            if not isinstance(vid, str) or not vid.strip():
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: no videoID (a non-empty string)")
                continue
            vid = vid.strip()
            caps_in = item.get("enCap")
            if isinstance(caps_in, str):  # one caption given bare instead of in a list
                caps_in = [caps_in]
            if caps_in is not None and not isinstance(caps_in, list):
                out.reject(vid, SOURCE, RejectReason.BAD_ANNOTATION,
                           f"{where}: enCap must be a list of strings, got {type(caps_in).__name__}")  # fmt: skip
                continue
            caps = [c.strip() for c in (caps_in or []) if isinstance(c, str) and c.strip()]
            uri = files.stem(vid)
            if uri is None:
                out.reject(vid, SOURCE, RejectReason.MISSING_FILE, f"{where}: no video file named {vid}.*")
                continue
            out.rows.append(video_row(id=vid, uri=uri, source=SOURCE, captions=caps, split=split, where=where))
    return out
