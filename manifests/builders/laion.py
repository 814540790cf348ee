"""LAION image-text pairs as img2dataset writes them (``--output_format files``).

Layout::

    ROOT/<shard:05d>/<key>.<jpg|png|webp>   the image
    ROOT/<shard:05d>/<key>.txt              its caption
    ROOT/<shard:05d>/<key>.json             url, caption, width, height, ... (optional)
    ROOT/<shard:05d>.parquet                key, url, caption, status, ... (optional)

Every image with a caption becomes a row. A parquet row whose download succeeded but whose image is
not on disk is a reject; rows img2dataset itself marked as failed are rejects too, so the counts of
a LAION subset add up from the url list on.
"""

from __future__ import annotations

import json
import posixpath

from manifests.builders.common import (
    IMAGE_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    read_parquet,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "laion"


def _sidecar(fs, image_path: str, ext: str) -> str | None:
    p = image_path.rsplit(".", 1)[0] + ext
    if not fs.exists(p):
        return None
    with fs.open(p, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _size(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def build(root: str) -> BuildResult:
    """Source manifest of an img2dataset folder under ``root``."""
    fs, base = url_to_fs(root)
    if not fs.exists(base):
        raise ManifestBuildError(f"{root}: no such folder")
    files = FileIndex(root, IMAGE_EXTENSIONS)
    tables = [p for p in sorted(fs.glob(f"{base}/*.parquet"))]
    if not len(files) and not tables:
        raise ManifestBuildError(f"{root}: no images and no img2dataset parquet files found")
    out = BuildResult()
    seen: set[str] = set()
    for rel, uri in sorted(files.by_rel.items()):
        key = posixpath.basename(rel).rsplit(".", 1)[0]
        fs_path = f"{base}/{rel}"
        caption = _sidecar(fs, fs_path, ".txt")
        meta: dict = {}
        raw = _sidecar(fs, fs_path, ".json")
        if raw:
            try:
                meta = json.loads(raw)
            except json.JSONDecodeError:
                meta = {}
            if not isinstance(meta, dict):  # img2dataset writes an object; anything else carries nothing we use
                meta = {}
        if caption is None:
            caption = meta.get("caption")
        seen.add(key)
        if caption is None:
            out.reject(key, SOURCE, RejectReason.NO_CAPTION, f"{uri}: no .txt caption beside the image", uri)
            continue
        out.rows.append(
            video_row(
                id=key,
                uri=uri,
                source=SOURCE,
                kind="image",
                captions=[caption.strip()],
                width=_size(meta.get("width")),
                height=_size(meta.get("height")),
                where=uri,
            )
        )
    for path in tables:
        t = read_parquet(fs, path)
        if "key" not in t.column_names:
            raise ManifestBuildError(f"{path}: expected a 'key' column (img2dataset metadata parquet)")
        cols = t.to_pydict()
        status = cols.get("status", ["success"] * t.num_rows)
        errors = cols.get("error_message", [None] * t.num_rows)
        for i, key in enumerate(cols["key"]):
            key = str(key)  # img2dataset writes strings; a table with integer keys still names its rows
            if key in seen:
                continue
            seen.add(key)
            if status[i] != "success":
                msg = f"{path} row {i}: img2dataset status {status[i]!r}: {errors[i] or ''}".strip()
                out.reject(key, SOURCE, RejectReason.MISSING_FILE, msg, (cols.get("url") or [""] * t.num_rows)[i])
            else:
                out.reject(key, SOURCE, RejectReason.MISSING_FILE, f"{path} row {i}: image {key}.* not on disk")
    return out
