"""Helpers several test modules share (test modules import this, never each other)."""

from __future__ import annotations

import csv
import socket
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
