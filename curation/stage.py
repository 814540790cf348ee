"""What a curation stage is: a pure function from one manifest row to samples or a reject.

The runner (``curation.runner``) owns partitioning, Ray, shard writing and resumption; a stage only
turns a row into :class:`~shards.writer.Sample` objects, or says why it cannot.
"""

from __future__ import annotations

import hashlib
import math
import os
import traceback
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import fsspec

from manifests.schema import RejectReason
from shards.writer import Sample


class Rejected(Exception):
    """Raised inside a stage for an input that produces nothing; becomes a ``_rejects.parquet`` row."""

    def __init__(self, reason: RejectReason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self):  # crosses process boundaries (Ray) with both arguments
        return type(self), (self.reason, self.message)


# A reject message stays readable in a table and a terminal; the place it was raised is kept whatever the length.
MAX_ERROR_MESSAGE = 1000


def describe_error(e: BaseException) -> str:
    """``Type: message (at folder/file.py:line)`` for an exception nobody foresaw: the message cut once to
    :data:`MAX_ERROR_MESSAGE` characters, the place the innermost frame of its traceback (where it was raised)."""
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 1] + "…"
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return text
    where = frames[-1]
    path = os.path.join(os.path.basename(os.path.dirname(where.filename)), os.path.basename(where.filename))
    return f"{text} (at {path}:{where.lineno})"


def internal_error(e: BaseException) -> Rejected:
    """The ``internal_error`` reject for an exception a stage did not foresee (:func:`describe_error`)."""
    return Rejected(RejectReason.INTERNAL_ERROR, describe_error(e))


class StageBase(ABC):
    """A curation stage: ``name`` and ``version`` (recorded in every sample), ``process`` (one row -> samples or
    :class:`Rejected`), and what every stage shares: its config (an instance of ``config_class``, a
    :class:`~curation.video_settings.VideoOutputConfig`), the run seed, the codec and OpenCV threads, and the one
    rule for a sample's random draws (:meth:`rng_seed`)."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    config_class: ClassVar[type]

    def __init__(self, config: Any = None, seed: int = 0):
        self.cfg = config if config is not None else self.config_class()
        self.seed = seed
        set_cv2_threads(self.cfg.threads)

    @abstractmethod
    def process(self, row: dict[str, Any]) -> list[Sample]:
        """Samples made from one manifest row; raise :class:`Rejected` when there are none."""

    def rng_seed(self, input_id: str) -> int:
        """The seed of everything random about one input's samples (prompt templates, camera paths, question
        order): :func:`sample_seed` of the run seed, the stage's name and the input id. The same for every stage,
        so a sample is reproducible from its ``.json`` (``seed`` and ``source_id``) and two stages that read the
        same id draw independently."""
        return sample_seed(self.seed, self.name, input_id)


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


def trim_of(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """The row's ``(start, end)`` trim in seconds (None: from the beginning / to the end); a value that is not a
    time (NaN, infinite, negative) is the row's own ``bad_annotation`` reject, not a decoder failure."""
    for name in ("start", "end"):
        v = row.get(name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise Rejected(RejectReason.BAD_ANNOTATION, f"{name}={v!r} is not a time in seconds >= 0")
    return row.get("start"), row.get("end")


def sample_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from the run seed and a sample's identity (stable across processes and runs)."""
    h = hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") >> 1


def looks_like_html(data: bytes) -> bool:
    """True for files that are web pages saved under a media extension (a common download failure)."""
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


def set_cv2_threads(threads: int) -> None:
    """Limit OpenCV's own thread pool (process-wide); 0 leaves OpenCV's default."""
    if threads:
        import cv2

        cv2.setNumThreads(threads)


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


def read_video_input(uri: str) -> bytes:
    """:func:`read_input`, refusing a web page saved under a video name (``not_a_video``)."""
    data = read_input(uri)
    if looks_like_html(data):
        raise Rejected(RejectReason.NOT_A_VIDEO, f"{uri}: an HTML/XML page, not a video")
    return data
