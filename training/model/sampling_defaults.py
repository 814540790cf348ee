"""Stable Diffusion 2.x's noise schedule, as its ``scheduler_config.json`` states it."""

from __future__ import annotations

from typing import Any


def sd_scheduler_config(prediction_type: str = "epsilon") -> dict[str, Any]:
    """DDIM settings of SD 2.x (scaled-linear betas 0.00085..0.012 over 1000 steps)."""
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": prediction_type,
    }
