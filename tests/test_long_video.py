"""FNR / PNS / DSG against the paper's equations, with a scripted denoiser and with the tiny model."""

import itertools
import math
from dataclasses import replace
from fractions import Fraction

import pytest
import torch

from inference.long_video import (
    DSGGuide,
    LongVideoConfig,
    clips_needed,
    dsg_holds,
    fnr_pns,
    generate_latent_clips,
    kept_frames,
    video_index,
)
from inference.sampler import DDIMSampler, make_scheduler


def per_frame(z, t, ctx):
    """A denoiser that treats every frame alone (so identical inputs give identical trajectories)."""
    return 0.3 * z + ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)


def frame_mixing(z, t, ctx):
    return per_frame(z, t, ctx) + 0.5 * z.mean(dim=2, keepdim=True)


def run(denoiser, cfg, clips=3, seed=0, steps=10, b=1, story=False):
    sampler = DDIMSampler(denoiser, make_scheduler(), steps=steps, guidance=3.0)
    cond = torch.ones(b, 3, 4)

    def conditioning(i):
        return cond * (1 + 0.1 * i * story), torch.zeros(b, 3, 4)

    gens = [torch.Generator().manual_seed(seed + k) for k in range(b)]
    return list(generate_latent_clips(sampler, conditioning, clips, (2, cfg.clip_frames, 4, 4), cfg, gens))


