"""The one way a curation stage turns an input video into the clips it ships: resize (decoder -> swscale -> H.264
without leaving YUV, or through RGB when the video needs a crop or the stage edits pixels), the checks every video
output must pass, the clip plan at shot cuts and motion (:func:`curation.signals.plan_pieces`) and the encoding of
each clip (:func:`curation.pieces.encode_pieces`). A stage adds only its own logic around it: what it filters, which
window it reads, how it captions.

    video = resize_video(data, uri, cfg, start, end, cfg.max_frames)
    video.require_frames(cfg.min_frames)
    clips, events = video.clips(cfg, (row.get("start"), row.get("end")))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.pieces import PieceClip, encode_pieces
from curation.signals import analysis_frames, cut_mode, plan_pieces, small_sink
from curation.stage import Rejected
from curation.video_settings import VideoOutputConfig
from manifests.schema import RejectReason
from media.video import VideoDecodeError, VideoInfo, decode_frames, decode_resized, transcode_resized


@dataclass
class ResizedVideo:
    """A video at the stage's output size: encoded (``mp4``, the YUV fast path) or as RGB ``frames`` ``[F, H, W, 3]``
    (the crop or pixel-editing path); ``thumbs`` are the decoder's small analysis copies on the fast path."""

    name: str  # how reject messages name the video (its URI, and the segment when a stage reads several)
    src: VideoInfo
    out: VideoInfo
    mp4: bytes | None
    frames: np.ndarray | None
    thumbs: list[np.ndarray]

    def require_frames(self, min_frames: int) -> None:
        """:class:`Rejected` ``too_short`` under ``min_frames`` output frames, ``undecodable`` without a frame rate."""
        if self.out.frames < min_frames:
            raise Rejected(RejectReason.TOO_SHORT, f"{self.out.frames} frames < {min_frames}")
        if not self.src.fps or self.src.fps <= 0:
            raise Rejected(RejectReason.UNDECODABLE, f"{self.name}: no frame rate")

    def source_meta(self) -> dict[str, Any]:
        """The ``.json`` fields that describe the source video (frame rate and size as decoded)."""
        s = self.src
        return {"fps": s.fps, "source_frames": s.frames, "source_width": s.width, "source_height": s.height}

    def clips(
        self,
        cfg: VideoOutputConfig,
        window: tuple[float | None, float | None],
        edit: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[list[PieceClip], list[str]]:
        """The clips this video becomes under ``cfg``'s cut and motion settings, encoded, and the events of what
        was left out; ``window`` is the video's (start, end) in its source file. ``edit`` changes the RGB frames
        before they are encoded (after the signals are measured on them). Raises what
        :func:`~curation.signals.plan_pieces` raises (``has_cut``, ``static``, ``too_short``)."""
        fast = self.mp4 is not None
        small = analysis_frames(cfg, self.thumbs if fast else None, self.frames, self.out.frames)
        pieces, events = plan_pieces(small, cut_mode(cfg), cfg.cut_threshold, cfg.min_motion, cfg.min_frames,
                                     cfg.cut_detector, cfg.cut_device)  # fmt: skip
        mp4, frames = self.mp4, self.frames
        if edit is not None:
            frames = edit(frames if frames is not None else decode_frames(mp4)[0])
            mp4 = None
        size = (self.out.width, self.out.height) if mp4 is not None else None
        clips = encode_pieces(pieces, self.out.frames, self.src.fps, window, cfg, mp4=mp4, frames=frames, size=size)
        return clips, events


def resize_video(
    data: bytes,
    name: str,
    cfg: VideoOutputConfig,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    rgb: bool = False,
) -> ResizedVideo:
    """``data``'s frames inside [start, end) seconds (at most ``max_frames``), centre-cropped to ``cfg.max_aspect``
    and resized to ``cfg.short_side``: encoded straight from YUV unless the video needs a crop or ``rgb`` asks for
    the pixels. A video the decoder cannot read is the ``undecodable`` reject naming ``name``."""
    thumbs: list[np.ndarray] = []
    args = (data, cfg.short_side, cfg.max_aspect, start, end, max_frames)
    try:
        fast = None if rgb else transcode_resized(*args, cfg.crf, cfg.preset, cfg.threads, small_sink(cfg, thumbs))
        if fast is not None:
            mp4, src, out = fast
            return ResizedVideo(name, src, out, mp4, None, thumbs)
        frames, src, out = decode_resized(*args, cfg.threads)
    except VideoDecodeError as e:
        raise Rejected(RejectReason.UNDECODABLE, f"{name}: {e}") from e
    return ResizedVideo(name, src, out, None, frames, [])
