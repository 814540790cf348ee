"""Moments in Time (v2) as released.

Layout::

    ROOT/trainingSet.csv, ROOT/validationSet.csv    (no header) <label>/<file>,<label>,<agree>,<disagree>
    ROOT/training/<label>/<file>, ROOT/validation/<label>/<file>
"""

from __future__ import annotations

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    csv_records,
    read_text,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "moments"
SPLITS = {"trainingSet.csv": "training", "validationSet.csv": "validation"}


def build(root: str) -> BuildResult:
    """Source manifest of Moments in Time under ``root``."""
    fs, base = url_to_fs(root)
    present = [(name, split) for name, split in SPLITS.items() if fs.exists(f"{base}/{name}")]
    if not present:
        raise ManifestBuildError(f"{root}/trainingSet.csv not found (nor validationSet.csv)")
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    for name, split in present:
        path = f"{base}/{name}"
        for line, rec, error in csv_records(read_text(path, root)):
            where = f"{path}:{line}"
            if rec is None:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: {error}")
                continue
            if not rec or not any(c.strip() for c in rec):
                continue
            if len(rec) < 2 or not rec[0].strip():
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: expected <file>,<label>,...")
                continue
            rel, label = rec[0].strip(), rec[1].strip() or None
            uri = files.rel(f"{split}/{rel}") or files.rel(rel)
            if uri is None:
                out.reject(rel, SOURCE, RejectReason.MISSING_FILE, f"{where}: no file {split}/{rel}")
                continue
            out.rows.append(video_row(id=rel, uri=uri, source=SOURCE, label=label, split=split, where=where))
    return out
