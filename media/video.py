"""Video decode and encode with PyAV (FFmpeg): the one place the pipeline touches codecs."""

from __future__ import annotations

import functools
import io
import itertools
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

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


def _video_stream(
    container: av.container.InputContainer, threads: int = 0
) -> tuple[av.video.stream.VideoStream, float]:
    """The first video stream, set up for decoding, and its frame rate (0 when unknown)."""
    if not container.streams.video:
        raise VideoDecodeError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if threads:
        stream.codec_context.thread_count = threads
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return stream, float(rate) if rate else 0.0


def decode_frames(src: Source, indices: list[int] | None = None) -> tuple[np.ndarray, VideoInfo]:
    """Decode RGB frames ``[F, H, W, 3]`` uint8 (all, or the given frame indices) and the stream info.

    Frame counts come from decoding, not from the container header, which is often wrong. Frames and sizes are
    upright, as a player shows them (the display matrix applied), here and in every decoder of this module.
    """
    wanted = None if indices is None else set(indices)
    frames: list[np.ndarray] = []
    count = turns = 0
    scale = VideoReformatter()
    try:
        with _open(src) as container:
            stream, fps = _video_stream(container)
            for frame in container.decode(stream):
                if count == 0:
                    turns = _turns(frame)
                if wanted is None or count in wanted:
                    frames.append(_upright(_rgb(frame, scale), turns))
                count += 1
            width, height = _display_size(stream.codec_context.width, stream.codec_context.height, turns)
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


# x264's CPU flag names, each with the /proc/cpuinfo flag that says the CPU has it, in x264's order (AVX-512 left out).
_X264_ASM = (("MMX2", "sse"), ("SSE", "sse"), ("SSE2", "sse2"), ("SSE3", "pni"), ("SSSE3", "ssse3"),
             ("SSE4.1", "sse4_1"), ("SSE4.2", "sse4_2"), ("LZCNT", "abm"), ("AVX", "avx"), ("FMA3", "fma"),
             ("BMI1", "bmi1"), ("BMI2", "bmi2"), ("AVX2", "avx2"))  # fmt: skip


def x264_asm(cpu_flags: set[str]) -> str | None:
    """x264's ``asm`` setting for a CPU with ``cpu_flags`` (as /proc/cpuinfo names them): every instruction set x264
    would pick except AVX-512, or None (x264 detects) on a CPU without AVX-512.

    With its AVX-512 routines x264 reads memory it never wrote: the same frames, encoded twice in one process with
    one thread, came out as 2 different byte streams in 25 encodes (a 64x48 clip, crf 20, veryfast), and the curation
    tests' shards differed between runs. Up to AVX2 the output is one stream every time, the one most AVX-512 runs
    give, at the same speed.
    """
    if not any(f.startswith("avx512") for f in cpu_flags):
        return None
    return ",".join(name for name, flag in _X264_ASM if flag in cpu_flags) or None


@functools.cache
def _cpu_flags() -> frozenset[str]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def h264_options(crf: int, preset: str) -> dict[str, str]:
    """libx264's options: ``crf`` and ``preset``, and the instruction sets that keep its output byte-identical
    from run to run (see :func:`x264_asm`)."""
    options = {"crf": str(crf), "preset": preset}
    asm = x264_asm(set(_cpu_flags()))
    if asm:
        options["x264-params"] = f"asm={asm}"
    return options


def _add_h264(container: Any, width: int, height: int, fps: float, crf: int, preset: str, threads: int) -> Any:
    """An H.264 (yuv420p) output stream at ``fps`` on an open output container."""
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = h264_options(crf, preset)
    if threads:
        stream.codec_context.thread_count = threads
    return stream


