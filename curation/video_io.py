"""Video decode and encode with PyAV (FFmpeg): the one place the pipeline touches codecs."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

Source = str | bytes


class VideoDecodeError(ValueError):
    """The input is not a decodable video (empty, truncated, not a container, no video stream)."""


@dataclass(frozen=True)
class VideoInfo:
    """Basic facts about a decoded video stream."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def _open(src: Source) -> av.container.InputContainer:
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise VideoDecodeError("empty input (0 bytes)")
        return av.open(io.BytesIO(bytes(src)), mode="r")
    return av.open(src, mode="r")


def decode_frames(src: Source, indices: list[int] | None = None) -> tuple[np.ndarray, VideoInfo]:
    """Decode RGB frames ``[F, H, W, 3]`` uint8 (all, or the given frame indices) and the stream info.

    Frame counts come from decoding, not from the container header, which is often wrong.
    """
    wanted = None if indices is None else set(indices)
    frames: list[np.ndarray] = []
    count = 0
    try:
        with _open(src) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            for frame in container.decode(stream):
                if wanted is None or count in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                count += 1
            width, height = stream.codec_context.width, stream.codec_context.height
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"cannot decode: {e}") from e
    if count == 0:
        raise VideoDecodeError("no frames decoded")
    if wanted is not None:
        missing = sorted(i for i in wanted if i >= count or i < 0)
        if missing:
            raise VideoDecodeError(f"frame indices {missing[:5]} out of range for {count} frames")
    arr = np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)
    return arr, VideoInfo(frames=count, fps=fps, width=width, height=height)


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 20, preset: str = "veryfast") -> bytes:
    """Encode ``[F, H, W, 3]`` uint8 RGB frames as H.264 (yuv420p) in MP4, returned as bytes.

    yuv420p needs even sizes, so an odd last row or column is cropped.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    if h < 2 or w < 2:
        raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} too small to encode")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
