"""The long-video loops with an ideal denoiser (``examples.ideal_long_video``): in a world of bumps moving right
along a line, the exact posterior mean is the best any trained model can do, so what a loop does here it does with a
perfect model too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.ideal_long_video import learned_denoiser, main, plot_sweep, seam_kinds, shares, sweep, world
from examples.learn_long_video import SWEEP
from inference.long_video import LongVideoConfig


@pytest.fixture(scope="module")
def clips():
    return world()


def test_the_shifted_loop_continues_the_motion_at_every_seam(clips):
    kinds = seam_kinds(LongVideoConfig.for_schedule("paper", reuse="shifted"), 8, clips)
    assert kinds["continues"] >= 15 and kinds["reflects"] == kinds["jumps"] == 0, kinds


def test_the_papers_loop_breaks_the_motion_at_the_seams_even_with_a_perfect_model(clips):
    # Reversed reuse guides the new clip onto the old one's last frames backwards, and DSG's copies of the old
    # trajectory carry little of where the object is at the noisy steps where the new clip's path is chosen.
    kinds = seam_kinds(LongVideoConfig.for_schedule("paper"), 8, clips)
    assert kinds["jumps"] + kinds["reflects"] >= 3 * kinds["continues"], kinds


def test_figure6_with_a_perfect_model_more_prompt_frames_and_more_guidance_hold_the_motion(clips, tmp_path):
    rows = sweep(["shifted"], 4, clips)
    assert {(r["param"], r["value"]) for r in rows} == {(p, v) for p, vs in SWEEP.items() for v in vs}
    at = {(r["param"], r["value"]): shares(r) for r in rows}
    # The paper's figure 6: more prompt frames and stronger DSG (beta) give more seams where the motion goes on.
    assert at[("prompt_frames", 2)][0] + 0.3 < at[("prompt_frames", 8)][0]
    assert at[("beta", 0.0)][1] > at[("beta", 1.0)][1] + 0.3  # without DSG the object jumps at the seams
    plot_sweep(rows, str(tmp_path / "f6.png"))
    assert (tmp_path / "f6.png").stat().st_size > 5000


def test_the_sweep_refuses_unknown_loops_and_a_plot_without_a_sweep(capsys):
    with pytest.raises(ValueError, match="unknown loop 'spiral'"):
        sweep(["spiral"], 1)
    for argv, message in ((["--sweep", "spiral"], "unknown loop 'spiral'"), (["--plot", "x.png"], "--sweep"),
                          (["--learned", "0"], "--learned must be >= 1")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["--seeds", "1", *argv])
        assert message in capsys.readouterr().err


def test_the_two_way_world_mirrors_every_clip():
    one, two = world(), world(both_ways=True)
    assert two.shape == (2 * one.shape[0], one.shape[1])
    assert torch.equal(two[len(one):].reshape(-1, 16, 40), one.reshape(-1, 16, 40).flip(-1))


def test_seams_are_counted_along_the_way_the_first_clip_went(clips):
    left = world(both_ways=True)[len(clips):]  # only the mirrored clips: every video moves left
    kinds = seam_kinds(LongVideoConfig.for_schedule("paper", reuse="shifted"), 4, left)
    assert kinds["continues"] >= 8 and kinds["reflects"] == kinds["jumps"] == 0, kinds


def test_a_learned_denoiser_trains_and_drives_the_loop(clips):
    from inference.sampler import make_scheduler
    from training.model.loading import V_PREDICTION
    from training.model.sampling_defaults import sd_scheduler_config

    alphas = make_scheduler(sd_scheduler_config(V_PREDICTION, True)).alphas_cumprod
    denoise, losses = learned_denoiser(clips, alphas, steps=120)
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20])
    z = torch.randn(2, 1, 16, 1, 40)
    assert denoise(z, torch.tensor([500]), None).shape == z.shape
    kinds = seam_kinds(LongVideoConfig.for_schedule("paper", reuse="shifted"), 2, clips, denoiser=denoise)
    assert sum(kinds.values()) == 2 * 3  # every seam of two 4-clip videos counted once
