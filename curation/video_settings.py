"""Checks of the video-output settings every stage shares (short side, aspect limit, encoder), run when a
stage's config is built: a setting that cannot work is an error naming it before any input is read, not a
reject of every input (which would blame the data)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from curation.signals import check_signal_settings
from media.video import encode_mp4
from shards.clips import MIN_CLIP_FRAMES


@lru_cache(maxsize=32)
def _encoder_error(crf: int, preset: str) -> str | None:
    try:
        encode_mp4(np.zeros((2, 16, 16, 3), dtype=np.uint8), 8.0, crf, preset, 1)
    except Exception as e:  # whatever libav says about the option
        return f"{type(e).__name__}: {e}"
    return None


def check_video_settings(
    short_side: int, max_aspect: float, crf: int, preset: str, threads: int, min_frames: int = 1,
    max_frames: int | None = None,
) -> None:  # fmt: skip
    """ValueError naming the first setting that cannot work; H.264 settings are tried on one tiny clip."""
    if not isinstance(short_side, int) or short_side < 16 or short_side % 2:
        raise ValueError(f"short_side must be an even number >= 16, got {short_side!r}")
    if not isinstance(max_aspect, (int, float)) or not math.isfinite(max_aspect) or max_aspect < 1:
        raise ValueError(f"max_aspect must be a finite number >= 1 (long side / short side), got {max_aspect!r}")
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51] (H.264 quality), got {crf!r}")
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
    if not isinstance(min_frames, int) or min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < min_frames):
        raise ValueError(f"max_frames must be an integer >= min_frames ({min_frames}), got {max_frames!r}")
    error = _encoder_error(crf, str(preset))
    if error is not None:
        raise ValueError(f"preset={preset!r} (with crf={crf}) is not accepted by the H.264 encoder ({error})")


def check_box(name: str, box: tuple[float, float, float, float]) -> None:
    """A relative box (x0, y0, x1, y1) inside the frame with positive area."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be 4 numbers (x0, y0, x1, y1) relative to the frame, got {box!r}") from e
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"{name} must lie inside the frame with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {box!r}")


@dataclass
class VideoOutputConfig:
    """The video-output settings every stage shares (a stage's config extends it; YAML keeps them flat):

    ``short_side`` (even, >= 16) after centre-cropping to at most ``max_aspect`` (long side / short side);
    ``min_frames``: fewer frames is a ``too_short`` reject (default: what the trainer cuts, ``shards.clips``);
    ``crf`` and ``preset`` of the H.264 encoder; ``threads``: codec and OpenCV threads per task (Ray runs one
    task per CPU).

    Shot cuts and motion (``curation.signals``, on small copies of the decoded frames): ``cuts`` ``split`` (each
    shot of at least ``min_frames`` becomes its own sample, keys ``...-sNNNN``), ``drop`` (a video with a cut is a
    ``has_cut`` reject) or ``keep`` (cut positions only recorded in ``.json``); ``cut_threshold``: PySceneDetect's
    content threshold (27, its default; lower finds more); ``cut_detector``: ``content`` (PySceneDetect) or
    ``transnetv2`` (a learned detector, ``curation.models.transnet``; ``cut_threshold`` does not apply) on
    ``cut_device`` (``cpu``, ``cuda`` or ``auto``; a GPU in a Ray task needs ``runner.num_gpus_per_task``);
    ``min_motion``: clips moving less (percent of the frame width per frame) are ``static`` rejects, 0 keeps all.
    Every sample records ``cuts`` and ``motion`` in its ``.json`` and the index; ``signals: false`` computes
    neither (their cost is in ``benchmarks/RESULTS.md``)."""

    short_side: int = 256
    max_aspect: float = 2.0
    min_frames: int = MIN_CLIP_FRAMES
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 1
    cuts: str = "keep"
    cut_threshold: float = 27.0
    cut_detector: str = "content"
    cut_device: str = "cpu"
    min_motion: float = 0.0
    signals: bool = True

    def __post_init__(self) -> None:
        check_video_settings(self.short_side, self.max_aspect, self.crf, self.preset, self.threads, self.min_frames,
                             getattr(self, "max_frames", None))  # fmt: skip
        check_signal_settings(self.cuts, self.cut_threshold, self.min_motion, self.signals, self.cut_detector)
        if self.cut_device not in ("cpu", "cuda", "auto") and not str(self.cut_device).startswith("cuda:"):
            raise ValueError(f"cut_device must be cpu, cuda, cuda:N or auto, got {self.cut_device!r}")
