"""The issue-21 benchmarks run end to end on tiny models (their figures come from the GPU machine)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_steady_video, bench_train_start
from tests.helpers import logged_metrics


def test_steady_video_rows_and_verdict(tmp_path):
    out = bench_steady_video.main(["--tiny", "--videos", "1", "--json", str(tmp_path / "sv.json")])
    rows = out["rows"]
    timed = [(r["model"].split(":")[0], r["mode"]) for r in rows if "steady_s" in r]
    assert timed == [("peer", "eager"), ("peer", "compiled"), ("VidRD pipeline", "off"),
                     ("VidRD pipeline", "graphs"), ("VidRD pipeline", "compile")]  # fmt: skip
    assert all(r["steady_s"] > 0 and r["first_video_s"] > 0 for r in rows if "steady_s" in r)
    assert [r["picks"] for r in rows if r["mode"] == "auto"] == ["off", "off"]  # CPU: no fast path to pick
    best = min(r["steady_s"] for r in rows if r["model"] == "VidRD pipeline" and "steady_s" in r)
    eager = next(r["steady_s"] for r in rows if r["mode"] == "eager")
    assert out["summary"]["best_vidrd_steady_s"] == best and out["summary"]["vs_peer_eager"] == round(eager / best, 2)
    saved = json.loads((tmp_path / "sv.json").read_text())
    assert saved["rows"] == rows and saved["env"]["shape"] == bench_steady_video.TINY


def test_train_start_runs_the_product_twice_on_one_cache(tmp_path):
    work = ["--tiny", "--work", str(tmp_path / "w"), "--steps", "6", "--log-every", "2", "--clips", "4"]
    first = bench_train_start.main([*work, "--rows", "cold"])  # split across calls, as on the GPU machine
    assert [r["row"] for r in first["rows"]] == ["vidrd train fit, cold compile cache"] and first["summary"] is None
    out = bench_train_start.main([*work, "--rows", "warm,bare,bare-mixed"])
    cold, warm, bare, mixed = out["rows"]
    assert cold == first["rows"][0]  # kept from the first call
    assert cold["row"].endswith("cold compile cache") and warm["row"].endswith("warm compile cache")
    for row in (cold, warm):  # parsed from the trainer's own line and metrics.csv
        assert row["first_step_s"] > 0 and row["steady_samples_per_s"] > 0 and row["wall_s"] > row["first_step_s"]
    # One rate per 2-step window after step 2 (steps 3-4 and 5-6), none for the first step's window.
    logged = [(int(r["step"]), float(r["train/samples_per_s"])) for r in logged_metrics(tmp_path / "w" / "fit-warm")
              if r.get("train/samples_per_s")]  # fmt: skip
    assert [s for s, _ in logged] == [3, 5] and all(v > 0 for _, v in logged)  # Lightning's step is 0-based
    assert bare["batch"] == 2 and bare["steady_samples_per_s"] > 0 and "autocast" in mixed["row"]
    s = out["summary"]
    assert s["loop_share_of_bare_step"] == round(warm["steady_samples_per_s"] / bare["steady_samples_per_s"], 3)
    assert s["loop_share_of_mixed_step"] == round(warm["steady_samples_per_s"] / mixed["steady_samples_per_s"], 3)
    assert s["mixed_step_share_of_bare_step"] == round(mixed["steady_samples_per_s"] / bare["steady_samples_per_s"], 3)


REFUSED = [
    (["--rows", "hot"], "--rows: a comma list of cold, warm, bare"),
    (["--rows", "warm"], "no cold row in"),
    (["--steps", "15"], "--steps must span two --log-every windows"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_train_start_refuses_rows_it_cannot_measure(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        bench_train_start.main(["--tiny", "--work", str(tmp_path / "w"), *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "w" / "ckpt").exists()  # refused before any work
