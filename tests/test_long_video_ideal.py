"""The long-video loops with an ideal denoiser (``examples.ideal_long_video``): in a world of bumps moving right
along a line, the exact posterior mean is the best any trained model can do, so what a loop does here it does with a
perfect model too."""

from __future__ import annotations

import pytest

from examples.ideal_long_video import main, plot_sweep, seam_kinds, shares, sweep, world
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
    for argv, message in ((["--sweep", "spiral"], "unknown loop 'spiral'"), (["--plot", "x.png"], "--sweep")):
        with pytest.raises(SystemExit):
            main(["--seeds", "1", *argv])
        assert message in capsys.readouterr().err
