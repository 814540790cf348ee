"""What a curation stage is: a pure function from one manifest row to samples or a reject.

The runner (``curation.runner``) owns partitioning, Ray, shard writing and resumption; a stage only
turns a row into :class:`~shards.writer.Sample` objects, or says why it cannot.
"""

from __future__ import annotations

import hashlib
import os
import traceback
from abc import ABC, abstractmethod
from typing import Any, ClassVar

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


class BrokenEnvironmentError(RuntimeError):
    """The worker process cannot run the stage at all: a library that does not import there. A property of the
    process or its node, never of an input, so it fails the task (Ray retries it in a new process) instead of
    rejecting every input the process is given."""


def broken_environment(e: BaseException) -> BrokenEnvironmentError | None:
    """The :class:`BrokenEnvironmentError` an exception from a stage means, or None for one about the input.

    An ``ImportError`` (a missing or unloadable library, a module left half-imported in this process) and the
    ``AttributeError`` of a partially initialized module say nothing about the row being processed.
    """
    if isinstance(e, ImportError) or (isinstance(e, AttributeError) and "partially initialized module" in str(e)):
        return BrokenEnvironmentError(f"the worker's Python environment cannot run the stage: {describe_error(e)}")
    return None


def internal_error(e: BaseException) -> Rejected:
    """The ``internal_error`` reject for an exception a stage did not foresee (:func:`describe_error`).

    An exception that says the process cannot run the stage at all (:func:`broken_environment`) is no input's
    reject: it is raised as :class:`BrokenEnvironmentError`, which fails the task instead.
    """
    broken = broken_environment(e)
    if broken is not None:
        raise broken from e
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

    def base_meta(self, row: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """The ``.json`` fields every sample of every stage carries (the input it came from, the stage and version
        that made it, the run seed), and the stage's own ``fields``."""
        return {"source": row["source"], "source_id": row["id"], "stage": self.name, "stage_version": self.version,
                "seed": self.seed, **fields}  # fmt: skip

    def rng_seed(self, input_id: str) -> int:
        """The seed of everything random about one input's samples (prompt templates, camera paths, question
        order): :func:`sample_seed` of the run seed, the stage's name and the input id. The same for every stage,
        so a sample is reproducible from its ``.json`` (``seed`` and ``source_id``) and two stages that read the
        same id draw independently."""
        return sample_seed(self.seed, self.name, input_id)


def sample_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from the run seed and a sample's identity (stable across processes and runs)."""
    h = hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") >> 1


def set_cv2_threads(threads: int) -> None:
    """Limit OpenCV's own thread pool (process-wide); 0 leaves OpenCV's default."""
    if threads:
        import cv2

        cv2.setNumThreads(threads)
