"""Training timesteps shifted towards noise (what bound direction to the caption in the learning proof): the draw
and its use in training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from training.timestep_sampling import shifted_timesteps


def test_shift_one_is_the_uniform_draw():
    torch.manual_seed(0)
    t = shifted_timesteps(200_000, 1000, 1.0)
    assert t.dtype == torch.long and int(t.min()) == 0 and int(t.max()) == 999
    assert abs(float((t >= 900).float().mean()) - 0.10) < 0.005
    assert abs(float(t.float().mean()) - 499.5) < 3


@pytest.mark.parametrize("shift", [2.0, 3.0, 6.0])
def test_shift_moves_steps_to_the_noisy_end_as_stated(shift):
    torch.manual_seed(0)
    t = shifted_timesteps(200_000, 1000, shift)
    assert int(t.min()) >= 0 and int(t.max()) <= 999
    for q in (0.3, 0.9):
        expected = 1 - q / (shift - (shift - 1) * q)  # the docstring's P(t > qT)
        assert abs(float((t >= q * 1000).float().mean()) - expected) < 0.005
    if shift == 3.0:
        assert abs(float((t >= 900).float().mean()) - 0.25) < 0.005
        assert abs(float((t < 300).float().mean()) - 0.125) < 0.005


@pytest.mark.parametrize("shift", [0.0, -1.0])
def test_a_shift_that_is_not_positive_is_refused(shift):
    with pytest.raises(ValueError, match="timestep_shift must be > 0"):
        shifted_timesteps(4, 1000, shift)


def test_the_module_trains_on_shifted_steps(monkeypatch):
    """The training step draws through the shift; the module refuses a bad shift at construction."""
    import training.unet_module as um
    from training.unet_module import VidRDModule

    with pytest.raises(ValueError, match="timestep_shift must be > 0"):
        VidRDModule(timestep_shift=0.0)
    m = VidRDModule(timestep_shift=4.0, caption_dropout=0.0)
    seen = []

    def spy(n, steps, shift, device):
        seen.append((n, steps, shift))
        return shifted_timesteps(n, steps, shift, device)

    monkeypatch.setattr(um, "shifted_timesteps", spy)
    monkeypatch.setattr(m, "log", lambda *a, **k: None)
    opt = SimpleNamespace(param_groups=[{"lr": 1e-4}])
    monkeypatch.setattr(
        VidRDModule, "trainer", property(lambda self: SimpleNamespace(optimizers=[opt], datamodule=None))
    )
    batch = {"latents": torch.randn(2, 4, 4, 8, 8), "caption": ["a red square moving left", "a"]}
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss) and seen == [(2, 1000, 4.0)]
