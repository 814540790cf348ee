"""Helpers several test modules share (test modules import this, never each other)."""

from __future__ import annotations

import contextlib
import csv
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# A UNet small enough for the learning examples' tests on CPU (official layout, two levels).
TINY_EXAMPLE_UNET = dict(sample_size=16, block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=(2, 4),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=32,
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))  # fmt: skip


def index_keys(out: Path) -> list[str]:
    """The sorted sample keys of a shard folder's ``_index.parquet``."""
    import pyarrow.parquet as pq

    return sorted(pq.read_table(out / "_index.parquet").column("key").to_pylist())


def logged_metrics(root: Path) -> list[dict]:
    """Every row a fit under ``root`` (its ``trainer.default_root_dir``) wrote to ``logs/version_*/metrics.csv``."""
    rows: list[dict] = []
    for f in sorted((root / "logs").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(f.open()))
    return rows


def free_port() -> int:
    """A TCP port nothing listens on now (for a throwaway local Ray head)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(**kw):
    """Small generation settings (20 frames of 32x32 in clips of 8, 3 steps), overridable."""
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings

    base = dict(frames=20, steps=3, guidance=5.0, seed=0, height=32, width=32, long=LongVideoConfig(8, 4, 1.0, 1.0))
    return GenerationSettings(**{**base, **kw})


def collect(pipe, reqs, s) -> np.ndarray:
    """Every clip's frames of ``pipe.generate`` joined along time."""
    return np.concatenate([f for _, f in pipe.generate(reqs, s, progress=False)], axis=1)


def ray_temp_dir() -> Path:
    """A temp folder for a test's own Ray cluster (short: Ray's socket paths must fit in 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))


def ray_node_ports(head: bool) -> list[str]:
    """`ray start` options for every port a node would otherwise take at a fixed default (6379, 10001, 52365, ...),
    each chosen free, so no other Ray on the machine clashes with a test's cluster or is joined by it."""
    names = ["node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent",
             "metrics-export"] + (["ray-client-server"] if head else [])  # fmt: skip
    return [f"--{n}-port={free_port()}" for n in names]


def stop_ray_under(temp_dir: Path) -> None:
    """Kill the processes of the Ray cluster started with ``--temp-dir=temp_dir`` (each names it) and remove the
    folder. Never `ray stop`: it stops every Ray on the machine, another test run's (whose driver then dies) or
    the user's included."""
    import psutil

    mine = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if any(str(temp_dir) in arg for arg in p.info["cmdline"] or []):
                mine.append(p)
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(mine, timeout=30)
    shutil.rmtree(temp_dir, ignore_errors=True)
