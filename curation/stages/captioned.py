"""Stage ``captioned``: datasets that ship captions (WebVid-2M, TGIF, VATEX, Pexels).

Per video: WebVid keeps only videos shorter than ``webvid_max_seconds`` (20 s, as the paper does);
the trim window of the manifest (if any) is applied; frames are centre-cropped to at most
``max_aspect`` and resized so the short side is ``short_side`` (the trainer crops 256 x 256 from
it); the original frame rate is kept; H.264 re-encode. All captions go into ``.json`` (VATEX has
ten; the trainer draws one per read), the first into ``.txt``.

Watermarks (WebVid, optional, ``watermark.mode``):

* ``none``: leave frames as they are;
* ``crop``: keep only the relative box ``watermark.keep`` = (x0, y0, x1, y1) of each frame, e.g. cut
  the bottom strip where WebVid prints the clip id;
* ``blur``: Gaussian-blur the relative box ``watermark.box`` (default: the centre where WebVid's logo
  sits) with radius ``watermark.radius``. This hides the logo's edges; it does not restore what is
  under it. A learned inpainting model is the better tool and can replace this function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from curation.inputs import captions_of, read_video_input, trim_of
from curation.stage import Rejected, StageBase
from curation.video_prep import resize_video
from curation.video_settings import VideoOutputConfig, check_box
from manifests.keys import make_key
from manifests.schema import RejectReason
from shards.writer import Sample

WEBVID_LOGO_BOX = (0.25, 0.3, 0.75, 0.7)


@dataclass
class WatermarkConfig:
    """How to treat WebVid's watermark (module docstring)."""

    mode: str = "none"  # none | crop | blur
    keep: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.9)
    box: tuple[float, float, float, float] = WEBVID_LOGO_BOX
    radius: float = 6.0
    sources: tuple[str, ...] = ("webvid",)

    def __post_init__(self) -> None:
        if self.mode not in ("none", "crop", "blur"):
            raise ValueError(f"watermark.mode must be none, crop or blur, got {self.mode!r}")
        check_box("watermark.keep", self.keep)
        check_box("watermark.box", self.box)
        if not (isinstance(self.radius, (int, float)) and 0 < self.radius < 1000):
            raise ValueError(f"watermark.radius must be a number of pixels > 0, got {self.radius!r}")


@dataclass
class CaptionedConfig(VideoOutputConfig):
    """Settings of the ``captioned`` stage (and the shared video-output ones)."""

    max_frames: int = 1200
    webvid_max_seconds: float = 20.0
    cuts: str = "split"  # a temporal model trained across a cut learns jumps
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)

    def __post_init__(self) -> None:
        if isinstance(self.watermark, dict):
            self.watermark = WatermarkConfig(**self.watermark)
        super().__post_init__()
        if not self.webvid_max_seconds > 0:
            raise ValueError(f"webvid_max_seconds must be > 0, got {self.webvid_max_seconds!r}")


def _rel_box(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return int(x0 * w), int(y0 * h), max(int(x0 * w) + 2, int(x1 * w)), max(int(y0 * h) + 2, int(y1 * h))


def remove_watermark(frames: np.ndarray, cfg: WatermarkConfig) -> np.ndarray:
    """Apply the configured watermark treatment to ``[F, H, W, 3]`` frames."""
    if cfg.mode == "none":
        return frames
    h, w = frames.shape[1:3]
    if cfg.mode == "crop":
        x0, y0, x1, y1 = _rel_box(cfg.keep, w, h)
        return np.ascontiguousarray(frames[:, y0:y1, x0:x1])
    x0, y0, x1, y1 = _rel_box(cfg.box, w, h)
    out = frames.copy()
    for f in out:
        region = Image.fromarray(f[y0:y1, x0:x1]).filter(ImageFilter.GaussianBlur(cfg.radius))
        f[y0:y1, x0:x1] = np.asarray(region)
    return out


class CaptionedStage(StageBase):
    """Filter, trim, resize and re-encode captioned videos."""

    name = "captioned"
    config_class = CaptionedConfig
    cfg: CaptionedConfig

    def process(self, row: dict[str, Any]) -> list[Sample]:
        cfg, source, rid = self.cfg, row["source"], row["id"]
        start, end = trim_of(row)
        captions = captions_of(row)
        duration = row.get("duration")
        if source == "webvid" and duration is not None and duration >= cfg.webvid_max_seconds:
            raise Rejected(RejectReason.TOO_LONG, f"{duration:.1f} s >= {cfg.webvid_max_seconds:g} s (WebVid filter)")
        data = read_video_input(row["uri"])
        wm = cfg.watermark.mode if source in cfg.watermark.sources else "none"
        video = resize_video(data, row["uri"], cfg, start, end, cfg.max_frames, rgb=wm != "none")
        if source == "webvid" and duration is None and video.src.duration >= cfg.webvid_max_seconds:
            raise Rejected(RejectReason.TOO_LONG, f"{video.src.duration:.1f} s >= {cfg.webvid_max_seconds:g} s")
        video.require_frames(cfg.min_frames)
        edit = None if wm == "none" else (lambda frames: remove_watermark(frames, cfg.watermark))
        clips, events = video.clips(cfg, (row.get("start"), row.get("end")), edit)
        meta = self.base_meta(row, captions=captions, label=row.get("label"), watermark=wm, **video.source_meta())
        samples = []
        for k, c in enumerate(clips):
            key = make_key(source, rid) if c.whole else make_key(source, rid, segment=c.piece.shot)
            samples.append(Sample(key, c.mp4, captions[0], {**meta, **c.meta()}, tuple(events) if k == 0 else ()))
        return samples