def to_yuv420p(frame: Any, scale: VideoReformatter | None = None) -> Any:
    """The frame in the encoder's pixel format, converted here with swscale's defaults rather than inside the
    encoder, so every path hands libx264 frames made the same way.

    ``scale`` is the caller's swscale context, one per video (a new one per frame without it). Never
    ``frame.reformat``: PyAV keeps one context per thread for it, and a process forked after using it (a
    DataLoader worker) inherits its slice threads and hangs the first time the frame size changes.
    """
    return (scale or VideoReformatter()).reformat(frame, format="yuv420p")


def _rgb(frame: Any, scale: VideoReformatter) -> np.ndarray:
    """The frame as ``[H, W, 3]`` uint8 RGB through the caller's swscale context (see :func:`to_yuv420p`)."""
    return scale.reformat(frame, format="rgb24").to_ndarray()


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 20, preset: str = "veryfast", threads: int = 0) -> bytes:
    """Encode ``[F, H, W, 3]`` uint8 RGB frames as H.264 (yuv420p) in MP4, returned as bytes.

    yuv420p needs even sizes, so an odd last row or column is cropped. ``threads`` 0 lets libx264
    choose; 1 keeps the encoder on one core (what a one-CPU Ray task should use).
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
        stream = _add_h264(container, w, h, fps, crf, preset, threads)
        scale = VideoReformatter()
        for img in frames:
            frame = to_yuv420p(av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24"), scale)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def fit_size(width: int, height: int, short_side: int, max_aspect: float) -> tuple[tuple[int, int, int, int], int, int]:
    """Centre crop box (x0, y0, x1, y1) limiting the aspect ratio to ``max_aspect``, and the output size
    with the short side at ``short_side`` (both sides even, as H.264 in yuv420p needs)."""
    x0, y0, x1, y1 = 0, 0, width, height
    if width > height * max_aspect:
        keep = int(height * max_aspect)
        x0 = (width - keep) // 2
        x1 = x0 + keep
    elif height > width * max_aspect:
        keep = int(width * max_aspect)
        y0 = (height - keep) // 2
        y1 = y0 + keep
    cw, ch = x1 - x0, y1 - y0
    scale = short_side / min(cw, ch)
    ow, oh = max(2, round(cw * scale / 2) * 2), max(2, round(ch * scale / 2) * 2)
    return (x0, y0, x1, y1), ow, oh


def _turns(frame: Any) -> int:
    """Quarter turns counter-clockwise that show ``frame`` upright, from its display matrix (phones record
    portrait video as landscape pixels plus "rotate by 90" metadata; players rotate, and so must we, or the clip
    is curated and trained on sideways). Other angles round to the nearest quarter turn; flips are not read."""
    rotation = getattr(frame, "rotation", 0) or 0
    return round(rotation / 90) % 4


def _upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _display_size(w: int, h: int, turns: int) -> tuple[int, int]:
    return (h, w) if turns % 2 else (w, h)


class _Window:
    """Frames of a decoded stream inside [start, end) seconds; counts every frame decoded."""

    def __init__(self, start: float | None, end: float | None):
        self.start, self.end, self.decoded = start, end, 0

    def frames(self, container: Any, stream: Any, fps: float) -> Iterator[Any]:
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else (self.decoded / fps if fps else 0.0)
            self.decoded += 1
            if self.start is not None and t < self.start - 1e-6:
                continue
            if self.end is not None and t >= self.end - 1e-6:
                return
            yield frame

    def error(self, e: Exception) -> VideoDecodeError:
        where = f" after {self.decoded} frames" if self.decoded else ""
        return VideoDecodeError(f"cannot decode{where}: {e}")

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Turn the decoder's errors raised inside into a :class:`VideoDecodeError` naming the frame."""
        try:
            yield
        except VideoDecodeError:
            raise
        except _DECODE_ERRORS as e:
            raise self.error(e) from e

    def require_frames(self) -> None:
        if self.decoded == 0:
            raise VideoDecodeError("no frames decoded")


_DECODE_ERRORS = (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError)


def _peek(frames: Iterator[Any]) -> tuple[Iterator[Any], Any]:
    """(the same frames, the first of them or None): the first frame carries the display matrix."""
    first = next(frames, None)
    return (frames if first is None else itertools.chain([first], frames)), first


