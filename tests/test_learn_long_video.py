"""The long-video report on CPU with a tiny random model: what it refuses, what each entry holds, and that every
saved video re-measures to its entry (the figures come from the files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from examples import learn_long_video as llv
from examples.learn_video import make_base
from media.video import decode_frames
from tests.helpers import TINY_EXAMPLE_UNET
from training.model.tiny import TINY_TEXT


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("llv")
    make_base(root / "base", vae_steps=2, device="cpu", unet=TINY_EXAMPLE_UNET, text=TINY_TEXT, check_clips=1)
    return root / "base"


def test_bad_input_is_refused_with_one_line_naming_it(tiny_base, tmp_path, capsys):
    args = ["--checkpoint", str(tiny_base), "--out", str(tmp_path / "r")]
    assert llv.main([*args, "--settings", "all,no_magic"]) == 2
    assert "unknown setting 'no_magic'" in capsys.readouterr().err
    assert llv.main([*args, "--frames", "16"]) == 2
    assert "needs at least 2 clips" in capsys.readouterr().err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square moving right\na blue circle sitting still\n")
    assert llv.main([*args, "--prompts", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert "'a blue circle sitting still' has no direction word" in err and len(err.strip().splitlines()) == 1
    assert llv.main([*args, "--loops", "mine"]) == 2 and "unknown loop 'mine'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written before the checks
    with pytest.raises(llv.ReportError, match="no colour word"):
        llv.parse_prompt("a square moving up")


def test_counts_that_make_no_videos_are_refused(tiny_base, tmp_path, capsys):
    args = ["--checkpoint", str(tiny_base), "--out", str(tmp_path / "r")]
    for extra, words in ((["--seeds", "0"], "seeds must be >= 1, got 0"),
                         (["--sweep-seeds", "-1"], "sweep seeds must be >= 1, got -1"),
                         (["--budget-minutes", "0"], "budget must be a number of minutes > 0")):  # fmt: skip
        assert llv.main([*args, *extra]) == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_every_loop_makes_at_least_four_clips_and_48_frames():
    for loop in llv.LOOPS:
        for setting in llv.SETTINGS:
            cfg = llv.Run(loop, setting).config()
            frames = llv.video_frames(cfg)
            assert frames >= llv.MIN_FRAMES and cfg.num_clips(frames) >= llv.MIN_CLIPS, (loop, setting)
            assert len(range(frames)) == sum(len(range(16)[cfg.kept(i)]) for i in range(cfg.num_clips(frames)))
    assert llv.Run("shifted", "no_dsg").config().beta == 0.0 and not llv.Run("paper", "independent").config().fnr
    assert llv.Run("paper", "no_pns").config().pns is False
    swept = llv.plan(["shifted"], ["all"], ["shifted"])
    assert [r.name for r in swept[:2]] == ["shifted_all", "shifted_M2"] and len(swept) == 1 + 3 + 4 + 4


def test_a_sweep_cut_short_still_spans_every_curve():
    runs = llv.plan(["paper"], ["all"], ["paper", "shifted"])[1:]
    assert len(runs) == 2 * (3 + 4 + 4)  # every value but each loop's default
    first = {(r.loop, r.param, r.value) for r in runs[: 2 * 2 * 3]}  # two turns of the six curves
    for loop in ("paper", "shifted"):
        defaults = llv.loop_defaults(loop)
        for param, values in llv.SWEEP.items():
            others = [v for v in values if v != defaults[param]]
            assert {(loop, param, min(others)), (loop, param, max(others))} <= first, (loop, param)
    assert llv.sweep_order([0.0, 0.25, 0.5, 0.75, 1.0], 1.0) == [0.0, 0.75, 0.25, 0.5]
    assert llv.sweep_order([2, 4, 8, 12], 8) == [2, 12, 4]


def test_report_entries_hold_what_other_tools_read(tiny_base, tmp_path):
    out = tmp_path / "report"
    res = llv.report(tiny_base, out, vae=tiny_base / "vae", prompts=["a red square moving right"], seeds=2,
                     loops=["shifted", "official"], settings_names=["all", "independent"], sweep_loops=["shifted"],
                     sweep_seeds=1, steps=2, size=32, vae_clips=2)  # fmt: skip
    saved = json.loads((out / "report.json").read_text())
    entries = saved["long_videos"]
    assert len(entries) == 2 * 2 * 2 + 11  # (loops x settings x seeds) + one video per swept value
    for e in entries:
        assert e["setting"] in llv.SETTINGS and e["schedule"] in ("paper", "official")
        assert e["frames"] >= 48 and e["clips"] >= 4 and e["clip_frames"] == 16 and e["prompt_frames"] >= 2
        assert {"file", "prompt", "seed", "coherent", "backward_jump", "sideways_jump", "forward_jump",
                "after_seam", "keeps_object"} <= set(e)  # fmt: skip
        video, _ = decode_frames(str(out / e["file"]))
        assert video.shape[0] == e["frames"] and video.shape[1] >= 32
    for e in entries[:3]:  # the figures are the saved file's
        again = llv.measure_saved(((out / e["file"]).read_bytes(), "red", "right", "square", e["seams"]))
        assert {k: again[k] for k in again} == {k: e[k] for k in again}
    assert set(saved["summary"]) == {"shifted/all", "shifted/independent", "official/all", "official/independent"}
    for group, rows in saved["summary"].items():  # where the jumps are, from each entry's jump steps
        mine = [e for e in entries if f"{e['loop']}/{e['setting']}" == group]
        assert rows["jumps_per_video"] == round(sum(len(e["jump_steps"]) for e in mine) / len(mine), 2)
        assert all(e["no_jump"] == (e["jump_steps"] == []) for e in mine)
    assert {(x["param"], x["value"]) for x in saved["sweep"]} >= {("prompt_frames", 2), ("alpha", 4.0), ("beta", 0.0)}
    assert (out / "figure6.png").stat().st_size > 5000 and (out / "long_video_tracks.png").stat().st_size > 5000
    assert set(saved["vae_flicker"]) == {"generated", "real_sampled", "real_mean"}
    assert res["vae_flicker"]["generated"]["clips"] == 2 * 2  # two clips of the two `shifted/all` videos
    with pytest.raises(llv.ReportError, match="--force"):
        llv.report(tiny_base, out, prompts=["a red square moving right"], seeds=1, loops=["shifted"],
                   settings_names=["all"], sweep_loops=[], steps=1, size=32)  # fmt: skip


def test_static_background_flicker_sees_only_the_background():
    still = np.full((1, 3, 6, 16, 16), -0.2, dtype=np.float32)
    still[:, 0, :, 4:8, 4:8] = 0.8  # a red object that moves: not flicker
    still[:, 1:, :, 4:8, 4:8] = -0.7
    moving = still.copy()
    moving[:, :, 3:] = np.roll(still[:, :, 3:], 4, axis=-1)
    assert llv.static_background_flicker(torch.from_numpy(moving)) == 0.0
    noisy = moving + np.random.default_rng(0).normal(0, 0.02, moving.shape).astype(np.float32)
    assert llv.static_background_flicker(torch.from_numpy(noisy)) > 0.005


def test_runs_made_in_job_processes_give_the_same_report(tiny_base, tmp_path):
    args = dict(prompts=["a blue circle moving left"], seeds=2, loops=["shifted"], settings_names=["all", "no_dsg"],
                sweep_loops=[], steps=2, size=32)  # fmt: skip
    one = llv.report(tiny_base, tmp_path / "one", **args)
    two = llv.report(tiny_base, tmp_path / "two", jobs=2, **args)
    assert one["long_videos"] == two["long_videos"] and len(one["long_videos"]) == 4
    for e in one["long_videos"]:
        a, b = decode_frames(str(tmp_path / "one" / e["file"]))[0], decode_frames(str(tmp_path / "two" / e["file"]))[0]
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # the same video (another process's float sums)
    with pytest.raises(llv.ReportError, match="jobs must be >= 1"):
        llv.report(tiny_base, tmp_path / "three", jobs=0, **args)


def test_remeasure_rewrites_an_old_reports_figures_from_its_videos(tiny_base, tmp_path, capsys):
    out = tmp_path / "old"
    made = llv.report(tiny_base, out, prompts=["a green circle moving down"], seeds=2, loops=["shifted"],
                      settings_names=["all"], sweep_loops=["shifted"], sweep_seeds=1, steps=1, size=32)  # fmt: skip
    old = json.loads((out / "report.json").read_text())
    for e in old["long_videos"]:  # a report from before the measure had jump_steps, with a stale figure
        del e["jump_steps"]
        e["coherent"] = "stale"
    old["summary"] = {}
    (out / "report.json").write_text(json.dumps(old))
    assert llv.main(["--remeasure", str(out)]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["long_videos"] == made["long_videos"] and again["summary"] == made["summary"]
    assert again["sweep"] == made["sweep"]
    first = out / made["long_videos"][0]["file"]
    first.write_bytes(b"not an mp4")
    before = (out / "report.json").read_text()
    assert llv.main(["--remeasure", str(out)]) == 2
    assert f"{first}: cannot be measured" in capsys.readouterr().err
    assert (out / "report.json").read_text() == before  # nothing rewritten
    first.unlink()
    assert llv.main(["--remeasure", str(out)]) == 2
    assert "a video the report lists is missing" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("{not json")
    assert llv.main(["--remeasure", str(tmp_path / "broken")]) == 2
    assert "not a long-video report" in capsys.readouterr().err
    assert llv.main(["--remeasure", str(tmp_path / "none")]) == 2
    assert "no long-video report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        llv.main(["--out", str(tmp_path / "x")])
    assert "--checkpoint and --out are required" in capsys.readouterr().err
