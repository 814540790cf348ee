"""Curation through processes and clusters: a driver killed with SIGKILL, and `ray job submit` to a
real head node started with `ray start` (this module runs with no Ray of its own)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, free_port, index_keys, ray_node_ports, ray_temp_dir, stop_ray_under
from vidrd.cluster import wait_for_jobs


def _curate_cmd(manifest: Path, out: Path) -> list[str]:
    cfg = out.parent / "cfg.yaml"
    cfg.write_text("stage:\n  short_side: 32\nrunner:\n  rows_per_partition: 1\n")
    return [sys.executable, "-m", "vidrd.cli", "curate", "captioned", "--manifest", str(manifest), "--out", str(out),
            "--config", str(cfg), "--num-cpus", "1", "--no-progress"]  # fmt: skip


def test_killing_the_driver_then_rerunning_gives_the_same_keys(corpus, tmp_path):
    rows, manifest = corpus
    ref, out = tmp_path / "ref" / "out", tmp_path / "killed" / "out"
    ref.parent.mkdir()
    out.parent.mkdir()
    subprocess.run(_curate_cmd(manifest, ref), check=True, capture_output=True, cwd=REPO, timeout=600)
    proc = subprocess.Popen(_curate_cmd(manifest, out), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    parts = out / "_parts"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("*.rejects.parquet")) if parts.exists() else []) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*.rejects.parquet")))
    assert 3 <= done < len(rows), "the kill should land mid-run"
    assert not (out / "_index.parquet").exists()
    r = subprocess.run(_curate_cmd(manifest, out), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"({done} already complete)" in r.stdout or "already complete" in r.stdout
    assert index_keys(out) == index_keys(ref)
    assert sorted(os.listdir(out)) == sorted(os.listdir(ref))
    # Byte for byte: fixed tar headers and member order, deterministic encoding, per-partition shard numbers.
    tars = sorted(p.name for p in ref.glob("*.tar"))
    assert tars and all((out / t).read_bytes() == (ref / t).read_bytes() for t in tars)
    assert (out / "_index.parquet").read_bytes() == (ref / "_index.parquet").read_bytes()


def test_ray_job_submit_against_a_real_head(corpus, tmp_path):
    rows, manifest = corpus
    ray_bin = Path(sys.executable).parent / "ray"
    # A throwaway loopback cluster: no token auth (real clusters should keep RAY_AUTH_MODE=token).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    port, dash = free_port(), free_port()
    temp_dir = ray_temp_dir()  # this test's own cluster: its folder and ports, and only its processes stopped
    try:
        start = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2",
                                *ray_node_ports(True), f"--temp-dir={temp_dir}", "--dashboard-host=127.0.0.1",
                                f"--dashboard-port={dash}", "--include-dashboard=true"],
                               capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
        assert start.returncode == 0, start.stderr[-2000:]
        wait_for_jobs(f"http://127.0.0.1:{dash}", timeout=300)  # the job agent registers after `ray start` returns
        out = tmp_path / "job_out"
        cmd = [str(ray_bin), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO),
               "--runtime-env-json", json.dumps({"excludes": [".venv", ".git", "demo-out"]}), "--",
               sys.executable, "-m", "vidrd.cli", "curate", "captioned", "--manifest", str(manifest), "--out", str(out),
               "--no-progress"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        assert "[OK]" in r.stdout and f"{len(rows)} inputs" in r.stdout
        assert len(index_keys(out)) == sum(x["expect"] == "ok" for x in rows)
    finally:
        stop_ray_under(temp_dir)
