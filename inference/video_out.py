"""Write generated frames as they arrive: MP4 (H.264, streamed), GIF, or a PNG frame strip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from inference.choices import SUFFIXES
from media.video import h264_options, to_yuv420p


class FrameSink:
    """Append ``[F, H, W, 3]`` uint8 frames; ``close()`` finishes the file. MP4 is encoded as frames come."""

    def __init__(self, path: str | Path, fps: float = 8.0):
        self.path = Path(path)
        if self.path.suffix not in SUFFIXES:
            raise ValueError(f"{self.path}: output must end in one of {SUFFIXES}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.count = 0
        self._held: list[np.ndarray] = []
        self._container = None
        self._stream = None
        self._scale = VideoReformatter()

    def _open_mp4(self, h: int, w: int) -> None:
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        self._stream.width, self._stream.height = w - w % 2, h - h % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = h264_options(18, "medium")

    def write(self, frames: np.ndarray) -> None:
        if self.path.suffix != ".mp4":
            self._held.extend(frames)
        else:
            if self._container is None:
                self._open_mp4(frames.shape[1], frames.shape[2])
            h, w = self._stream.height, self._stream.width
            for f in frames:
                rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
                vf = to_yuv420p(rgb, self._scale)
                for pkt in self._stream.encode(vf):
                    self._container.mux(pkt)
        self.count += len(frames)

    def close(self) -> None:
        if self.path.suffix == ".mp4":
            if self._container is not None:
                for pkt in self._stream.encode():
                    self._container.mux(pkt)
                self._container.close()
            return
        if not self._held:
            return
        imgs = [Image.fromarray(f) for f in self._held]
        if self.path.suffix == ".gif":
            imgs[0].save(self.path, save_all=True, append_images=imgs[1:], duration=round(1000 / self.fps), loop=0)
        else:
            w, h = imgs[0].size
            strip = Image.new("RGB", (w * len(imgs), h))
            for k, im in enumerate(imgs):
                strip.paste(im, (k * w, 0))
            strip.save(self.path)
