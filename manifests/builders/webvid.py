"""WebVid-2M / 10M as released.

Layout::

    ROOT/results_2M_train.csv (and results_2M_val.csv, results_10M_*.csv)
        videoid,contentUrl,duration,page_dir,name      duration is ISO-8601, e.g. PT00H00M11S
    ROOT/videos/<page_dir>/<videoid>.mp4              (any depth works: files are found by id)

Every row goes into the manifest with its duration; the ``captioned`` stage keeps those < 20 s.
"""

from __future__ import annotations

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    csv_dicts,
    parse_duration,
    read_text,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "webvid"


def build(root: str) -> BuildResult:
    """Source manifest of WebVid under ``root``."""
    fs, base = url_to_fs(root)
    csvs = sorted(fs.glob(f"{base}/results_*.csv"))
    if not csvs:
        raise ManifestBuildError(f"{root}/results_*.csv not found (e.g. results_2M_train.csv)")
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    for path in csvs:
        split = "val" if "_val" in path.rsplit("/", 1)[-1] else "train"
        header, records = csv_dicts(read_text(path, root))
        needed = {"videoid", "duration", "name"}
        if not header or not needed <= set(header):
            raise ManifestBuildError(f"{path}: header must contain {sorted(needed)}, got {header}")
        for line, rec, error in records:
            where = f"{path}:{line}"
            if rec is None:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: {error}")
                continue
            vid = (rec.get("videoid") or "").strip()
            if not vid:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: empty videoid")
                continue
            try:
                duration = parse_duration(rec.get("duration"))
            except ValueError as e:
                out.reject(vid, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: {e}")
                continue
            page_dir = (rec.get("page_dir") or "").strip()
            uri = files.rel(f"videos/{page_dir}/{vid}.mp4") or files.stem(vid)
            if uri is None:
                out.reject(vid, SOURCE, RejectReason.MISSING_FILE, f"{where}: no video file named {vid}.*")
                continue
            caption = (rec.get("name") or "").strip()
            out.rows.append(
                video_row(
                    id=vid,
                    uri=uri,
                    source=SOURCE,
                    captions=[caption] if caption else [],
                    duration=duration,
                    split=split,
                    where=where,
                )
            )
    return out
