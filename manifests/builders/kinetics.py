"""Kinetics-700 (2020) as the CVDF downloader leaves it.

Layout::

    ROOT/annotations/{train,val,validate,test}.csv   label,youtube_id,time_start,time_end,split
    ROOT/{train,val,test}/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4  (test: no label folder)

Clips are already trimmed, so a file is found by its clip id wherever it lies under ROOT.
"""

from __future__ import annotations

import math

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    csv_dicts,
    read_text,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "kinetics700"


def clip_id(youtube_id: str, start: float, end: float) -> str:
    """The file stem the downloader gives a clip."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def build(root: str) -> BuildResult:
    """Source manifest of Kinetics-700 under ``root``."""
    fs, base = url_to_fs(root)
    ann_dir = f"{base}/annotations"
    csvs = sorted(p for p in fs.glob(f"{ann_dir}/*.csv")) if fs.exists(ann_dir) else []
    if not csvs:
        raise ManifestBuildError(
            f"{root}/annotations/*.csv not found: Kinetics-700 ships train.csv, validate.csv and test.csv "
            "with columns label,youtube_id,time_start,time_end,split"
        )
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    for path in csvs:
        header, records = csv_dicts(read_text(path, root))
        needed = {"youtube_id", "time_start", "time_end"}
        if not header or not needed <= set(header):
            raise ManifestBuildError(f"{path}: header must contain {sorted(needed)}, got {header}")
        for line, rec, error in records:
            where = f"{path}:{line}"
            if rec is None:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: {error}")
                continue
            yt = (rec.get("youtube_id") or "").strip()
            try:
                start, end = float(rec["time_start"]), float(rec["time_end"])
            except (TypeError, ValueError):
                start = end = float("nan")
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
                msg = f"{where}: time_start/time_end must be finite seconds with 0 <= start <= end"
                out.reject(yt or where, SOURCE, RejectReason.BAD_ANNOTATION, msg)
                continue
            if not yt:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: empty youtube_id")
                continue
            cid = clip_id(yt, start, end)
            uri = files.stem(cid)
            if uri is None:
                out.reject(cid, SOURCE, RejectReason.MISSING_FILE, f"{where}: no video file named {cid}.*")
                continue
            label = (rec.get("label") or "").strip() or None
            split = (rec.get("split") or "").strip() or None
            out.rows.append(
                video_row(id=cid, uri=uri, source=SOURCE, label=label, duration=end - start, split=split, where=where)
            )
    return out
