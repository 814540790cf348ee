"""Pexels videos with their metadata table (as in the Hugging Face ``pexelvideos`` release).

Layout::

    ROOT/*.parquet | *.parquet.gzip | *.csv    one row per video; columns used:
        id (or derived from ``loc``/``url``: the last path part), title | caption | description,
        duration (optional), width/height (optional)
    ROOT/videos/<id>.mp4                       (any depth works: files are found by id)
"""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    parse_duration,
    read_text,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "pexels"
CAPTION_COLUMNS = ("caption", "title", "description")


def _records(fs, path: str, root: str) -> list[dict]:
    if path.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(read_text(path, root))))
    with fs.open(path, "rb") as f:
        return pq.read_table(f).to_pylist()


def _id_of(rec: dict) -> str | None:
    if rec.get("id") not in (None, ""):
        return str(rec["id"]).strip()
    for col in ("loc", "url", "content_url"):
        v = rec.get(col)
        if v:
            return str(v).rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return None


def _int(v) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def build(root: str) -> BuildResult:
    """Source manifest of a Pexels folder under ``root``."""
    fs, base = url_to_fs(root)
    tables = (
        sorted(p for p in fs.ls(base, detail=False) if p.endswith((".parquet", ".parquet.gzip", ".csv")))
        if fs.exists(base)
        else []
    )
    if not tables:
        raise ManifestBuildError(f"{root}: no metadata table (*.parquet, *.parquet.gzip or *.csv) found")
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    for path in tables:
        for i, rec in enumerate(_records(fs, path, root)):
            where = f"{path} row {i}"
            vid = _id_of(rec)
            if not vid:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: no id, loc or url column value")
                continue
            caption = next((str(rec[c]).strip() for c in CAPTION_COLUMNS if rec.get(c)), "")
            try:
                duration = parse_duration(rec.get("duration"))
            except ValueError as e:
                out.reject(vid, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: {e}")
                continue
            uri = files.stem(vid)
            if uri is None:
                out.reject(vid, SOURCE, RejectReason.MISSING_FILE, f"{where}: no video file named {vid}.*")
                continue
            out.rows.append(
                video_row(
                    id=vid,
                    uri=uri,
                    source=SOURCE,
                    captions=[caption] if caption else [],
                    duration=duration,
                    width=_int(rec.get("width")),
                    height=_int(rec.get("height")),
                )
            )
    return out
