"""The clips a video becomes under ``cuts`` (``curation.signals.plan_pieces``): kept whole, the encoded video as it
is; split at its shot cuts, each piece's frames encoded on their own with the piece's window in the source file.
Every stage that reads video makes its samples' video through :func:`encode_pieces`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.signals import Piece
from media.video import decode_frames, encode_mp4


@dataclass(frozen=True)
class PieceClip:
    """One sample's video: its piece, H.264 bytes, even size and window (seconds in the source file)."""

    piece: Piece
    mp4: bytes
    width: int
    height: int
    start: float | None
    end: float | None
    whole: bool  # the video kept as one sample (its key and window are the video's own)

    @property
    def frames(self) -> int:
        return self.piece.end - self.piece.start

    def meta(self) -> dict[str, Any]:
        """The ``.json`` fields that describe this clip (size, window, shot, cuts inside it, motion)."""
        p = self.piece
        return {
            "frames": self.frames, "width": self.width, "height": self.height, "start": self.start, "end": self.end,
            "shot": p.shot, "cuts": None if p.cuts is None else list(p.cuts), "motion": p.motion,
        }  # fmt: skip


def is_whole(pieces: Sequence[Piece], frames: int) -> bool:
    """True when the plan keeps the video as one sample of all its ``frames``."""
    return len(pieces) == 1 and (pieces[0].start, pieces[0].end) == (0, frames)


def encode_pieces(
    pieces: Sequence[Piece],
    total: int,
    fps: float,
    window: tuple[float | None, float | None],
    cfg: Any,
    mp4: bytes | None = None,
    frames: np.ndarray | None = None,
    size: tuple[int, int] | None = None,
) -> list[PieceClip]:
    """One :class:`PieceClip` per piece of a video of ``total`` frames whose window in its source is ``window``.

    Kept whole, ``mp4`` (of ``size`` = (width, height)) is used as it is when given; otherwise each piece is cut
    from ``frames`` (``[F, H, W, 3]``; decoded from ``mp4`` when not given) and encoded with ``cfg``'s ``crf``,
    ``preset`` and ``threads``.
    """
    whole = is_whole(pieces, total)
    if whole and mp4 is not None and size is not None:
        return [PieceClip(pieces[0], mp4, size[0], size[1], window[0], window[1], True)]
    if frames is None:
        if mp4 is None:
            raise ValueError("encode_pieces needs the frames or the encoded video")
        frames = decode_frames(mp4)[0]  # our own small output, not the source again
    clips = []
    for p in pieces:
        clip = frames[p.start : p.end]
        data = encode_mp4(clip, fps, cfg.crf, cfg.preset, cfg.threads)
        h, w = clip.shape[1] - clip.shape[1] % 2, clip.shape[2] - clip.shape[2] % 2
        if whole:
            start, end = window
        else:
            start = (window[0] or 0.0) + p.start / fps
            end = start + (p.end - p.start) / fps
        clips.append(PieceClip(p, data, w, h, start, end, whole))
    return clips
