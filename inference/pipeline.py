"""Text -> long video with a VidRD checkpoint: text encoding (cached), DDIM + CFG per clip with
FNR/PNS/DSG across clips, temporal-VAE decoding in frame chunks, frames handed out clip by clip."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from inference.choices import CLIP_FRAMES, PAPER_GUIDANCE, PAPER_SIZE, PAPER_STEPS
from inference.long_video import LongVideoConfig, generate_latent_clips
from inference.prompts import VideoRequest
from inference.sampler import DDIMSampler, GuidedStep, make_scheduler
from training.model.cuda_graphs import CUDAGraphed
from training.model.fast_paths import FastPaths, apply_fast_paths
from training.model.loading import SDComponents, load_vidrd
from training.model.temporal import TempConv
from training.model.vae import TemporalVAE

MAX_STEPS = 1000  # DDIM cannot take more steps than the schedule's training timesteps
# Past these a request is a typo, not a video: 100k frames is over an hour at 24 fps (days of sampling), and one
# 8192-pixel frame is 64x the area SD 2.1 was trained at. They fail in a line instead of after hours or at allocation.
MAX_FRAMES = 100_000
MAX_SIDE = 8192


@dataclass
class GenerationSettings:
    """Everything besides the prompts that decides a video."""

    frames: int = CLIP_FRAMES  # one clip; a long video names its length (vidrd generate: LONG_VIDEO_FRAMES)
    steps: int = PAPER_STEPS
    guidance: float = PAPER_GUIDANCE
    seed: int = 0
    height: int = PAPER_SIZE
    width: int = PAPER_SIZE
    long: LongVideoConfig = field(default_factory=LongVideoConfig)
    negative_prompt: str = ""  # the unconditional branch's text; the release's evaluation uses "watermark"
    temporal_decode: bool | None = None  # None: the schedule's (paper: temporal decoder; official: per frame)
    guidance_rescale: float = 0.0  # 0: plain CFG; ~0.7 for a zero-terminal-SNR model (inference.sampler)

    def __post_init__(self) -> None:
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"frames must be in [1, {MAX_FRAMES}], got {self.frames}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be in [1, {MAX_STEPS}] (the schedule's training timesteps), got {self.steps}")
        if not math.isfinite(self.guidance) or self.guidance <= 0:
            raise ValueError(f"guidance must be a finite number > 0, got {self.guidance}")
        if not 0.0 <= self.guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale must be in [0, 1], got {self.guidance_rescale}")
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            raise ValueError(f"height and width must be in [1, {MAX_SIDE}], got {self.height}x{self.width}")

    def check_requests(self, requests: Sequence[VideoRequest]) -> None:
        """Every request has exactly one prompt per clip (a clear error before any model work)."""
        n = self.long.num_clips(self.frames)
        for r in requests:
            r.for_clips(n)

    @property
    def decode_temporal(self) -> bool:
        return (not self.long.official) if self.temporal_decode is None else self.temporal_decode


def temporal_radius(vae: TemporalVAE) -> int:
    """How many frames on each side one output frame of the temporal decoder depends on."""
    return sum(m.radius for m in vae.modules() if isinstance(m, TempConv))


@torch.no_grad()
def decode_latents(vae: TemporalVAE, z: torch.Tensor, chunk: int | None = None, temporal: bool = True) -> torch.Tensor:
    """Latents ``[B, C, F, h, w]`` -> pixels in [-1, 1], decoding ``chunk`` frames at a time.

    Each chunk is decoded with enough neighbouring frames for the temporal layers' receptive field,
    so the result equals decoding all frames at once; memory grows with chunk + 2 * radius frames.
    ``temporal=False``: every frame on its own (the release's pipeline), so chunks need no neighbours.
    """
    f = z.shape[2]
    if chunk is None or chunk >= f:
        return vae.decode(z, temporal)
    r = temporal_radius(vae) if temporal else 0
    outs = []
    for s in range(0, f, chunk):
        lo, hi = max(0, s - r), min(f, s + chunk + r)
        x = vae.decode(z[:, :, lo:hi], temporal)
        outs.append(x[:, :, s - lo : s - lo + min(chunk, f - s)])
    return torch.cat(outs, dim=2)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[B, 3, F, H, W]`` in [-1, 1] -> ``[B, F, H, W, 3]`` uint8."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


class VidRDPipeline:
    """Holds the model on a device and turns prompts into frames."""

    def __init__(
        self,
        comps: SDComponents,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        decode_chunk: int | None = None,
        fast: bool | FastPaths = True,
    ):
        """``fast``: True applies :meth:`FastPaths.for_device` (channels-last, regional compile and CUDA
        graphs on CUDA; nothing elsewhere), False the plain path; a ``FastPaths`` picks each one."""
        if comps.text_encoder is None:
            raise ValueError("the checkpoint has no text encoder/tokenizer; generation needs one")
        self.device, self.dtype = torch.device(device), dtype
        # nn.Module.to: diffusers' ModelMixin.to warns on every dtype cast, which says nothing here.
        self.unet = torch.nn.Module.to(comps.unet, self.device, dtype).eval().requires_grad_(False)
        self.vae = torch.nn.Module.to(comps.vae, self.device, dtype).eval().requires_grad_(False)
        self.text = comps.text_encoder.to(self.device)
        self.fast = fast if isinstance(fast, FastPaths) else FastPaths.for_device(self.device, fast)
        if self.fast.any:
            apply_fast_paths(self.unet, self.fast)
            apply_fast_paths(self.vae, self.fast)
            # Fixed shapes, called many times: let cuDNN time its algorithms once per shape.
            torch.backends.cudnn.benchmark = True
        # Kept for the pipeline's life, so captured graphs are reused across videos of the same shape.
        self.step = CUDAGraphed(GuidedStep(self.unet)) if self.fast.cuda_graphs else GuidedStep(self.unet)
        self.scheduler_config = {**comps.scheduler_config, "prediction_type": comps.prediction_type}
        self.decode_chunk = decode_chunk
        self._emb: dict[str, torch.Tensor] = {}
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu", dtype: torch.dtype = torch.float32, **kw) -> VidRDPipeline:
        return cls(load_vidrd(path), device, dtype, **kw)

    def check_size(self, settings: GenerationSettings) -> None:
        """Frame sizes this model can make: multiples of 8 latent pixels' worth of the VAE's downscaling."""
        step = 8 * self.vae_scale
        if settings.height % step or settings.width % step:
            raise ValueError(f"height and width must be multiples of {step}, got {settings.height}x{settings.width}")

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``[B, L, D]``; each distinct prompt is encoded once per pipeline."""
        new = sorted({p for p in prompts if p not in self._emb})
        if new:
            for p, e in zip(new, self.text(list(new)), strict=True):
                self._emb[p] = e.to(self.dtype)
        return torch.stack([self._emb[p] for p in prompts])

    def latent_clips(
        self, requests: Sequence[VideoRequest], settings: GenerationSettings, progress: bool = True
    ) -> Iterator[torch.Tensor]:
        """Yield each clip's finished latents ``[B, C, N, h, w]`` (every frame of the clip, before the join)."""
        s, cfg = settings, settings.long
        self.check_size(s)
        n_clips = cfg.num_clips(s.frames)
        clip_prompts = [r.for_clips(n_clips) for r in requests]
        if s.negative_prompt:
            uncond = self.embed([s.negative_prompt] * len(requests))
        else:
            uncond = self.text.empty(len(requests)).to(self.dtype)
        gens = [
            torch.Generator().manual_seed(r.seed if r.seed is not None else s.seed + b) for b, r in enumerate(requests)
        ]
        sampler = DDIMSampler(
            self.unet, make_scheduler(self.scheduler_config), s.steps, s.guidance, self.step, s.guidance_rescale
        )
        latent = (self.unet.config.in_channels, cfg.clip_frames, s.height // self.vae_scale, s.width // self.vae_scale)
        bar = tqdm(total=n_clips * s.steps, desc="denoising", unit="step", disable=not progress)

        def conditioning(i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return self.embed([p[i] for p in clip_prompts]), uncond

        try:
            yield from generate_latent_clips(
                sampler, conditioning, n_clips, latent, cfg, gens, self.device, self.dtype, on_step=bar.update
            )
        finally:
            bar.close()

    def clip_frames(self, i: int, z0: torch.Tensor, settings: GenerationSettings) -> np.ndarray:
        """Clip i's finished latents decoded, ``[B, F_i, H, W, 3]`` uint8: the frames it adds to the video."""
        video = decode_latents(self.vae, z0, self.decode_chunk, settings.decode_temporal)
        return to_uint8(video)[:, settings.long.kept(i)]

    def generate(
        self, requests: Sequence[VideoRequest], settings: GenerationSettings, progress: bool = True
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(clip index, frames [B, F_i, H, W, 3] uint8)``: each clip's new frames, as it finishes."""
        emitted = 0
        for i, z0 in enumerate(self.latent_clips(requests, settings, progress)):
            frames = self.clip_frames(i, z0, settings)[:, : settings.frames - emitted]
            emitted += frames.shape[1]
            yield i, frames
