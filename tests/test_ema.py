"""The trained weights' moving average: one lerp pass, the same numbers and state as diffusers' EMAModel."""

from __future__ import annotations

import pytest
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


def test_averages_take_their_weights_layout_so_the_update_stays_one_foreach_pass():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 3)
    params = [conv.weight, conv.bias]
    ref = EMAModel(params, decay=0.9, foreach=True)
    ema = LerpEMA(params, decay=0.9, foreach=True)
    conv.to(memory_format=torch.channels_last)  # what the fast path does after the averages were copied
    for _ in range(3):
        with torch.no_grad():
            conv.weight.add_(torch.randn_like(conv.weight))
        ref.step(params)
        ema.step(params)
    assert ema.shadow_params[0].stride() == conv.weight.stride() != ref.shadow_params[0].stride()
    for a, b in zip(ema.shadow_params, ref.shadow_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    ema.load_state_dict(ref.state_dict())  # a checkpoint in the other layout: laid out again at the next update
    assert ema.shadow_params[0].stride() != conv.weight.stride()
    ema.step(params)
    assert ema.shadow_params[0].stride() == conv.weight.stride()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_channels_last_weights_update_without_a_kernel_per_tensor():
    convs = torch.nn.Sequential(*[torch.nn.Conv2d(8, 8, 3) for _ in range(16)]).cuda()
    ema = LerpEMA(list(convs.parameters()), decay=0.9, foreach=True)
    convs.to(memory_format=torch.channels_last)
    ema.step(list(convs.parameters()))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        ema.step(list(convs.parameters()))
    names = [e.name for e in prof.events()]
    assert "aten::_foreach_lerp_" in names and "aten::lerp_" not in names  # no per-tensor fallback
