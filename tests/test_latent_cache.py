"""Precomputed VAE latents (``vidrd latents``, ``data.latents``): equal to the VAE's own posterior, nothing lost,
and training reads them instead of decoding video; a set made by another VAE is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from media.video import decode_frames
from shards.reader import scan_shard
from shards.writer import Sample, ShardWriter, finalize
from tests.conftest import make_sample
from training.cli import main as train_main
from training.data import ClipConfig, SkipSample, make_latent_example
from training.latent_cache import LATENTS_MEMBER, cache_latents, load_npy, resize_for_latents
from training.latents_cli import part
from training.model.pretrained import load_components
from vidrd.cli import main as vidrd_main

SIZE = 32


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("latents")
    src = root / "shards"
    with ShardWriter(str(src), "webvid", max_samples=3) as w:
        for i in range(6):
            w.write(make_sample(i, frames=12))
        broken = make_sample(9, frames=12)  # a truncated video: a reject, not a crash
        w.write(Sample(broken.key, broken.mp4[: len(broken.mp4) // 3], broken.caption, broken.meta))
    finalize(str(src))
    out = root / "latents"
    summary = cache_latents("tiny", str(src), str(out), SIZE, device="cpu", progress=False)
    return src, out, summary


def members(folder: Path) -> dict[str, dict[str, bytes]]:
    return {k: m for tar in sorted(folder.glob("*.tar")) for k, m in scan_shard(str(tar), load=True).samples.items()}


def test_latents_are_the_vaes_posterior_and_the_rest_is_copied(sets):
    src, out, summary = sets
    before, after = members(src), members(out)
    assert summary["samples"] == 6 and summary["rejects"] == 1 and summary["index_samples"] == 6
    assert set(after) == set(before) - {"webvid-id9"}
    vae = load_components("tiny").vae.eval()
    for key, m in after.items():
        assert m["mp4"] == before[key]["mp4"] and m["txt"] == before[key]["txt"]  # video and caption unchanged
        meta = json.loads(m["json"])
        assert meta["latents"]["size"] == SIZE and meta["latents"]["vae"] == summary["spec"]["vae"]
        both = load_npy(m[LATENTS_MEMBER])
        frames, _ = decode_frames(m["mp4"])
        with torch.no_grad():
            dist = vae.vae.encode(resize_for_latents(frames, SIZE, 2)).latent_dist
        want = torch.stack([dist.mean, dist.std]).transpose(1, 2) * vae.scaling_factor  # [2, C, F, h, w]
        assert both.dtype == np.float16 and both.shape == tuple(want.shape) == (2, 4, 12, 16, 24)
        assert np.allclose(both.astype(np.float32), want.numpy(), rtol=2e-3, atol=2e-3)
    rejects = pq.read_table(out / "_rejects.parquet").to_pylist()
    assert [(r["input_id"], r["stage"], r["reason"]) for r in rejects] == [("webvid-id9", "latents", "undecodable")]
    index = pq.read_table(out / "_index.parquet")
    assert index.num_rows + len(rejects) == len(before)  # counts add up


def test_a_second_run_skips_done_shards_and_refuses_other_settings(sets):
    src, out, _ = sets
    again = cache_latents("tiny", str(src), str(out), SIZE, device="cpu", progress=False)
    assert again["shards"] == 0 and again["skipped_done"] == 3 and again["index_samples"] == 6
    with pytest.raises(ValueError, match="holds latents made with"):  # other settings into the same folder
        cache_latents("tiny", str(src), str(out), 16, device="cpu", progress=False)


@pytest.mark.parametrize("record", ["[1, 2]", '{"spec": [1]}', '{"spec": {"size": "big"}}', "{torn"])
def test_a_latents_record_of_another_shape_is_named(sets, tmp_path, record):
    import shutil

    from training.latent_cache import LATENTS_INFO, set_spec

    _, out, _ = sets
    work = tmp_path / "set"
    shutil.copytree(out, work)
    (work / LATENTS_INFO).write_text(record)
    with pytest.raises(ValueError, match=r"_latents\.json is not a `vidrd latents` record"):
        set_spec(str(work))


def test_a_damaged_shard_keeps_what_came_before_it_and_is_a_reject(sets, tmp_path):
    import shutil

    src, _, _ = sets
    copy = tmp_path / "src"
    shutil.copytree(src, copy)
    tar = sorted(copy.glob("*.tar"))[0]
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])  # cut inside a sample
    summary = cache_latents("tiny", str(copy), str(tmp_path / "out"), SIZE, device="cpu", progress=False)
    rejects = pq.read_table(tmp_path / "out" / "_rejects.parquet").to_pylist()
    assert any(r["input_id"] == tar.stem and "shard unreadable" in r["message"] for r in rejects)
    # rejects: the damaged shard, the truncated video, and the sample the cut went through when tar gave it whole
    assert summary["samples"] >= 4 and 2 <= summary["rejects"] <= 3


def test_a_clip_is_drawn_from_the_posterior_within_the_stored_frames(sets):
    _, out, _ = sets
    raw = next(iter(members(out).items()))
    sample = {"__key__": raw[0], **raw[1]}
    both = load_npy(sample[LATENTS_MEMBER]).astype(np.float32)
    clip = ClipConfig(frames=4, stride=2, size=SIZE)
    draws = [make_latent_example(sample, clip, np.random.default_rng(s))["latents"] for s in range(2000)]
    assert draws[0].shape == (4, 4, 16, 16)
    assert torch.equal(draws[0], make_latent_example(sample, clip, np.random.default_rng(0))["latents"])
    # Every draw of seed 0's window (start frame, left edge) averages to the stored mean of that window.
    start, left = _window(0, clip)
    same = [d for s, d in enumerate(draws) if _window(s, clip) == (start, left)]
    mean = both[0][:, start : start + clip.span : clip.stride, :, left : left + 16]
    assert len(same) > 15 and np.abs(torch.stack(same).mean(0).numpy() - mean).mean() < 0.5 * both[1].mean()
    with pytest.raises(SkipSample, match="made at size 32"):
        make_latent_example(sample, ClipConfig(frames=4, stride=2, size=64), np.random.default_rng(0))


def _window(seed: int, clip: ClipConfig) -> tuple[int, int]:
    """The (start frame, left edge) that make_latent_example draws first with this seed (12 frames, 16x24)."""
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, 12 - clip.span + 1))
    int(rng.integers(0, 1))  # top: the latents are 16 high, the window 16
    return start, int(rng.integers(0, 24 - 16 + 1))


def fit(src: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", "tiny", "--data.train", json.dumps([{"path": str(src)}]),
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.max_steps", "2", *extra]  # fmt: skip


def test_training_reads_latents_and_refuses_a_wrong_set(sets, tmp_path, capsys):
    src, out, _ = sets
    assert train_main(fit(out, tmp_path / "ok", "--data.latents", "true")) == 0
    assert (tmp_path / "ok" / "checkpoints" / "last.ckpt").exists()
    assert train_main(fit(src, tmp_path / "none", "--data.latents", "true")) == 2
    assert "vidrd latents --pretrained" in capsys.readouterr().err
    other = ["--data.latents", "true", "--model.init_args.seed", "1"]  # another tiny VAE than the one that made them
    assert train_main(fit(out, tmp_path / "other", *other)) == 2
    assert "made by another VAE" in capsys.readouterr().err
    vae_run = [*fit(out, tmp_path / "vae", "--data.latents", "true")]
    vae_run[vae_run.index("tiny")] = "vae-tiny"  # the temporal decoder needs pixels
    assert train_main(vae_run) == 2 and "trains on video" in capsys.readouterr().err


def test_cli_names_bad_arguments(sets, tmp_path, capsys):
    src, _, _ = sets
    args = ["latents", "--pretrained", "tiny", "--shards", str(src), "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert vidrd_main([*args, "--size", "31"]) == 2 and "not a multiple" in capsys.readouterr().err
    assert vidrd_main([*args, "--size", "32", "--part", "3/2"]) == 2 and "0 <= I < N" in capsys.readouterr().err
    assert vidrd_main([*args[:4], str(tmp_path / "nothing"), *args[5:], "--size", "32"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert part("1/4") == (1, 4)
    for size in ("0", "-8", "1048576"):
        assert vidrd_main([*args, "--size", size]) == 2 and "--size must be" in capsys.readouterr().err
    for out in (src, src / "sub", f"{src}/"):  # the input set itself, or inside it: its shards would be overwritten
        before = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
        assert vidrd_main(["latents", "--pretrained", "tiny", "--shards", str(src), "--out", str(out), "--size", "32",
                           "--device", "cpu"]) == 2  # fmt: skip
        assert "give an output folder of its own" in capsys.readouterr().err
        assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == before


def test_the_vae_alone_is_the_one_the_trainer_loads(tmp_path):
    """`vidrd latents` reads only the VAE of a folder; its encoder (what makes latents) must be the one the
    trainer builds from the same folder (an SD folder's temporal decoder layers are freshly initialised)."""
    from tests.tiny_sd import write_sd_folder
    from training.latent_cache import vae_fingerprint
    from training.model.loading import save_vidrd
    from training.model.pretrained import load_vae
    from training.model.tiny import tiny_components

    save_vidrd(str(tmp_path / "vidrd"), tiny_components(str(tmp_path / "w"), seed=3))
    for folder in (tmp_path / "vidrd", write_sd_folder(tmp_path / "sd")):
        alone, full = load_vae(str(folder)), load_components(str(folder)).vae
        assert alone.state_dict().keys() == full.state_dict().keys()
        assert vae_fingerprint(alone) == vae_fingerprint(full)
