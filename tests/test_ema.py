"""The trained weights' moving average: one lerp pass, the same numbers and state as diffusers' EMAModel."""

from __future__ import annotations

import torch
from diffusers.training_utils import EMAModel

from training.ema import LerpEMA


def test_lerp_update_matches_diffusers_and_keeps_its_state_format():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 7)) for _ in range(3)]
    ref = EMAModel(params, decay=0.99, use_ema_warmup=True, foreach=True)
    ema = LerpEMA(params, decay=0.99, use_ema_warmup=True, foreach=True)
    for _ in range(6):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        ref.step(params)
        ema.step(params)
    assert ema.optimization_step == ref.optimization_step == 6 and ema.cur_decay_value == ref.cur_decay_value
    for a, b in zip(ema.shadow_params, ref.shadow_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert not torch.equal(a, params[0])  # averaged, not copied
    back = EMAModel(params, decay=0.5, foreach=True)  # a checkpoint written by one loads into the other
    back.load_state_dict(ema.state_dict())
    assert back.optimization_step == 6
    assert all(torch.equal(a, b) for a, b in zip(back.shadow_params, ema.shadow_params, strict=True))


def test_frozen_parameters_are_copied_as_diffusers_does():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3), requires_grad=False)]
    ema = LerpEMA(params, decay=0.9, foreach=True)
    ema.step(params)  # diffusers' first step has decay 0: a copy
    with torch.no_grad():
        for p in params:
            p.fill_(1.0)
    ema.step(params)
    assert torch.equal(ema.shadow_params[1], torch.ones(3))  # copied
    assert 0 < ema.shadow_params[0][0] < 1  # averaged