def _frame_size(stream: Any) -> tuple[int, int]:
    w, h = stream.codec_context.width, stream.codec_context.height
    if not w or not h:
        raise VideoDecodeError("video stream has no frame size")
    return w, h


def decode_resized(
    src: Source,
    short_side: int,
    max_aspect: float = 2.0,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    threads: int = 0,
) -> tuple[np.ndarray, VideoInfo, VideoInfo]:
    """Decode frames inside [start, end) seconds, centre-cropped to ``max_aspect`` and resized so the
    short side is ``short_side``; returns (frames, info of the source, info of the output).

    Frames are resized one at a time as they are decoded, so long or large videos never sit in memory
    at full size: by FFmpeg's swscale straight from the decoder's YUV when no crop is needed, else
    cropped in RGB and resized with OpenCV's area filter. A stream that breaks part way raises
    :class:`VideoDecodeError` naming the frame. ``threads`` as in :func:`encode_mp4`.
    """
    import cv2

    out: list[np.ndarray] = []
    window = _Window(start, end)
    scale = VideoReformatter()  # one swscale context per video, this call's own (see to_yuv420p)
    with window.reading(), _open(src) as container:
        stream, fps = _video_stream(container, threads)
        frames, first = _peek(window.frames(container, stream, fps))
        turns = _turns(first) if first is not None else 0
        w, h = _display_size(*_frame_size(stream), turns)
        box, ow, oh = fit_size(w, h, short_side, max_aspect)
        whole = box == (0, 0, w, h)
        for frame in frames:
            if whole and not turns and (frame.width, frame.height) == (w, h):
                rgb = scale.reformat(frame, width=ow, height=oh, format="rgb24", interpolation="BILINEAR")
                out.append(rgb.to_ndarray())
            else:
                rgb = _upright(_rgb(frame, scale), turns)[box[1] : box[3], box[0] : box[2]]
                out.append(cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA))
            if max_frames is not None and len(out) >= max_frames:
                break
    window.require_frames()
    count = window.decoded
    frames = np.stack(out) if out else np.zeros((0, oh, ow, 3), np.uint8)
    return frames, VideoInfo(count, fps, w, h), VideoInfo(len(frames), fps, ow, oh)


def transcode_resized(
    src: Source,
    short_side: int,
    max_aspect: float = 2.0,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    threads: int = 0,
    on_frame: Callable[[av.VideoFrame], None] | None = None,
) -> tuple[bytes, VideoInfo, VideoInfo] | None:
    """Decode -> swscale to the output size in YUV -> libx264, frame by frame, never leaving YUV.

    The fast path of :func:`decode_resized` + :func:`encode_mp4` when nothing needs RGB pixels (no
    crop, no watermark step); the same output size, frame selection and encoder settings. Returns
    None when the video needs a crop or is stored rotated (the caller takes the RGB path). ``on_frame`` sees every kept
    source frame as decoded (e.g. to keep a small copy for analysis, without decoding again).
    """
    buf = io.BytesIO()
    kept = 0
    window = _Window(start, end)
    scale = VideoReformatter()  # one swscale context per video, this call's own (see to_yuv420p)
    with window.reading(), _open(src) as container:
        stream, fps = _video_stream(container, threads)
        w, h = _frame_size(stream)
        box, ow, oh = fit_size(w, h, short_side, max_aspect)
        if box != (0, 0, w, h) or not fps:
            return None
        frames, first = _peek(window.frames(container, stream, fps))
        if first is not None and _turns(first):
            return None  # shown rotated: the RGB path turns it upright
        with av.open(buf, mode="w", format="mp4") as out:
            ost = _add_h264(out, ow, oh, fps, crf, preset, threads)
            frame_time = 1 / Fraction(fps).limit_denominator(1001)
            for frame in frames:
                if (frame.width, frame.height) != (w, h):
                    return None  # the size changes mid-stream: let the RGB path handle it
                if on_frame is not None:
                    on_frame(frame)
                yuv = scale.reformat(frame, width=ow, height=oh, format="yuv420p", interpolation="BILINEAR")
                yuv.pts, yuv.time_base = kept, frame_time  # renumber: the output is its own timeline
                for pkt in ost.encode(yuv):
                    out.mux(pkt)
                kept += 1
                if max_frames is not None and kept >= max_frames:
                    break
            for pkt in ost.encode():
                out.mux(pkt)
    window.require_frames()
    return buf.getvalue(), VideoInfo(window.decoded, fps, w, h), VideoInfo(kept, fps, ow, oh)


