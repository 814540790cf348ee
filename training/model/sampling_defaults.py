"""Stable Diffusion 2.x's noise schedule, as its ``scheduler_config.json`` states it, and the zero-terminal-SNR
variant (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed").

SD's schedule leaves ``sqrt(alpha_bar_T) = 0.068`` of the clean latent in the noisiest training input. Summed
over a video, that residue tells the model where things are and which way they move, so it learns to read
layout and motion from the input instead of the caption; at sampling the input is pure noise and the motion
follows the seed (the learning proof's first runs, `benchmarks/RESULTS.md`).
Rescaling the betas so that ``alpha_bar_T = 0`` removes
the residue. An epsilon model cannot be trained on it (its ``x_0`` divides by ``sqrt(alpha_bar_t)``), so the
variant goes with v-prediction, and sampling must start at ``t = T`` ("trailing" timestep spacing).
"""

from __future__ import annotations

from typing import Any


def sd_scheduler_config(prediction_type: str = "epsilon", zero_terminal_snr: bool = False) -> dict[str, Any]:
    """DDIM settings of SD 2.x (scaled-linear betas 0.00085..0.012 over 1000 steps); with ``zero_terminal_snr``
    the betas rescaled to end at SNR 0 and sampling steps spaced from ``t = T``."""
    cfg: dict[str, Any] = {
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
    if zero_terminal_snr:
        cfg.update(with_zero_terminal_snr(cfg))
    check_schedule(cfg)
    return cfg


def with_zero_terminal_snr(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the betas rescaled to zero terminal SNR and trailing timestep spacing."""
    return {**config, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "steps_offset": 0}


def has_zero_terminal_snr(config: dict[str, Any]) -> bool:
    return bool(config.get("rescale_betas_zero_snr", False))


def check_schedule(config: dict[str, Any]) -> None:
    """Refuse a schedule no sampler can use: zero terminal SNR with epsilon prediction."""
    if has_zero_terminal_snr(config) and config.get("prediction_type", "epsilon") == "epsilon":
        raise ValueError(
            "a zero-terminal-SNR schedule (rescale_betas_zero_snr) needs prediction_type v_prediction: "
            "an epsilon model's x_0 divides by sqrt(alpha_bar_T) = 0"
        )
