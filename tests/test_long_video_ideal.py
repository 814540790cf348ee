"""The long-video loops with an ideal denoiser (``examples.ideal_long_video``): in a world of bumps moving right
along a line, the exact posterior mean is the best any trained model can do, so what a loop does here it does with a
perfect model too."""

from __future__ import annotations

import pytest

from examples.ideal_long_video import seam_kinds, world
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
