"""Which noise levels a training step sees: uniform over the schedule (the paper), or shifted towards noise.

A clip of F frames repeats its content F times, so a noise level that hides an object in one image still
shows it, summed over the frames, in a video. On the learning proof's clips the object's track covers ~576
latent values (16 frames x 3x3 pixels x 4 channels); a matched filter over them reads it at
``sqrt(576 * SNR)`` standard deviations, one at a log-SNR of about -6.4, and only ~8% of the zero-terminal-SNR
schedule's steps are noisier than that. There the caption is the only source of the layout (where the object goes),
so a uniform draw spends ~92% of the steps on levels where the model can copy the layout from its input
instead of learning it from the words. Resolution-dependent shifts (Hoogeboom et al. 2023; SD3, Esser et al.
2024) answer the same redundancy by moving the training distribution towards noise; this is the shift of
SD3's timestep mapping, applied to the discrete DDPM steps so that sampling is unchanged.
"""

from __future__ import annotations

import torch


def check_shift(shift: float) -> None:
    """Refuse a shift that maps no timestep distribution (it must be > 0)."""
    if not shift > 0:
        raise ValueError(f"timestep_shift must be > 0, got {shift}")


def shifted_timesteps(
    n: int, num_train_timesteps: int, shift: float = 1.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``n`` integer timesteps in ``[0, T)``: ``u ~ U(0, 1)`` mapped to ``shift * u / (1 + (shift - 1) * u)``.

    ``shift = 1`` is the uniform draw. ``shift = s > 1`` gives ``P(t > q * T) = 1 - q / (s - (s - 1) * q)``, e.g.
    ``s = 3``: a quarter of the steps above ``0.9 T`` (uniform: a tenth) and 12.5% below ``0.3 T`` (uniform: 30%).
    """
    check_shift(shift)
    if shift == 1.0:  # the draw runs always made, so a shift-1 run keeps its random stream
        return torch.randint(0, num_train_timesteps, (n,), device=device)
    u = torch.rand(n, device=device)
    s = shift * u / (1.0 + (shift - 1.0) * u)
    return (s * num_train_timesteps).long().clamp_(0, num_train_timesteps - 1)
