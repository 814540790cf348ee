"""DDIM with classifier-free guidance for one clip, on diffusers' DDIMScheduler's noise schedule.

The conditional and unconditional passes go through the UNet as one batch. A ``step_hook`` may
replace the latents after any step; long-video generation uses it for DSG (paper eq. 8).

Deterministic DDIM (eta = 0, no clipping or thresholding of x_0, SD's settings) is linear in the latents
and the model output for every prediction type: ``z_prev = a_t z + b_t out``. The sampler computes
``(a_t, b_t)`` from the scheduler's own alphas and runs each step as tensor arithmetic only
(:class:`GuidedStep`), so a CUDA graph can capture the whole step, UNet, guidance and update together
(``training.model.cuda_graphs``). Any other scheduler setting takes ``scheduler.step``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from diffusers import DDIMScheduler
from tqdm import tqdm

from inference.choices import PAPER_GUIDANCE, PAPER_STEPS
from training.model.sampling_defaults import check_schedule, sd_scheduler_config

# Called after each step with (step index, timestep t, latents z_{t-1}); returns the latents to keep.
StepHook = Callable[[int, int, torch.Tensor], torch.Tensor]
# Resampling (RePaint): (step index) -> extra passes of that step, and (latents after step k, k) -> latents noised
# back to step k's input level.
Repeats = Callable[[int], int]
Renoise = Callable[[torch.Tensor, int], torch.Tensor]
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_scheduler(config: dict[str, Any] | None = None, prediction_type: str | None = None) -> DDIMScheduler:
    """A DDIM scheduler from a checkpoint's scheduler config (SD's defaults otherwise)."""
    cfg = {**sd_scheduler_config(), **{k: v for k, v in (config or {}).items() if not k.startswith("_")}}
    if prediction_type:
        cfg["prediction_type"] = prediction_type
    check_schedule(cfg)
    return DDIMScheduler.from_config(cfg)


def alpha_bar_after(scheduler: DDIMScheduler, t: int) -> float:
    """``alpha_bar`` of the latents the DDIM step from ``t`` leaves (the schedule's final one after the last step)."""
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    return float(scheduler.alphas_cumprod[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)


def ddim_update_coefficients(scheduler: DDIMScheduler, t: int) -> tuple[float, float] | None:
    """``(a, b)`` with ``z_prev = a z + b out`` for the deterministic DDIM step from ``t`` (eta = 0), exactly as
    ``scheduler.step`` computes it; None where that step is not linear (x_0 clipped or thresholded)."""
    cfg = scheduler.config
    if cfg.clip_sample or cfg.thresholding:
        return None
    ac, acp = float(scheduler.alphas_cumprod[t]), alpha_bar_after(scheduler, t)
    sa, sb, spa, spb = math.sqrt(ac), math.sqrt(1 - ac), math.sqrt(acp), math.sqrt(1 - acp)
    # z_prev = sqrt(acp) x0 + sqrt(1 - acp) eps, with (x0, eps) linear in (z, out) per prediction type.
    if cfg.prediction_type == "epsilon":  # x0 = (z - sb out) / sa, eps = out
        return spa / sa, spb - spa * sb / sa
    if cfg.prediction_type == "v_prediction":  # x0 = sa z - sb out, eps = sa out + sb z
        return spa * sa + spb * sb, spb * sa - spa * sb
    if cfg.prediction_type == "sample":  # x0 = out, eps = (z - sa out) / sb
        return spb / sb, spa - spb * sa / sb
    raise ValueError(f"unknown prediction_type {cfg.prediction_type!r}")


def guidance_pass(
    denoiser: Denoiser, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unconditional and conditional outputs for ``z`` at timestep ``t`` (0-dim), from one denoiser call.

    A denoiser that says it takes several contexts per sample (``accepts_contexts_per_sample``: the VidRD
    UNet, which then runs the layers before its first cross-attention once) gets ``z`` once; any other gets
    ``z`` twice in one batch.
    """
    ctx = torch.cat([uncond, cond])
    if getattr(denoiser, "accepts_contexts_per_sample", False):
        both = denoiser(z, t.expand(z.shape[0]), ctx, contexts_per_sample=2)
    else:
        both = denoiser(torch.cat([z, z]), t.expand(2 * z.shape[0]), ctx)
    u, c = both.chunk(2)
    return u, c


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: torch.Tensor | float) -> torch.Tensor:
    """Guided output with its per-sample standard deviation pulled back towards the conditional output's by
    ``phi`` (Lin et al. 2024, section 3.4; diffusers' ``guidance_rescale``): a zero-terminal-SNR model at a large
    guidance scale otherwise over-saturates."""
    dims = tuple(range(1, guided.ndim))
    ratio = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return guided + phi * (guided * ratio - guided)


def guided_output(
    denoiser: Denoiser,
    z: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    scale: torch.Tensor | float,
    rescale: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """The classifier-free guided model output in float32, ``u + scale (c - u)``: the one guidance implementation.

    ``t`` is a 0-dim timestep tensor; ``uncond=None``: no guidance, one pass on ``cond``. ``rescale``: pull the
    guided output's spread back towards the conditional one's (:func:`rescale_guidance`); None: none. Tensor
    arguments keep every value on the device, so a CUDA graph can capture the call.
    """
    if uncond is None:
        return denoiser(z, t.expand(z.shape[0]), cond).float()
    u, c = (o.float() for o in guidance_pass(denoiser, z, t, cond, uncond))
    out = u + scale * (c - u)
    return out if rescale is None else rescale_guidance(out, c, rescale)


class SamplerStep(Protocol):
    """One denoising step ``(z, t, coef = (a, b, w[, phi]), cond, uncond or None) -> z_prev``, every argument a
    tensor (:class:`GuidedStep`, or a CUDA-graphed replay of it)."""

    def __call__(
        self, z: torch.Tensor, t: torch.Tensor, coef: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None
    ) -> torch.Tensor: ...


class GuidedStep:
    """One guided DDIM step as tensor arithmetic only: ``z_prev = a z + b guided_output(...)``.

    ``coef`` is ``(a, b, w)`` or ``(a, b, w, phi)`` with a guidance rescale ``phi`` (:func:`rescale_guidance`),
    float32 on z's device, and ``t`` a 0-dim timestep tensor, so the step has no host-side values and one CUDA
    graph serves every step. ``uncond=None``: no guidance, one pass on ``cond``. The update is computed in
    float32 whatever the latents' dtype.
    """

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def __call__(
        self, z: torch.Tensor, t: torch.Tensor, coef: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None
    ) -> torch.Tensor:
        rescale = coef[3] if coef.shape[0] > 3 else None  # a shape, not a value: the same graph every step
        out = guided_output(self.denoiser, z, t, cond, uncond, coef[2], rescale)
        return (coef[0] * z.float() + coef[1] * out).to(z.dtype)


class DDIMSampler:
    """Denoise ``[B, C, F, h, w]`` latents with DDIM + CFG.

    ``denoiser(latents, t, context)`` is the UNet (or anything with its signature). ``step`` replaces the
    default :class:`GuidedStep` on it, e.g. with a CUDA-graphed one (``training.model.cuda_graphs``) that a pipeline
    keeps across videos.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        scheduler: DDIMScheduler,
        steps: int = PAPER_STEPS,
        guidance: float = PAPER_GUIDANCE,
        step: SamplerStep | None = None,
        guidance_rescale: float = 0.0,
    ):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
        self.denoiser = denoiser
        self.scheduler = scheduler
        self.steps = steps
        self.guidance = guidance
        self.guidance_rescale = guidance_rescale
        self.scheduler.set_timesteps(steps)
        self.step = step if step is not None else GuidedStep(denoiser)
        coefs = [ddim_update_coefficients(scheduler, t) for t in self.timesteps]
        self.coefficients: list[tuple[float, float]] | None = None if None in coefs else coefs

    @property
    def timesteps(self) -> list[int]:
        return [int(t) for t in self.scheduler.timesteps]

    @property
    def alphas_after(self) -> list[float]:
        """``alpha_bar`` of the latents each step leaves (the next timestep's; the final one after the last step),
        as the DDIM update uses them."""
        return [alpha_bar_after(self.scheduler, t) for t in self.timesteps]

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def predict(self, z: torch.Tensor, t: int, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """Guided model output (:func:`guided_output`) in the latents' dtype; one UNet call for both halves."""
        out = guided_output(self.denoiser, z, torch.tensor(t, device=z.device), cond,
                            None if self.guidance == 1.0 else uncond, self.guidance,
                            self.guidance_rescale or None)  # fmt: skip
        return out.to(z.dtype)

    @torch.no_grad()
    def sample(
        self,
        z: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        step_hook: StepHook | None = None,
        progress: bool = False,
        repeats: Repeats | None = None,
        renoise: Renoise | None = None,
    ) -> torch.Tensor:
        """Run all DDIM steps from ``z`` (= z_T) and return z_0.

        ``repeats(k)`` > 0: after step k (and its hook), noise the latents back to step k's level with ``renoise`` and
        take the step again, that many times (RePaint's resampling, Lugmayr et al. 2022: what a hook holds fixed and
        what the model makes of the rest come to agree)."""
        if repeats is not None and renoise is None:
            raise ValueError("resampling (repeats) needs renoise")
        steps = tqdm(self.timesteps, desc="steps", leave=False, disable=not progress)
        if self.coefficients is not None:
            # Every step's inputs made on the device up front: the loop itself copies nothing from the host.
            ts = torch.tensor(self.timesteps, device=z.device)
            extra = (self.guidance_rescale,) if self.guidance_rescale else ()
            coefs = torch.tensor([(a, b, self.guidance, *extra) for a, b in self.coefficients], device=z.device)
            uncond_or_none = None if self.guidance == 1.0 else uncond
        for k, t in enumerate(steps):
            for again in range(1 + (repeats(k) if repeats is not None else 0)):
                if again:
                    z = renoise(z, k)
                if self.coefficients is not None:
                    z = self.step(z, ts[k], coefs[k], cond, uncond_or_none)
                else:
                    z = self.scheduler.step(self.predict(z, t, cond, uncond), t, z).prev_sample
                if step_hook is not None:
                    z = step_hook(k, t, z)
        return z

    def renoise_factors(self, k: int) -> tuple[float, float]:
        """``(a, s)`` with ``z_t = a z + s eps`` taking latents from the level step k leaves back to step k's input
        level (the forward process over one step)."""
        ratio = float(self.scheduler.alphas_cumprod[self.timesteps[k]]) / self.alphas_after[k]
        return math.sqrt(ratio), math.sqrt(max(0.0, 1.0 - ratio))
