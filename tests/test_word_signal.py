"""The word-signal measure: its clip lists, the ideal denoiser's gain from knowing the direction, the training draw."""

import numpy as np
import pytest
import torch

from examples.word_signal import FACTOR, FRAMES, Design, main, measure, training_density, word_gain
from training.timestep_sampling import shifted_timesteps


@pytest.mark.parametrize("dims", [1, 2])
def test_every_clip_keeps_the_whole_object_in_view_and_directions_are_balanced(dims):
    d = Design("w", "window", (1.0,))
    clips, dirs = d.clips(step=0.5, dims=dims)
    assert torch.equal(dirs.bincount(), torch.full((2 * dims,), len(dirs) // (2 * dims)))
    assert abs(float(clips.mean())) < 1e-5 and abs(float(clips.std()) - 1) < 1e-3
    # Undo the normalisation: every frame covers exactly the object's area (no part of it outside the frame).
    raw = clips.double() - clips.double().min()
    width = d.size // FACTOR
    per_frame = raw.reshape(len(clips), FRAMES, -1).sum(-1)
    assert torch.allclose(per_frame, per_frame[:1, :1].expand_as(per_frame), rtol=1e-4)
    assert raw.shape[1] == FRAMES * width**dims


def test_the_word_adds_nothing_where_the_input_shows_everything_and_more_where_the_path_is_set_by_it():
    centred, cdirs = Design("c", "centred", (2.0, 3.0)).clips()
    window, wdirs = Design("w", "window", (0.5, 0.75)).clips()
    assert word_gain(centred, cdirs, 1.0, 16) == 0.0  # a clean input: nothing left to tell
    assert word_gain(centred, cdirs, 0.999, 64) < 1e-3  # almost clean: the input shows the direction
    # At pure noise the word is all there is: a centred path (position set by the direction) gains far more from it
    # than a window that can start anywhere along the motion.
    assert word_gain(centred, cdirs, 0.0, 256) > 2 * word_gain(window, wdirs, 0.0, 256)
    # Two noisy copies see more than one, so the word adds less at the same level.
    mid_one = word_gain(window, wdirs, 0.05, 256, seed=3)
    mid_two = word_gain(window, wdirs, 0.05, 256, seed=3, copies=2)
    assert mid_two < mid_one


def test_training_density_is_the_shifted_draw():
    p = training_density(1000, 3.0)
    assert abs(p.sum() - 1) < 1e-9 and (p > 0).all()
    torch.manual_seed(0)
    drawn = np.bincount(shifted_timesteps(200_000, 1000, 3.0).numpy() // 100, minlength=10) / 200_000
    assert np.allclose(p.reshape(10, 100).sum(1), drawn, atol=0.005)


def test_measure_ranks_the_designs_and_the_cli_writes_its_files(tmp_path, capsys):
    res = measure(levels=6, samples=32, shifts=(1.0, 3.0))
    centred, window = res["designs"][0]["signal"], res["designs"][1]["signal"]
    assert centred["3.0"] > window["3.0"]  # the short-clip run's centred paths teach the word more
    assert centred["3.0"] > centred["1.0"]  # its gain lies at the noisy end, where the shift draws more steps
    assert main(["--levels", "3", "--samples", "8", "--shifts", "2,4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "word_signal_1d_x1.json").is_file() and (tmp_path / "word_signal_1d_x1.png").is_file()
    assert "| signal, shift 2 | signal, shift 4 |" in capsys.readouterr().out
    for bad in (["--levels", "1"], ["--shifts", "3,x"], ["--shifts", "0"]):
        with pytest.raises(SystemExit):
            main(bad)
    with pytest.raises(ValueError, match="layout"):
        Design("x", "diagonal", (1.0,)).clips()