def test_fnr_reverses_prompt_frames_exactly_for_any_alpha():
    prev = torch.randn(2, 4, 6, 3, 3)
    g = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    for alpha in (0.0, 0.5, 3.0):
        z = fnr_pns(prev, 3, alpha, g)
        for j in range(3):
            assert torch.equal(z[:, :, j], prev[:, :, 6 - j - 1])
    z = fnr_pns(prev, 3, 1e6, g)
    assert torch.allclose(z, prev.flip(2), atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_pns_unit_variance_and_correlation(alpha):
    torch.manual_seed(0)
    n, m = 6, 2
    prev = torch.randn(1, 1, n, 256, 256)
    z = fnr_pns(prev, m, alpha, [torch.Generator().manual_seed(3)])
    new, mirror = z[:, :, m:].flatten(), prev.flip(2)[:, :, m:].flatten()
    assert new.var().item() == pytest.approx(1.0, abs=0.01)
    corr = torch.corrcoef(torch.stack([new, mirror]))[0, 1].item()
    assert corr == pytest.approx(alpha / math.sqrt(1 + alpha**2), abs=0.01)


def test_dsg_schedule_matches_equation_8():
    sampler = DDIMSampler(per_frame, make_scheduler(), steps=50)
    big_t = 1000
    for beta in (0.0, 0.3, 0.5, 1.0):
        for m in (1, 4, 8):
            for t in sampler.timesteps:
                for j in range(m + 2):
                    b = Fraction(beta).limit_denominator(1000)
                    expect = j < m and Fraction(t) > (1 - b) * big_t + b * big_t * Fraction(j, m)
                    assert dsg_holds(t, j, m, beta, big_t) == expect, (beta, m, t, j)
    guide = DSGGuide(sampler.timesteps, LongVideoConfig(16, 8, 1.0, 0.0), big_t)
    assert not any(guide.copy_plan)
    guide = DSGGuide(sampler.timesteps, LongVideoConfig(16, 8, 1.0, 1.0), big_t)
    assert all(0 in js for js in guide.copy_plan)  # frame 0 is held through every step
    assert [len(js) for js in guide.copy_plan] == sorted((len(js) for js in guide.copy_plan), reverse=True)


def test_beta_one_alpha_large_prompt_frames_reproduce_previous_clip():
    cfg = LongVideoConfig(clip_frames=6, prompt_frames=3, alpha=1e6, beta=1.0)
    clips = run(per_frame, cfg)
    for prev, cur in itertools.pairwise(clips):
        for j in range(cfg.prompt_frames):
            assert torch.allclose(cur[:, :, j], prev[:, :, cfg.clip_frames - 1 - j], atol=1e-5)


def test_a_story_changes_the_conditioning_per_clip():
    cfg = LongVideoConfig(clip_frames=6, prompt_frames=3, alpha=1e6, beta=1.0)
    same, story = run(per_frame, cfg), run(per_frame, cfg, story=True)
    assert torch.equal(same[0], story[0])
    assert torch.allclose(story[1][:, :, 0], story[0][:, :, -1], atol=1e-6)  # the seam is still held
    assert (story[1][:, :, 2] - same[1][:, :, 2]).abs().max() > 1e-3  # other frames follow the new prompt


def test_beta_zero_alpha_zero_new_frames_are_independent():
    cfg = LongVideoConfig(clip_frames=6, prompt_frames=2, alpha=0.0, beta=0.0)
    clips = run(frame_mixing, cfg, clips=2)
    prev, cur = clips
    mirrored = prev.flip(2)
    # no DSG copies and fresh noise past M: the prompt frames no longer reproduce the previous clip
    assert (cur[:, :, 0] - mirrored[:, :, 0]).abs().max() > 1e-2
    # while with DSG at beta = 1 the seam frame is held exactly
    held = run(frame_mixing, LongVideoConfig(6, 2, 0.0, 1.0), clips=2)
    assert torch.allclose(held[1][:, :, 0], held[0][:, :, -1], atol=1e-6)


def test_same_seed_same_video_other_seed_other_video():
    cfg = LongVideoConfig(6, 2, 1.0, 0.5)
    a, b, c = run(frame_mixing, cfg, seed=5), run(frame_mixing, cfg, seed=5), run(frame_mixing, cfg, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.allclose(a[0], c[0])


def test_videos_in_a_batch_use_their_own_generators():
    cfg = LongVideoConfig(6, 2, 1.0, 0.5)
    batch = run(frame_mixing, cfg, b=2, seed=10)
    alone = run(frame_mixing, cfg, b=1, seed=11)
    assert torch.allclose(batch[2][1], alone[2][0], atol=1e-6)


def test_memory_is_flat_in_the_number_of_clips():
    sampler = DDIMSampler(per_frame, make_scheduler(), steps=20)
    cfg = LongVideoConfig(8, 4, 1.0, 0.6)
    guide = DSGGuide(sampler.timesteps, cfg, 1000)
    z = torch.zeros(1, 2, 8, 2, 2)
    sizes = []
    for _ in range(6):
        for k, t in enumerate(sampler.timesteps):
            guide.hook(k, t, z)
        guide.next_clip()
        sizes.append(sum(v.numel() for v in guide.previous.values()))
    assert len(set(sizes)) == 1
    assert sizes[0] <= len(sampler.timesteps) * cfg.prompt_frames * 2 * 2 * 2


@pytest.mark.parametrize(("frames", "n"), [(16, 16), (17, 16), (64, 16), (100, 8), (5, 16)])
def test_clip_count_and_join_arithmetic(frames, n):
    k = clips_needed(frames, n)
    available = n + (k - 1) * (n - 1)
    assert available >= frames and (k == 1 or available - (n - 1) < frames)
    # every video index is produced once: clip 0 all frames, later clips from frame 1
    produced = [video_index(i, j, n) for i in range(k) for j in range(n)[kept_frames(i)]]
    assert produced == list(range(available))
    # the seam: clip i frame j mirrors clip i-1 frame N-1-j around v = i (N-1)
    for i in range(1, k):
        for j in range(n):
            assert video_index(i, j, n) + video_index(i - 1, n - 1 - j, n) == 2 * i * (n - 1)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="prompt_frames"):
        LongVideoConfig(8, 9)
    with pytest.raises(ValueError, match="beta"):
        LongVideoConfig(8, 4, 1.0, 1.5)
    with pytest.raises(ValueError, match="alpha"):
        LongVideoConfig(8, 4, -1.0)


def test_reversed_reuse_is_the_papers_mirror_and_shifted_keeps_the_order():
    rev, shift = LongVideoConfig(6, 2), LongVideoConfig(6, 2, reuse="shifted")
    assert [rev.source(j) for j in range(6)] == [5, 4, 3, 2, 1, 0]
    # shifted: the prompt frames are the previous clip's last M in order, the rest reuse its first N - M
    assert [shift.source(j) for j in range(6)] == [4, 5, 0, 1, 2, 3]
    assert [rev.seam_distance(j) for j in range(2)] == [0, 1] and [shift.seam_distance(j) for j in range(2)] == [1, 0]
    prev = torch.randn(1, 2, 6, 3, 3)
    z = fnr_pns(prev, 2, 0.5, [torch.Generator().manual_seed(0)], sources=[shift.source(j) for j in range(6)])
    assert torch.equal(z[:, :, :2], prev[:, :, 4:])  # FNR: exact for the prompt frames
    assert not torch.allclose(z[:, :, 2:], prev[:, :, :4])  # PNS mixes new noise into the rest
    pure = fnr_pns(prev, 2, 0.5, [torch.Generator().manual_seed(0)], sources=[4, 5, 0, 1, 2, 3], pns=False)
    assert torch.equal(pure, prev[:, :, [4, 5, 0, 1, 2, 3]])  # no PNS: eq. 6 alone


@pytest.mark.parametrize("frames", [16, 17, 48, 61, 100])
def test_join_arithmetic_for_every_loop(frames):
    loops = (LongVideoConfig(16, 8), LongVideoConfig(16, 8, reuse="shifted"), LongVideoConfig(16, 4, reuse="shifted"))
    for cfg in (*loops, LongVideoConfig.for_schedule("official")):
        k = cfg.num_clips(frames)
        lengths = [len(range(cfg.clip_frames)[cfg.kept(i)]) for i in range(k)]
        assert sum(lengths) >= frames and sum(lengths[:-1]) < frames  # enough clips, none to spare
        seams = cfg.seam_steps(frames)
        assert seams == [sum(lengths[:i]) - 1 for i in range(1, k) if sum(lengths[:i]) < frames]
    assert LongVideoConfig(16, 8, reuse="shifted").new_frames == 8 and LongVideoConfig(16, 8).new_frames == 15


@pytest.mark.parametrize("hold", ["trajectory", "finished"])
def test_shifted_dsg_at_beta_one_continues_from_the_previous_clips_last_frames(hold):
    cfg = LongVideoConfig(clip_frames=6, prompt_frames=3, alpha=0.0, beta=1.0, reuse="shifted", hold=hold)
    clips = run(frame_mixing, cfg)
    for prev, cur in itertools.pairwise(clips):
        # frame M-1 (next to the new frames) is held through every step: it is the previous clip's last frame
        assert torch.allclose(cur[:, :, 2], prev[:, :, 5], atol=1e-5)
        assert (cur[:, :, 3] - prev[:, :, 0]).abs().max() > 1e-3  # the new frames are new
    sampler = DDIMSampler(per_frame, make_scheduler(), steps=20)
    guide = DSGGuide(sampler.timesteps, cfg, 1000, sampler.alphas_after)
    assert all(2 in js for js in guide.copy_plan) and guide.src == [3, 4, 5]
    assert [len(js) for js in guide.copy_plan] == sorted((len(js) for js in guide.copy_plan), reverse=True)


def test_finished_hold_is_the_previous_clip_noised_to_each_steps_level():
    cfg = LongVideoConfig(clip_frames=6, prompt_frames=2, alpha=0.0, beta=1.0, reuse="shifted", hold="finished")
    sampler = DDIMSampler(per_frame, make_scheduler(), steps=5)
    guide = DSGGuide(sampler.timesteps, cfg, 1000, sampler.alphas_after)
    z_t, z0 = torch.randn(1, 1, 6, 2, 2), torch.randn(1, 1, 6, 2, 2)
    guide.begin_clip(z_t)
    guide.next_clip(z0)
    k = 1  # frame 1 (the seam frame) is held at step 1; its level is the one step 1 leaves
    held = guide.hook(k, sampler.timesteps[k], torch.zeros(1, 1, 6, 2, 2))
    a = sampler.alphas_after[k]
    assert torch.allclose(held[:, :, 1], math.sqrt(a) * z0[:, :, 5] + math.sqrt(1 - a) * z_t[:, :, 5], atol=1e-6)
    last = guide.hook(4, sampler.timesteps[4], torch.zeros(1, 1, 6, 2, 2))
    assert torch.equal(last[:, :, 1], z0[:, :, 5])  # after the last step: the finished latents themselves
    with pytest.raises(ValueError, match="alphas_after"):
        DSGGuide(sampler.timesteps, cfg, 1000)


def test_loop_options_are_checked():
    with pytest.raises(ValueError, match="reuse"):
        LongVideoConfig(8, 4, reuse="sideways")
    with pytest.raises(ValueError, match="hold"):
        LongVideoConfig(8, 4, hold="last")
    with pytest.raises(ValueError, match="official schedule"):
        LongVideoConfig.for_schedule("official", reuse="shifted")
    with pytest.raises(ValueError, match="M\\) must be < N"):
        LongVideoConfig(8, 8, reuse="shifted")
    assert LongVideoConfig.for_schedule("paper", reuse="shifted").prompt_frames == 8
    assert LongVideoConfig.for_schedule("paper", clip_frames=8, reuse="shifted").prompt_frames == 7


def test_unstaged_dsg_holds_every_prompt_frame_as_long_as_the_seam_frame():
    sampler = DDIMSampler(per_frame, make_scheduler(), steps=20)
    for beta in (1.0, 0.5):
        cfg = LongVideoConfig(8, 4, 0.0, beta, reuse="shifted", staged=False)
        plan = DSGGuide(sampler.timesteps, cfg, 1000).copy_plan
        seam_only = DSGGuide(sampler.timesteps, replace(cfg, staged=True), 1000).copy_plan
        assert all(js in ([], [0, 1, 2, 3]) for js in plan)
        assert [bool(js) for js in plan] == [3 in js for js in seam_only]
    assert LongVideoConfig.for_schedule("paper", reuse="shifted").staged is False
    assert LongVideoConfig.for_schedule("paper").staged is True
    with pytest.raises(ValueError, match="official schedule"):
        LongVideoConfig.for_schedule("official", staged=False)


def test_resampling_repeats_only_the_held_steps_of_later_clips():
    calls = []

    def counting(z, t, ctx):
        calls.append(int(t[0]))
        return frame_mixing(z, t, ctx)

    base = LongVideoConfig(6, 2, 0.0, 0.5, reuse="shifted", hold="finished", staged=False)
    run(counting, base, clips=2)
    plain = len(calls)
    calls.clear()
    clips = run(counting, replace(base, resample=3), clips=2)
    sampler = DDIMSampler(per_frame, make_scheduler(), steps=10)
    held = sum(bool(js) for js in DSGGuide(sampler.timesteps, base, 1000, sampler.alphas_after).copy_plan)
    assert 0 < held < 10 and len(calls) == plain + 2 * held  # clip 0 and the unheld steps run once
    again = run(counting, replace(base, resample=3), clips=2)
    assert all(torch.equal(x, y) for x, y in zip(clips, again, strict=True))  # the extra noise is seeded
    a, s = sampler.renoise_factors(3)
    ac = sampler.scheduler.alphas_cumprod
    assert a**2 == pytest.approx(float(ac[sampler.timesteps[3]]) / sampler.alphas_after[3]) and a**2 + s**2 == 1
    with pytest.raises(ValueError, match="resample"):
        LongVideoConfig(6, 2, resample=0)
    with pytest.raises(ValueError, match="official schedule"):
        LongVideoConfig.for_schedule("official", resample=2)
    shifted = LongVideoConfig.for_schedule("paper", reuse="shifted")
    assert (shifted.alpha, shifted.hold, shifted.staged, shifted.resample) == (0.0, "finished", False, 3)
