"""Shared fixtures: every test makes its own data (videos with PyAV, images with Pillow)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from media.video import encode_mp4
from shards.writer import Sample, ShardWriter, finalize
from training.model.loading import save_vidrd
from training.model.tiny import tiny_components
from vidrd.synthetic import make_all, moving_square

# The LAVIS environment `vidrd env lavis` made (in the user's cache), found before the cache moves below.
_lavis = Path(os.environ.get("VIDRD_CACHE") or Path.home() / ".cache" / "vidrd") / "envs" / "lavis" / "bin" / "python"
if _lavis.exists():
    os.environ.setdefault("VIDRD_LAVIS_PYTHON", str(_lavis))
# Compiled kernels of tests that compile go to a folder of this session, not the user's ~/.cache/vidrd.
os.environ.setdefault("VIDRD_CACHE", tempfile.mkdtemp(prefix="vidrd-test-cache-"))


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Every synthetic dataset in its published layout (built once per test session)."""
    return make_all(tmp_path_factory.mktemp("sources"))


def make_sample(i: int, frames: int = 12, source: str = "webvid", caption: str | None = None) -> Sample:
    colour, direction = ["red", "green", "blue", "yellow"][i % 4], ["right", "left", "up", "down"][i % 4]
    mp4 = encode_mp4(moving_square(colour, direction, frames=frames, width=48, height=32, seed=i), 8.0)
    cap = caption if caption is not None else f"a {colour} square moving {direction}"
    meta = {
        "source": source,
        "source_id": f"id{i}",
        "stage": "test",
        "frames": frames,
        "fps": 8.0,
        "width": 48,
        "height": 32,
    }
    return Sample(key=f"{source}-id{i}", mp4=mp4, caption=cap, meta=meta)


@pytest.fixture
def shard_dir(tmp_path) -> Path:
    """A finalized folder of 3 shards (5 samples, at most 2 per shard) and one reject."""
    out = tmp_path / "shards"
    with ShardWriter(str(out), "webvid", max_samples=2) as w:
        for i in range(5):
            w.write(make_sample(i))
        w.reject("id99", "test", "too_short", "7 frames < 29", source="webvid")
    finalize(str(out))
    return out


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A tiny random-weight VidRD checkpoint folder whose temporal layers are off zero (as after training)."""
    d = tmp_path_factory.mktemp("vidrd")
    comps = tiny_components(d / "work")
    with torch.no_grad():
        for p in comps.unet.temporal_parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for p in comps.vae.temporal_parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_vidrd(str(d / "ckpt"), comps)
    return d / "ckpt"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Good and bad videos (see tests/curation_inputs.py) and a manifest over them."""
    from tests.curation_inputs import video_corpus, write_manifest

    d = tmp_path_factory.mktemp("corpus")
    rows = video_corpus(d / "media")
    manifest = write_manifest(d / "m.parquet", [{k: v for k, v in r.items() if k != "expect"} for r in rows])
    return rows, manifest
