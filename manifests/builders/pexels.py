"""Pexels videos with their metadata table (as in the Hugging Face ``pexelvideos`` release).

Layout::

    ROOT/*.parquet | *.parquet.gzip | *.csv    one row per video; columns used:
        id (or derived from ``loc``/``url``: the last path part), title | caption | description,
        duration (optional), width/height (optional)
    ROOT/videos/<id>.mp4                       (any depth works: files are found by id)
"""

from __future__ import annotations

from collections.abc import Iterator

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    csv_dicts,
    parse_duration,
    read_parquet,
    read_text,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "pexels"
CAPTION_COLUMNS = ("caption", "title", "description")


def _records(fs, path: str, root: str) -> Iterator[tuple[str, dict | None, str | None]]:
    """``(where, row, error)`` for every row of a CSV or Parquet metadata table."""
    if path.endswith(".csv"):
        _, rows = csv_dicts(read_text(path, root))
        for line, rec, error in rows:
            yield f"{path}:{line}", rec, error
        return
    for i, rec in enumerate(read_parquet(fs, path).to_pylist()):
        yield f"{path} row {i}", rec, None


def _id_of(rec: dict) -> str | None:
    v = rec.get("id")
    if isinstance(v, float):  # a numeric column read as floats: 123.0 is the video 123
        return str(int(v)) if v.is_integer() else None
    if v not in (None, ""):
        return str(v).strip()
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
        for where, rec, error in _records(fs, path, root):
            if rec is None:
                out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: {error}")
                continue
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
                    where=where,
                )
            )
    return out