def decode_clip(src: Source, indices: list[int], fps: float) -> np.ndarray:
    """RGB frames ``[len(indices), H, W, 3]`` at the given frame indices, seeking to the first.

    Seeks to the keyframe before the first wanted frame and stops after the last, so reading 8
    frames from a long video decodes a short stretch of it, not the whole file. Frame numbers come
    from timestamps (``round(t * fps)``).
    """
    if not indices:
        raise ValueError("no frame indices")
    wanted = sorted(set(indices))
    got: dict[int, np.ndarray] = {}
    window = _Window(None, None)
    scale = VideoReformatter()
    with window.reading(), _open(src) as container:
        stream, _ = _video_stream(container)
        first = wanted[0] / fps
        if first > 1.0 and stream.time_base:
            container.seek(int(first / stream.time_base), stream=stream, backward=True)
        for n, frame in enumerate(window.frames(container, stream, fps)):
            idx = round(float(frame.time) * fps) if frame.time is not None else n
            if idx in wanted:
                got[idx] = _upright(_rgb(frame, scale), _turns(frame))
            if idx >= wanted[-1]:
                break
    missing = [i for i in wanted if i not in got]
    if missing:
        raise VideoDecodeError(f"frames {missing[:5]} not found (video shorter than its metadata says?)")
    return np.stack([got[i] for i in indices])


def decode_sampled(
    src: Source, every: float, short_side: int, max_samples: int | None = None, threads: int = 0
) -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """One frame every ``every`` seconds (the first frame at or after each multiple), resized so the short
    side is ``short_side``; returns (frames ``[N, H, W, 3]``, their times in seconds, source info).

    Frames are resized as they are decoded, so an hour of video costs N small frames of memory. Past
    ``max_samples`` every other sample is dropped and the interval doubled, as often as needed: the whole
    video stays covered, evenly, without trusting the container's duration (the caller reads the real
    spacing from the times).
    """
    out: list[np.ndarray] = []
    times: list[float] = []
    window = _Window(None, None)
    scale = VideoReformatter()  # one swscale context per video, this call's own (see to_yuv420p)
    with window.reading(), _open(src) as container:
        stream, fps = _video_stream(container, threads)
        frames, first = _peek(window.frames(container, stream, fps))
        turns = _turns(first) if first is not None else 0
        w, h = _frame_size(stream)  # as stored; resized so, then turned upright
        factor = short_side / min(w, h)
        ow, oh = max(2, round(w * factor / 2) * 2), max(2, round(h * factor / 2) * 2)
        nxt = 0.0
        for frame in frames:
            t = float(frame.time) if frame.time is not None else (window.decoded - 1) / fps
            if t + 1e-6 < nxt:
                continue
            small = scale.reformat(frame, width=ow, height=oh, format="rgb24", interpolation="BICUBIC").to_ndarray()
            out.append(_upright(small, turns))
            times.append(t)
            if max_samples and len(out) > max_samples:
                out, times, every = out[::2], times[::2], 2 * every
            nxt = (int(t / every + 1e-6) + 1) * every
    window.require_frames()
    w, h = _display_size(w, h, turns)
    return np.stack(out), np.asarray(times, dtype=np.float64), VideoInfo(window.decoded, fps, w, h)
