"""The issue-21 benchmarks run end to end on tiny models (their figures come from the GPU machine)."""

from __future__ import annotations

import json

from benchmarks import bench_steady_video


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
