"""Reading one manifest row's input as a stage needs it: the file's bytes (never a web page saved under a media
name), its trim window, its captions, its class label; each a clear reject when missing or malformed."""

from __future__ import annotations

import math
from typing import Any

import fsspec

from curation.stage import Rejected
from manifests.schema import RejectReason


def read_input(uri: str) -> bytes:
    """The bytes of an input file (local path or fsspec URL), or :class:`Rejected` when missing/empty."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.exists(path):
            raise Rejected(RejectReason.MISSING_FILE, f"{uri}: no such file")
        with fs.open(path, "rb") as f:
            data = f.read()
    except Rejected:
        raise
    except OSError as e:
        raise Rejected(RejectReason.MISSING_FILE, f"{uri}: cannot read ({e})") from e
    if not data:
        raise Rejected(RejectReason.EMPTY_FILE, f"{uri}: empty file (0 bytes)")
    return data


def looks_like_html(data: bytes) -> bool:
    """True for files that are web pages saved under a media extension (a common download failure)."""
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


def read_video_input(uri: str) -> bytes:
    """:func:`read_input`, refusing a web page saved under a video name (``not_a_video``)."""
    data = read_input(uri)
    if looks_like_html(data):
        raise Rejected(RejectReason.NOT_A_VIDEO, f"{uri}: an HTML/XML page, not a video")
    return data


def trim_of(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """The row's ``(start, end)`` trim in seconds (None: from the beginning / to the end); a value that is not a
    time (NaN, infinite, negative) is the row's own ``bad_annotation`` reject, not a decoder failure."""
    for name in ("start", "end"):
        v = row.get(name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise Rejected(RejectReason.BAD_ANNOTATION, f"{name}={v!r} is not a time in seconds >= 0")
    return row.get("start"), row.get("end")


def captions_of(row: dict[str, Any]) -> list[str]:
    """The row's non-empty captions, stripped; :class:`Rejected` (``no_caption``) when there is none."""
    captions = [c.strip() for c in (row.get("captions") or []) if c and c.strip()]
    if not captions:
        raise Rejected(RejectReason.NO_CAPTION, f"{row['id']}: no caption")
    return captions


def label_of(row: dict[str, Any], why: str) -> str:
    """The row's class label as words (:func:`curation.captioning.readable_label`); :class:`Rejected`
    (``no_label``) when it has none. ``why`` says what the stage needs it for."""
    from curation.captioning import readable_label

    label = readable_label(row.get("label") or "")
    if not label:
        raise Rejected(RejectReason.NO_LABEL, f"{row['id']}: no class label ({why})")
    return label
