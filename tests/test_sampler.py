"""DDIM + CFG as one linear update per step: the same z_{t-1} as diffusers' DDIMScheduler.step."""

import pytest
import torch

from inference.sampler import DDIMSampler, GuidedStep, ddim_update_coefficients, make_scheduler, rescale_guidance
from training.model.cuda_graphs import CUDAGraphed


def mixing_denoiser(z, t, ctx):
    """Depends on the latents, the timestep and the text, so every term of the update is exercised."""
    return torch.tanh(0.7 * z + 0.3 * z.mean(dim=2, keepdim=True)) + t.view(-1, 1, 1, 1, 1) / 1000 + ctx.mean()


def reference_sample(denoiser, scheduler, steps, guidance, z, cond, uncond, rescale=0.0):
    """The loop the sampler replaces: guided output (rescaled as diffusers' ``rescale_noise_cfg``), then
    ``scheduler.step``."""
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        n = z.shape[0]
        if guidance == 1.0:
            out = denoiser(z, torch.full((n,), int(t)), cond)
        else:
            u, c = denoiser(torch.cat([z, z]), torch.full((2 * n,), int(t)), torch.cat([uncond, cond])).chunk(2)
            out = u + guidance * (c - u)
            if rescale:
                dims = list(range(1, out.ndim))
                fixed = out * (c.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True))
                out = rescale * fixed + (1 - rescale) * out
        z = scheduler.step(out, t, z).prev_sample
    return z


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_update_coefficients_equal_scheduler_step(prediction_type, spacing):
    sched = make_scheduler({"timestep_spacing": spacing}, prediction_type)
    sched.set_timesteps(25)
    g = torch.Generator().manual_seed(0)
    z, out = torch.randn(2, 4, 3, 5, 5, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, 5, 5, generator=g)
    out = out.double()
    for t in sched.timesteps:  # the last step has no previous timestep: final_alpha_cumprod
        a, b = ddim_update_coefficients(sched, int(t))
        ref = sched.step(out, t, z).prev_sample
        assert torch.allclose(a * z + b * out, ref, rtol=1e-5, atol=1e-6), (prediction_type, int(t))


@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_sampler_equals_the_scheduler_loop(guidance):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 3, 6, 6, generator=g)
    cond, uncond = torch.randn(2, 5, 8, generator=g), torch.zeros(2, 5, 8)
    sampler = DDIMSampler(mixing_denoiser, make_scheduler(prediction_type="v_prediction"), steps=20, guidance=guidance)
    assert sampler.coefficients is not None and len(sampler.coefficients) == 20
    ref = reference_sample(
        mixing_denoiser, make_scheduler(prediction_type="v_prediction"), 20, guidance, z, cond, uncond
    )
    out = sampler.sample(z, cond, uncond)
    assert out.dtype == z.dtype and (out - ref).abs().max().item() < 1e-4
    assert (out - z).abs().max().item() > 0.1


def test_clipped_x0_is_not_linear_and_takes_scheduler_step():
    sched = make_scheduler({"clip_sample": True, "clip_sample_range": 0.5})
    sampler = DDIMSampler(mixing_denoiser, sched, steps=10, guidance=3.0)
    assert sampler.coefficients is None and ddim_update_coefficients(sched, 901) is None
    g = torch.Generator().manual_seed(2)
    z, cond = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 3, 8, generator=g)
    ref = reference_sample(
        mixing_denoiser, make_scheduler({"clip_sample": True, "clip_sample_range": 0.5}), 10, 3.0, z, cond, 0 * cond
    )
    assert torch.allclose(sampler.sample(z, cond, 0 * cond), ref, atol=1e-6)


def test_step_hook_sees_every_step_and_its_result_is_kept():
    seen = []

    def hook(k, t, z):
        seen.append((k, t))
        return torch.zeros_like(z) if k == 9 else z

    sampler = DDIMSampler(mixing_denoiser, make_scheduler(), steps=10, guidance=2.0)
    out = sampler.sample(torch.randn(1, 4, 2, 4, 4), torch.ones(1, 3, 8), torch.zeros(1, 3, 8), step_hook=hook)
    assert [k for k, _ in seen] == list(range(10)) and [t for _, t in seen] == sampler.timesteps
    assert torch.equal(out, torch.zeros_like(out))


