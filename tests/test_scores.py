"""``vidrd curate scores`` : CLIP caption similarity and the LAION aesthetic head as index columns, equal to
computing them by hand with the same models; a wrong head file is named; the trainer filters on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from curation.models.clip import ClipScorer
from curation.models.tiny import tiny_clip
from curation.scores import AestheticMLP
from curation.shard_jobs import keyframe_indices
from media.video import decode_frames
from shards.sidecars import SCORES, StaleSidecarError, with_derived_columns
from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from training.data import ShardSet
from vidrd.cli import main as vidrd_main


@pytest.fixture(scope="module", autouse=True)
def ray_shut_down_after():
    """The CLI starts a local Ray in this process; later modules start their own."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("scores")
    shards = root / "shards"
    with ShardWriter(str(shards), "webvid", max_samples=3) as w:
        for i in range(5):
            w.write(make_sample(i, frames=12))
    finalize(str(shards))
    clip = tiny_clip(root / "clip")
    torch.manual_seed(0)
    head = AestheticMLP(16)  # the tiny CLIP's 16-d projection
    torch.save(head.state_dict(), root / "aesthetic.pth")
    return shards, clip, root / "aesthetic.pth"


def test_scores_equal_the_models_by_hand(scored, capsys):
    shards, clip, head_file = scored
    args = ["curate", "scores", "--shards", str(shards), "--clip", str(clip), "--aesthetic", str(head_file),
            "--device", "cpu", "--num-cpus", "2"]  # fmt: skip
    assert vidrd_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["samples"] == summary["scored"] == 5
    got = {r["key"]: r for r in pq.read_table(shards / SCORES).to_pylist()}
    scorer = ClipScorer.from_transformers(str(clip), "cpu", torch.float32)
    head = AestheticMLP.from_file(str(head_file))
    for i in (0, 3):
        s = make_sample(i, frames=12)
        frames, _ = decode_frames(s.mp4, keyframe_indices(12, 4))
        with torch.no_grad():
            emb = torch.nn.functional.normalize(scorer.encode_image(scorer.preprocess(list(frames))).float(), dim=-1)
            mean = torch.nn.functional.normalize(emb.mean(0, keepdim=True), dim=-1)
            text = torch.nn.functional.normalize(scorer.encode_text([s.caption]).float(), dim=-1)
            want_clip = float((mean * text).sum())
            want_aesthetic = float(head(mean))
        # the job resizes keyframes to short side 224 before CLIP's own resize: a few thousandths apart
        assert got[s.key]["clip_score"] == pytest.approx(want_clip, abs=2e-2)
        assert got[s.key]["aesthetic"] == pytest.approx(want_aesthetic, abs=2e-2)
    threshold = float(np.median([r["clip_score"] for r in got.values()]))
    kept = ShardSet(path=str(shards), where=f"clip_score >= {threshold} and aesthetic > -100").kept()
    assert kept.num_rows == sum(r["clip_score"] >= threshold for r in got.values()) >= 3
    assert vidrd_main(["shards", "stats", str(shards), "--json"]) == 0  # the scores' distributions
    shown = json.loads(capsys.readouterr().out)
    assert shown["clip_score"]["count"] == 5 and shown["aesthetic"]["count"] == 5
    index = kept.slice(0, 1)
    with pytest.raises(StaleSidecarError, match="vidrd curate scores"):
        with_derived_columns(str(shards), index.drop_columns(["aesthetic", "clip_score"]), ["aesthetic"])


def test_a_file_that_is_not_an_aesthetic_head_is_named(scored, tmp_path, capsys):
    shards, clip, _ = scored
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(2, 2)}, bad)
    args = ["curate", "scores", "--shards", str(shards), "--clip", str(clip), "--device", "cpu"]
    assert vidrd_main([*args, "--aesthetic", str(bad)]) == 2
    assert "not a LAION aesthetic predictor (no layers.0.weight)" in capsys.readouterr().err
    assert vidrd_main(["curate", "scores", "--shards", str(shards)]) == 2  # no --clip
    assert "--clip" in capsys.readouterr().err
    assert vidrd_main(["curate", "scores", "--shards", str(shards), "--clip", str(tmp_path / "no-such-clip")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_unreadable_sample_is_its_own_reject(scored, tmp_path, capsys):
    """A shard of only unreadable samples (its keyframe column empty) joins the others' batches: each such
    sample is listed as not scored, the rest are scored."""
    _, clip, _ = scored
    shards = tmp_path / "shards"
    with ShardWriter(str(shards), "webvid", max_samples=2) as w:
        for i in range(2):
            w.write(make_sample(i, frames=12))
        for i in (2, 3):
            s = make_sample(i, frames=12)
            s.mp4 = s.mp4[: len(s.mp4) // 4]
            w.write(s)
    finalize(str(shards))
    args = ["curate", "scores", "--shards", str(shards), "--clip", str(clip), "--device", "cpu", "--num-cpus", "2"]
    assert vidrd_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["samples"], summary["scored"]) == (4, 2)
    assert sorted(e.split(":")[0] for e in summary["not_scored"]) == ["webvid-id2", "webvid-id3"]
    assert sorted(pq.read_table(shards / SCORES).column("key").to_pylist()) == ["webvid-id0", "webvid-id1"]


def test_model_files_that_are_not_what_they_claim_are_named(scored, tmp_path, capsys):
    shards, clip, _ = scored
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    args = ["curate", "scores", "--shards", str(shards), "--device", "cpu"]
    assert vidrd_main([*args, "--clip", str(clip), "--aesthetic", str(text)]) == 2
    assert "notes.pth: not a LAION aesthetic predictor" in capsys.readouterr().err
    assert vidrd_main([*args, "--clip", str(tmp_path)]) == 2  # a folder without a CLIP in it
    assert "not a CLIP" in capsys.readouterr().err
    assert vidrd_main([*args, "--clip", f"open_clip:ViT-B-32:{text}"]) == 2
    assert "not a CLIP" in capsys.readouterr().err
