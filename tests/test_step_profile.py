"""The training-step profiler: per-step figures from a real fit, and the trace arithmetic behind them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from training.cli import main as train_main
from training.step_profile import StepProfile, trace_figures


def test_trace_figures_count_overlapping_gpu_work_once():
    events = [
        {"cat": "kernel", "name": "a", "ts": 0, "dur": 100},
        {"cat": "kernel", "name": "b", "ts": 50, "dur": 100},  # overlaps a: busy 0..150
        {"cat": "gpu_memcpy", "name": "c", "ts": 300, "dur": 50},  # busy 300..350
        {"cat": "gpu_user_annotation", "name": "Optimizer.step", "ts": 0, "dur": 1000},  # not GPU work
        {"cat": "cuda_runtime", "name": "cudaStreamSynchronize", "ts": 400, "dur": 30},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 0, "dur": 5},
    ]
    f = trace_figures(events, steps=2)
    assert f == {"gpu_kernel_ms": 0.1, "gpu_busy_ms": 0.1, "launches": 1.0, "host_waits": 0.5, "host_wait_ms": 0.015}


def test_bad_window_is_refused():
    with pytest.raises(ValueError, match="steps >= 1"):
        StepProfile(steps=0)


def test_an_unwritable_folder_fails_at_setup_not_after_the_steps(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        StepProfile(dirpath=str(blocker / "prof")).setup(SimpleNamespace(is_global_zero=True), None, "fit")


def test_profiles_a_window_of_a_real_fit(tmp_path):
    shards = tmp_path / "shards"
    with ShardWriter(str(shards), "webvid", max_samples=4) as w:
        for i in range(4):
            w.write(make_sample(i, frames=12))
    finalize(str(shards))
    prof = tmp_path / "prof"
    cb = {"class_path": "training.step_profile.StepProfile",
          "init_args": {"dirpath": str(prof), "start": 1, "steps": 2, "trace": True}}  # fmt: skip
    code = train_main(["fit", "--config", "tiny", "--data.train", json.dumps([{"path": str(shards)}]),
                       "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
                       "--trainer.max_steps", "4", "--trainer.callbacks+", json.dumps(cb)])  # fmt: skip
    assert code == 0
    figures = json.loads((prof / "step_profile.json").read_text())
    assert figures["steps"] == 2 and figures["first_step"] == 1 and figures["wall_ms"] > 0
    assert figures["launches"] == 0 and figures["gpu_busy_ms"] == 0  # CPU: no GPU work to count
    text = (prof / "step_profile.txt").read_text()
    assert "top ops by host time" in text and "aten::" in text
    assert (prof / "trace.json.gz").stat().st_size > 0