def test_bf16_latents_are_updated_in_float32():
    step = GuidedStep(lambda z, t, c: torch.ones_like(z))
    z = torch.ones(1, 1, 1, 1, 1, dtype=torch.bfloat16)
    # In bf16, a z = 1 + 2^-8 would round (to even) to 1 before b out = 2^-8 is added, and 1 + 2^-8 rounds to 1
    # again; in float32 the sum is 1 + 2^-7, which bf16 holds exactly.
    coef = torch.tensor([1 + 2**-8, 2**-8, 1.0])
    out = step(z, torch.tensor(1), coef, torch.zeros(1, 1, 1), None)
    assert out.dtype == torch.bfloat16 and out.item() == 1 + 2**-7


def test_graphed_step_passes_through_off_cuda_with_none_arguments():
    calls = []

    def fn(z, t, coef, cond, uncond):
        calls.append(uncond is None)
        return z * coef[0]

    g = CUDAGraphed(fn)
    z = torch.ones(1, 4, 2, 3, 3)
    out = g(z, torch.tensor(5), torch.tensor([2.0, 0.0, 1.0]), torch.zeros(1, 2, 3), None)
    assert torch.equal(out, z * 2) and calls == [True] and g.num_graphs == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_graphed_step_equals_eager_step_on_cuda():
    def den(z, t, ctx):
        return mixing_denoiser(z, t, ctx)

    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, 4, 3, 6, 6, generator=g).cuda()
    cond, uncond = torch.randn(1, 5, 8, generator=g).cuda(), torch.zeros(1, 5, 8).cuda()
    eager = DDIMSampler(den, make_scheduler(), steps=12, guidance=5.0)
    graphed = DDIMSampler(den, make_scheduler(), steps=12, guidance=5.0, step=CUDAGraphed(GuidedStep(den)))
    a, b = eager.sample(z, cond, uncond), graphed.sample(z, cond, uncond)
    assert graphed.step.num_graphs == 1  # one capture replayed for all 12 steps
    assert (a - b).abs().max().item() < 1e-5


def test_guidance_pass_gives_a_shared_sample_to_a_denoiser_that_takes_it():
    from inference.sampler import guidance_pass

    calls = []

    def plain(z, t, ctx):
        calls.append(("plain", z.shape[0], t.shape[0], ctx.shape[0]))
        return mixing_denoiser(z, t, ctx) * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)

    def shared(z, t, ctx, contexts_per_sample=1):
        calls.append(("shared", z.shape[0], t.shape[0], ctx.shape[0]))
        k = contexts_per_sample
        return plain(torch.cat([z] * k), torch.cat([t] * k), ctx)

    shared.accepts_contexts_per_sample = True
    g = torch.Generator().manual_seed(3)
    z, cond, uncond = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8)
    t = torch.tensor(400)
    u0, c0 = guidance_pass(plain, z, t, cond, uncond)
    u1, c1 = guidance_pass(shared, z, t, cond, uncond)
    assert calls == [("plain", 4, 4, 4), ("shared", 2, 2, 4), ("plain", 4, 4, 4)]
    torch.testing.assert_close(u0, u1)
    torch.testing.assert_close(c0, c1)
    assert (u0 - c0).abs().max() > 1e-3


def denoiser(z, t, ctx):
    """:func:`mixing_denoiser` whose output spread depends on the text, which a guidance rescale pulls back."""
    return mixing_denoiser(z, t, ctx) * (1 + ctx.std(dim=(1, 2))).view(-1, 1, 1, 1, 1)


@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_zero_terminal_snr_sampling_equals_the_scheduler_loop(rescale):
    """v-prediction on the zero-SNR schedule: the first step is at alpha_bar = 0 (x_0 = -v, no division), and the
    guidance rescale runs inside the linear step as it does in diffusers' loop."""
    from training.model.sampling_defaults import sd_scheduler_config

    cfg = sd_scheduler_config("v_prediction", zero_terminal_snr=True)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 4, 3, 6, 6, generator=g)
    cond, uncond = torch.randn(2, 5, 8, generator=g), torch.zeros(2, 5, 8)
    sampler = DDIMSampler(denoiser, make_scheduler(cfg), steps=12, guidance=7.5, guidance_rescale=rescale)
    assert sampler.timesteps[0] == 999 and sampler.coefficients is not None
    ref = reference_sample(denoiser, make_scheduler(cfg), 12, 7.5, z, cond, uncond, rescale)
    out = sampler.sample(z, cond, uncond)
    assert torch.isfinite(out).all() and (out - ref).abs().max().item() < 1e-4
    plain = DDIMSampler(denoiser, make_scheduler(cfg), steps=12, guidance=7.5).sample(z, cond, uncond)
    assert ((plain - out).abs().max().item() > 1e-3) == bool(rescale)


