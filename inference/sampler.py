"""DDIM with classifier-free guidance for one clip, through diffusers' DDIMScheduler.

The conditional and unconditional passes go through the UNet as one batch. A ``step_hook`` may
replace the latents after any step; long-video generation uses it for DSG (paper eq. 8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler
from tqdm import tqdm

from training.model.sampling_defaults import sd_scheduler_config

# Called after each step with (step index, timestep t, latents z_{t-1}); returns the latents to keep.
StepHook = Callable[[int, int, torch.Tensor], torch.Tensor]
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_scheduler(config: dict[str, Any] | None = None, prediction_type: str | None = None) -> DDIMScheduler:
    """A DDIM scheduler from a checkpoint's scheduler config (SD's defaults otherwise)."""
    cfg = {**sd_scheduler_config(), **{k: v for k, v in (config or {}).items() if not k.startswith("_")}}
    if prediction_type:
        cfg["prediction_type"] = prediction_type
    return DDIMScheduler.from_config(cfg)


class DDIMSampler:
    """Denoise ``[B, C, F, h, w]`` latents with DDIM + CFG.

    ``denoiser(latents, t, context)`` is the UNet (or anything with its signature).
    """

    def __init__(self, denoiser: Denoiser, scheduler: DDIMScheduler, steps: int = 50, guidance: float = 10.0):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.denoiser = denoiser
        self.scheduler = scheduler
        self.steps = steps
        self.guidance = guidance
        self.scheduler.set_timesteps(steps)

    @property
    def timesteps(self) -> list[int]:
        return [int(t) for t in self.scheduler.timesteps]

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def predict(self, z: torch.Tensor, t: int, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """Guided model output: ``uncond + w * (cond - uncond)``; one UNet call for both halves."""
        if self.guidance == 1.0:
            return self.denoiser(z, torch.full((z.shape[0],), t, device=z.device), cond)
        both = self.denoiser(
            torch.cat([z, z]), torch.full((2 * z.shape[0],), t, device=z.device), torch.cat([uncond, cond])
        )
        u, c = both.chunk(2)
        return u + self.guidance * (c - u)

    @torch.no_grad()
    def sample(
        self,
        z: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        step_hook: StepHook | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Run all DDIM steps from ``z`` (= z_T) and return z_0."""
        for k, t in enumerate(tqdm(self.timesteps, desc="steps", leave=False, disable=not progress)):
            out = self.predict(z, t, cond, uncond)
            z = self.scheduler.step(out, t, z).prev_sample
            if step_hook is not None:
                z = step_hook(k, t, z)
        return z
