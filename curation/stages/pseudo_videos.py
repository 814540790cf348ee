"""Stage ``pseudo-videos``: LAION image-text pairs become short videos by random zooming and panning
(paper 4.2, figure 3; the paper's pseudo-videos average 2 s).

For each image a camera path is drawn from a generator seeded by ``StageBase.rng_seed`` (run seed, stage name,
image id): a start and an end window of the output's aspect ratio, each given by a scale (fraction of the
largest window that fits the image) and a centre. A zoom-in, zoom-out or pan is chosen at random; the window moves
along the path with smoothstep easing. Each frame is the window resized to the output size (short
side ``short_side``). Every parameter goes into ``.json`` so a video can be re-rendered exactly.

Images are read with Pillow, EXIF orientation applied, palette / grayscale / CMYK / alpha converted
to RGB (alpha composited on grey). Images whose short side is below ``min_side`` are rejected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from curation.inputs import captions_of, looks_like_html, read_input
from curation.stage import Rejected, StageBase
from curation.video_settings import VideoOutputConfig
from manifests.keys import make_key
from manifests.schema import RejectReason
from media.image import ImageDecodeError, decode_rgb
from media.video import encode_mp4
from shards.writer import Sample

MOTIONS = ("zoom_in", "zoom_out", "pan")


@dataclass
class PseudoVideoConfig(VideoOutputConfig):
    """Settings of the ``pseudo-videos`` stage (and the shared video-output ones; ``min_frames`` bounds
    ``min_seconds`` x ``fps``, checked here, since a rendered video's length is chosen, not found)."""

    min_side: int = 256
    fps: float = 15.0
    min_seconds: float = 2.0  # 30 frames at 15 fps: enough for the trainer's 8 keyframes every 4
    max_seconds: float = 2.6
    min_scale: float = 0.6  # smallest window, as a fraction of the largest that fits

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.fps, (int, float)) and 0 < self.fps <= 240):
            raise ValueError(f"fps must be in (0, 240], got {self.fps!r}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.min_seconds <= 0 or self.max_seconds < self.min_seconds:
            raise ValueError("need 0 < min_seconds <= max_seconds")
        if round(self.min_seconds * self.fps) < self.min_frames:
            raise ValueError(f"min_seconds x fps = {round(self.min_seconds * self.fps)} frames < min_frames "
                             f"({self.min_frames}): raise min_seconds or fps, or lower min_frames")  # fmt: skip


@dataclass
class CameraPath:
    """A window moving from (scale0, cx0, cy0) to (scale1, cx1, cy1) over ``frames`` frames."""

    motion: str
    frames: int
    scale0: float
    scale1: float
    cx0: float
    cy0: float
    cx1: float
    cy1: float


def load_rgb(data: bytes) -> Image.Image:
    """Decode an image to RGB (:func:`media.image.decode_rgb`); :class:`Rejected` for what is not an image."""
    if looks_like_html(data):
        raise Rejected(RejectReason.NOT_AN_IMAGE, "an HTML/XML page saved as an image")
    try:
        return decode_rgb(data)
    except ImageDecodeError as e:
        raise Rejected(RejectReason.UNDECODABLE if e.readable else RejectReason.NOT_AN_IMAGE, str(e)) from e


def draw_path(rng: np.random.Generator, cfg: PseudoVideoConfig) -> CameraPath:
    """A random camera path (the only place randomness enters)."""
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    frames = round(rng.uniform(cfg.min_seconds, cfg.max_seconds) * cfg.fps)
    small, big = float(rng.uniform(cfg.min_scale, 0.85)), float(rng.uniform(0.9, 1.0))
    if motion == "zoom_in":
        s0, s1 = big, small
    elif motion == "zoom_out":
        s0, s1 = small, big
    else:
        s0 = s1 = float(rng.uniform(cfg.min_scale, 0.85))
    c = rng.uniform(0.0, 1.0, size=4)  # centres as fractions of the free room for each window
    return CameraPath(motion, frames, s0, s1, float(c[0]), float(c[1]), float(c[2]), float(c[3]))


def render(img: Image.Image, path: CameraPath, out_w: int, out_h: int) -> np.ndarray:
    """Frames ``[F, out_h, out_w, 3]`` of ``img`` seen through the moving window.

    The image is first reduced once (area filter) so that the path's smallest window maps about 1:1
    onto the output; each frame is then a sub-pixel affine warp of that (bilinear, downscaling by at
    most the path's zoom range, so no visible aliasing). This is several times faster than resizing
    the full image for every frame, and the window still moves smoothly between pixels.
    """
    import cv2

    w, h = img.size
    aspect = out_w / out_h
    full_w = w if w / h < aspect else h * aspect
    src = np.asarray(img)
    reduce = min(path.scale0, path.scale1) * full_w / out_w
    if reduce > 1.0:
        src = cv2.resize(src, (max(1, round(w / reduce)), max(1, round(h / reduce))), interpolation=cv2.INTER_AREA)
    fx, fy = src.shape[1] / w, src.shape[0] / h
    frames = np.empty((path.frames, out_h, out_w, 3), np.uint8)
    for k in range(path.frames):
        x0, y0, bw, bh = window_at(path, k, w, h, aspect)  # smoothstep: the camera starts and stops gently
        # output pixel (u, v) samples source (x0 + u * bw / out_w, y0 + v * bh / out_h), in reduced coordinates
        sx, sy = bw * fx / out_w, bh * fy / out_h
        m = np.array([[sx, 0, x0 * fx + 0.5 * sx - 0.5], [0, sy, y0 * fy + 0.5 * sy - 0.5]], np.float64)
        cv2.warpAffine(src, m, (out_w, out_h), dst=frames[k], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    return frames


def window_at(path: CameraPath, k: int, w: int, h: int, aspect: float) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) of the camera window at frame ``k`` in image pixels (what :func:`render` shows)."""
    full_w, full_h = (w, w / aspect) if w / h < aspect else (h * aspect, h)
    u = k / max(1, path.frames - 1)
    e = u * u * (3 - 2 * u)
    s = path.scale0 + (path.scale1 - path.scale0) * e
    cx = path.cx0 + (path.cx1 - path.cx0) * e
    cy = path.cy0 + (path.cy1 - path.cy0) * e
    bw, bh = full_w * s, full_h * s
    return (w - bw) * cx, (h - bh) * cy, bw, bh


def camera_motion(path: CameraPath, w: int, h: int, out_w: int, out_h: int) -> float:
    """The exact mean image motion of the rendered video, in the units of ``curation.signals.motion_score``
    (percent of the frame width per frame): a grid of output points followed through the camera path."""
    gu, gv = np.meshgrid(np.linspace(0, out_w, 9), np.linspace(0, out_h, 9))
    steps = []
    prev = None
    for k in range(path.frames):
        x0, y0, bw, bh = window_at(path, k, w, h, out_w / out_h)
        if prev is not None:  # where frame k-1's grid points (in the image) appear in frame k's output
            px, py = prev
            steps.append(np.hypot((px - x0) * out_w / bw - gu, (py - y0) * out_h / bh - gv).mean())
        prev = (x0 + gu * bw / out_w, y0 + gv * bh / out_h)
    return float(np.mean(steps)) * 100.0 / out_w if steps else 0.0


def output_size(w: int, h: int, short_side: int, max_aspect: float) -> tuple[int, int]:
    aspect = min(max(w / h, 1 / max_aspect), max_aspect)
    if aspect >= 1:
        return round(short_side * aspect / 2) * 2, short_side
    return short_side, round(short_side / aspect / 2) * 2


class PseudoVideoStage(StageBase):
    """Image + caption -> a short zoom/pan video."""

    name = "pseudo-videos"
    config_class = PseudoVideoConfig
    cfg: PseudoVideoConfig

    def process(self, row: dict[str, Any]) -> list[Sample]:
        cfg, source, rid = self.cfg, row["source"], row["id"]
        captions = captions_of(row)
        img = load_rgb(read_input(row["uri"]))
        w, h = img.size
        if min(w, h) < cfg.min_side:
            raise Rejected(RejectReason.TOO_SMALL, f"{w}x{h}: short side < {cfg.min_side}")
        seed = self.rng_seed(rid)
        path = draw_path(np.random.default_rng(seed), cfg)
        ow, oh = output_size(w, h, cfg.short_side, cfg.max_aspect)
        motion = round(camera_motion(path, w, h, ow, oh), 4)
        if motion < cfg.min_motion:
            raise Rejected(RejectReason.STATIC, f"camera motion {motion:g} < min_motion {cfg.min_motion:g}")
        frames = render(img, path, ow, oh)
        meta = self.base_meta(row, **{
            "captions": captions,
            "fps": cfg.fps,
            "frames": path.frames,
            "width": ow,
            "height": oh,
            "source_width": w,
            "source_height": h,
            "sample_seed": seed,
            "camera": asdict(path),
            "easing": "smoothstep",
            "cuts": [],  # one camera move: no shot changes
            "motion": motion,  # known from the camera path, not estimated
        })
        return [
            Sample(
                make_key(source, rid), encode_mp4(frames, cfg.fps, cfg.crf, cfg.preset, cfg.threads), captions[0], meta
            )
        ]