def test_guidance_rescale_moves_the_spread_to_the_conditional_ones():
    g = torch.Generator().manual_seed(3)
    cond, guided = torch.randn(2, 4, 3, 5, 5, generator=g), 4 * torch.randn(2, 4, 3, 5, 5, generator=g)
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)
    full = rescale_guidance(guided, cond, 1.0)
    assert torch.allclose(full.flatten(1).std(1), cond.flatten(1).std(1), rtol=1e-5)  # per sample
    with pytest.raises(ValueError, match="guidance_rescale"):
        DDIMSampler(mixing_denoiser, make_scheduler(), steps=2, guidance_rescale=1.5)
    # A schedule whose step is not linear (clipped x_0) takes scheduler.step, with the same rescale.
    clipped = {"clip_sample": True, "clip_sample_range": 0.5}
    z, ctx = torch.randn(1, 4, 3, 5, 5, generator=g), torch.randn(1, 5, 8, generator=g)
    sampler = DDIMSampler(denoiser, make_scheduler(clipped), steps=6, guidance=3.0, guidance_rescale=0.5)
    assert sampler.coefficients is None
    ref = reference_sample(denoiser, make_scheduler(clipped), 6, 3.0, z, ctx, torch.zeros_like(ctx), 0.5)
    assert (sampler.sample(z, ctx, torch.zeros_like(ctx)) - ref).abs().max().item() < 1e-5


def test_epsilon_on_a_zero_snr_schedule_is_refused():
    with pytest.raises(ValueError, match="v_prediction"):
        make_scheduler({"rescale_betas_zero_snr": True}, "epsilon")


def test_one_guidance_implementation_serves_the_linear_step_and_the_scheduler_step():
    """``guided_output`` is what both paths use: the linear step is ``a z + b guided_output`` and ``predict`` (the
    scheduler-step path) returns it in the latents' dtype; ``uncond=None`` is the conditional output alone."""
    from inference.long_video import GeneratorNoise, NoiseSource
    from inference.sampler import guided_output

    g = torch.Generator().manual_seed(4)
    z, cond, uncond = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 5, 8, generator=g), torch.zeros(2, 5, 8)
    t = torch.tensor(500)

    def per_sample(z, t, ctx):  # each sample's output depends on its own text only
        return torch.tanh(z) + t.view(-1, 1, 1, 1, 1) / 1000 + ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)

    alone = guided_output(per_sample, z, t, cond, None, 7.0)
    assert torch.equal(alone, per_sample(z, t.expand(2), cond))
    guided = guided_output(per_sample, z, t, cond, uncond, 7.0, 0.5)
    u, c = per_sample(z, t.expand(2), uncond), per_sample(z, t.expand(2), cond)
    assert torch.allclose(guided, rescale_guidance(u + 7.0 * (c - u), c, 0.5), atol=1e-6)
    coef = torch.tensor([0.9, -0.2, 7.0, 0.5])
    assert torch.allclose(GuidedStep(per_sample)(z, t, coef, cond, uncond), 0.9 * z - 0.2 * guided, atol=1e-6)
    sampler = DDIMSampler(per_sample, make_scheduler(), steps=4, guidance=7.0, guidance_rescale=0.5)
    assert torch.allclose(sampler.predict(z.bfloat16(), 500, cond, uncond).float(), guided, atol=0.1)
    assert sampler.predict(z.bfloat16(), 500, cond, uncond).dtype == torch.bfloat16
    # The long-video loop tells a noise source from a list of generators by the protocol, not by an attribute.
    assert isinstance(GeneratorNoise([torch.Generator()]), NoiseSource)
    assert not isinstance([torch.Generator()], NoiseSource)
