"""``examples/run_learn_video.sh``: which commands each step runs, the two pairs that share the GPU, and failures.
The product's commands are replaced by stubs that record their arguments, so this checks the script alone."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_learn_video.sh"

# A stub records "<name> <args>" with start and end times, sleeps, and fails when its args contain $FAIL_ON.
STUB = """#!/usr/bin/env bash
echo "start $(date +%s.%N) {name} $*" >> "$CALLS"
sleep "${{STUB_SLEEP:-0}}"
echo "end $(date +%s.%N) {name} $*" >> "$CALLS"
if [ -n "${{FAIL_ON:-}}" ] && [[ " $* " == *" $FAIL_ON "* ]]; then echo "stub failed on $FAIL_ON" >&2; exit 7; fi
"""


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "vidrd"):
        path = bin_dir / name
        path.write_text(STUB.format(name=name))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run_script(stubs: Path, out: Path, *steps: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    calls = out.parent / "calls.txt"
    full_env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "CALLS": str(calls), **env}
    proc = subprocess.run(["bash", str(SCRIPT), str(out), *steps], env=full_env, capture_output=True, text=True,
                          cwd=SCRIPT.parents[1], timeout=60)  # fmt: skip
    rows = [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []
    return proc, rows


def started(rows: list[list[str]], needle: str) -> list[list[str]]:
    return [r for r in rows if r[0] == "start" and needle in r]


def span(rows: list[list[str]], needle: str) -> tuple[float, float]:
    (a,) = [float(r[1]) for r in rows if r[0] == "start" and needle in r]
    (b,) = [float(r[1]) for r in rows if r[0] == "end" and needle in r]
    return a, b


def test_each_pair_shares_the_gpu_and_each_step_says_when_it_ended(stubs, tmp_path):
    out = tmp_path / "lv"
    proc, rows = run_script(stubs, out, "fit", "vae", "report", "long", STUB_SLEEP="0.5")
    assert proc.returncode == 0, proc.stderr
    fit, vae = span(rows, "examples/learn_video.yaml"), span(rows, "examples/learn_video_vae.yaml")
    report, long = span(rows, "report"), span(rows, "examples.learn_long_video")
    assert fit[0] < vae[1] and vae[0] < fit[1]  # overlapping
    assert long[0] < report[1] and report[0] < long[1]
    assert max(fit[1], vae[1]) <= min(long[0], report[0])  # the reports read what the fits wrote
    for step in ("fit", "long"):
        assert f"run_learn_video: {step} ended at" in proc.stdout
    for step in ("vae", "report"):
        assert f"run_learn_video: {step} ended at" in (out / "logs" / f"{step}.log").read_text()


def test_a_step_alone_runs_in_the_foreground_with_its_arguments(stubs, tmp_path):
    out = tmp_path / "lv"
    proc, rows = run_script(stubs, out, "base", "long", BASE_VAE="/old/base/vae", LONG_ARGS="--sweep shifted")
    assert proc.returncode == 0, proc.stderr
    (base,) = started(rows, "base")
    assert base[base.index("--vae-from") + 1] == "/old/base/vae"
    (long,) = started(rows, "examples.learn_long_video")
    assert "--vae" not in long  # no fine-tuned temporal decoder yet: the flicker comparison is left out
    assert long[-2:] == ["--sweep", "shifted"]
    assert not (out / "logs").exists()
    (out / "vae-export" / "vae").mkdir(parents=True)
    _, rows = run_script(stubs, out, "long")
    (long,) = started(rows, "examples.learn_long_video")[-1:]
    assert long[long.index("--vae") + 1] == str(out / "vae-export" / "vae")


@pytest.mark.parametrize("failing", ["examples/learn_video_vae.yaml", "examples/learn_video.yaml"])
def test_either_of_a_pair_failing_fails_the_run_and_nothing_after_it_runs(stubs, tmp_path, failing):
    proc, rows = run_script(stubs, tmp_path / "lv", "fit", "vae", "long", FAIL_ON=failing)
    assert proc.returncode != 0
    assert not started(rows, "examples.learn_long_video")


def test_an_unknown_step_is_refused_before_anything_runs(stubs, tmp_path):
    proc, rows = run_script(stubs, tmp_path / "lv", "fit", "evaluate")
    assert proc.returncode == 2 and "unknown step 'evaluate'" in proc.stderr
    assert rows == []
