"""cluster/: the specs parse and hold together, and a real two-node Ray cluster (head + worker started with
`ray start` on this machine) runs a curation stage through `ray job submit` with tasks on both nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, free_port, ray_node_ports, ray_temp_dir, stop_ray_under

CLUSTER = REPO / "cluster"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_yaml_parses_and_the_launcher_is_consistent():
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        assert _docs(f), f
    launcher = _docs(CLUSTER / "ray-cluster.yaml")[0]
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types and {"cpu_workers", "gpu_workers"} <= set(types)
    assert sum(t.get("max_workers", 0) for t in types.values()) <= launcher["max_workers"]


def _pod_templates(spec: dict) -> list[tuple[str, dict]]:
    out = [("head", spec["headGroupSpec"]["template"])]
    out += [(g["groupName"], g["template"]) for g in spec.get("workerGroupSpecs", [])]
    return out


def test_kuberay_specs_hold_valid_pod_templates():
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.utils import parse_quantity

    api = kubernetes.client.ApiClient()
    for name in ("raycluster.yaml", "rayjob-curate.yaml"):
        (doc,) = _docs(CLUSTER / "kuberay" / name)
        assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        if doc["kind"] == "RayJob":
            assert doc["spec"]["entrypoint"].startswith("vidrd curate ")
        for group, template in _pod_templates(spec):
            # the Kubernetes client's own models: unknown types or missing required fields raise
            pod = api._ApiClient__deserialize(template, "V1PodTemplateSpec")
            assert pod.spec.containers, group
            for c in pod.spec.containers:
                assert c.image and c.resources.limits, (group, c.name)
                for q in c.resources.limits.values():
                    parse_quantity(q)  # "16", "64Gi": real quantities
        groups = {g["groupName"]: g for g in spec.get("workerGroupSpecs", [])}
        for g in groups.values():
            assert g.get("minReplicas", 0) <= g["replicas"] <= g.get("maxReplicas", g["replicas"])
    (rc,) = _docs(CLUSTER / "kuberay" / "raycluster.yaml")
    gpu = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}["gpu-models"]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_launch_scripts_are_valid_shell():
    for f in (CLUSTER / "slurm" / "train.sbatch", CLUSTER / "torchrun.sh"):
        assert subprocess.run(["bash", "-n", str(f)]).returncode == 0, f
        assert "vidrd" in f.read_text() and "train fit" in f.read_text()


@pytest.mark.slow
def test_two_node_ray_cluster_runs_a_stage_on_both_nodes(corpus, tmp_path):
    """The cluster is this test's own (its temp folder, every port chosen free), it is waited for with the
    project's own `vidrd cluster wait` before the job is submitted (the job agent registers after `ray start`
    returns), and only its processes are stopped afterwards."""
    from vidrd.cluster import wait_for_jobs

    _, manifest = corpus
    ray_bin = Path(sys.executable).parent / "ray"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    port, dash = free_port(), free_port()
    temp_dir = ray_temp_dir()
    common = ["--num-cpus=1", "--object-store-memory=200000000"]
    try:
        head = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", *common, *ray_node_ports(True),
                               f"--temp-dir={temp_dir}", "--resources", json.dumps({"head_node": 1}),
                               "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true"],
                              capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
        assert head.returncode == 0, head.stderr[-2000:]
        worker = subprocess.run([str(ray_bin), "start", f"--address=127.0.0.1:{port}", *common, *ray_node_ports(False),
                                 "--resources", json.dumps({"worker_node": 1})],
                                capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-2000:]
        address = f"http://127.0.0.1:{dash}"
        wait_for_jobs(address, timeout=300, nodes=2)
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text("stage:\n  short_side: 32\nrunner:\n  rows_per_partition: 1\n")
        out = tmp_path / "job_out"
        cmd = [str(ray_bin), "job", "submit", "--address", address, "--working-dir", str(REPO),
               "--runtime-env-json", json.dumps({"excludes": [".venv", ".git", "demo-out", "runs", ".whl"]}), "--",
               sys.executable, "-m", "vidrd.cli", "curate", "captioned", "--manifest", str(manifest), "--out", str(out),
               "--config", str(cfg), "--no-progress"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        assert "[OK]" in r.stdout

        from ray.util.state import list_nodes, list_tasks

        nodes = {n.node_id: n.resources_total for n in list_nodes(address=address)}
        assert len(nodes) == 2 and any("head_node" in r for r in nodes.values())
        assert any("worker_node" in r for r in nodes.values())
        tasks = list_tasks(address=address, filters=[("state", "=", "FINISHED")], limit=10000, detail=True)
        used = {t.node_id for t in tasks if t.type == "NORMAL_TASK"}
        assert used == set(nodes), f"curation tasks ran on {len(used)} of 2 nodes"
    finally:
        stop_ray_under(temp_dir)


def test_cluster_wait_gives_up_in_time_and_names_why(capsys):
    """Nothing listens at the address: `vidrd cluster wait` exits 1 within its limit, with the reason."""
    from vidrd.cli import main

    t0 = time.monotonic()
    assert main(["cluster", "wait", "--address", f"http://127.0.0.1:{free_port()}", "--timeout", "3"]) == 1
    assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert "did not run a job within 3 s (" in err and "Unavailable" in err  # the last reason it saw
