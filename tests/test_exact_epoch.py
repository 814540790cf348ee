"""Exact epochs across ranks (``data.sampling: exact``): every sample once per epoch over all ranks, the same number
of steps on every rank, and a resume on another number of ranks that neither repeats nor skips a sample. The
split is checked on its own over many shapes, then the data module runs in real processes joined by gloo (the CPU
side of DDP), its checkpoint state gathered over them as under Lightning."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from training.data import ClipConfig, ShardSet, UnusableDataError
from training.datamodule import ShardDataModule
from training.exact_epoch import split_epoch, steps_for

SAMPLES = 17  # over 6 shards of at most 3: divides evenly among neither 2 nor 3 ranks, nor their workers


@pytest.mark.parametrize("n", [1, 7, 17, 64, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("workers", [0, 1, 3])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_every_remaining_sample_once_and_the_same_steps_on_every_rank(n, world, workers, batch):
    remaining = list(range(0, 3 * n, 3))  # positions of a resumed epoch: not a plain range
    if n // world < steps_for(n, world, batch):
        with pytest.raises(UnusableDataError, match=f"{n} samples over {world} ranks"):
            split_epoch(remaining, world, 0, workers, batch)
        return
    seen, steps = [], []
    for rank in range(world):
        shares = split_epoch(remaining, world, rank, workers, batch)
        assert len(shares) == max(1, workers)
        for positions, sizes in shares:
            assert sum(sizes) == len(positions) and all(1 <= s <= batch for s in sizes)
            seen += positions
        steps.append(sum(len(sizes) for _, sizes in shares))
    assert sorted(seen) == remaining and len(set(seen)) == n
    assert steps == [steps_for(n, world, batch)] * world


@pytest.fixture
def uneven_shards(tmp_path) -> Path:
    out = tmp_path / "shards"
    with ShardWriter(str(out), "webvid", max_samples=3) as w:
        for i in range(SAMPLES):
            w.write(make_sample(i, frames=6))
    finalize(str(out))
    return out


def rank_main(rank: int, world: int, shards: str, work: str, stop_after: int | None, resume: str | None) -> None:
    """One rank: the data module's epoch through its DataLoader workers, stopping after ``stop_after`` batches;
    writes the keys it trained on and (rank 0) the module's gathered state."""
    dist.init_process_group("gloo", init_method=f"file://{work}/rendezvous", rank=rank, world_size=world)
    dm = ShardDataModule(train=[ShardSet(shards)], clip=ClipConfig(frames=2, stride=1, size=16), batch_size=2,
                         num_workers=2, sampling="exact", shuffle_buffer=4)  # fmt: skip
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=0, training=True)
    if resume:
        dm.load_state_dict(torch.load(resume, weights_only=False))
    keys, batches = [], 0
    for batch in dm.train_dataloader():
        if stop_after is not None and batches == stop_after:
            break
        dm.on_before_batch_transfer(batch, 0)  # what Lightning calls for each batch it trains on
        keys += [k for k, p in zip(batch["key"], batch["pos"], strict=True) if p >= 0]
        batches += 1
    state = dm.state_dict()  # a collective: every rank gathers
    Path(work, f"rank{rank}.json").write_text(json.dumps({"keys": keys, "batches": batches}))
    if rank == 0:
        torch.save(state, Path(work, "state.pt"))
    dist.destroy_process_group()


def run_ranks(world: int, shards: Path, work: Path, stop_after: int | None = None, resume: Path | None = None):
    work.mkdir()
    mp.spawn(rank_main, args=(world, str(shards), str(work), stop_after, str(resume) if resume else None),
             nprocs=world, join=True)  # fmt: skip
    return [json.loads((work / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_ranks_see_every_sample_once_and_a_resume_on_three_ranks_finishes_the_epoch(uneven_shards, tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    everything = sorted(make_sample(i).key for i in range(SAMPLES))
    full = run_ranks(2, uneven_shards, tmp_path / "full")
    assert sorted(k for r in full for k in r["keys"]) == everything  # once each, over both ranks
    assert [r["batches"] for r in full] == [steps_for(SAMPLES, 2, 2)] * 2  # no rank left waiting
    cut = run_ranks(2, uneven_shards, tmp_path / "cut", stop_after=2)
    before = [k for r in cut for k in r["keys"]]
    assert 0 < len(before) < SAMPLES and len(set(before)) == len(before)
    rest = run_ranks(3, uneven_shards, tmp_path / "rest", resume=tmp_path / "cut" / "state.pt")
    after = [k for r in rest for k in r["keys"]]
    assert sorted(before + after) == everything  # nothing repeated, nothing skipped
    assert len({r["batches"] for r in rest}) == 1


def test_train_fit_with_exact_epochs_trains_every_sample_once_and_resumes_mid_epoch(uneven_shards, tmp_path):
    """Through ``vidrd train fit``: one exact epoch is every sample once; stopped after 3 steps and resumed from
    its checkpoint, the same epoch finishes on the samples it had left."""
    from training.cli import main as train_main

    def fit(root: Path, *extra: str) -> list[str]:
        train_main(["fit", "--config", "tiny", "--data.train", json.dumps([{"path": str(uneven_shards)}]),
                    "--data.sampling", "exact", "--data.num_workers", "2", "--data.clip.frames", "2",
                    "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
                    "--trainer.callbacks+", json.dumps({"class_path": "training.callbacks.SeenSamples",
                                                        "init_args": {"dirpath": str(root / "seen")}}),
                    *extra])  # fmt: skip
        rows = [json.loads(line) for line in (root / "seen" / "rank0.jsonl").read_text().splitlines()]
        return [k for r in rows if r["epoch"] == 0 for k in r["keys"]]

    everything = sorted(make_sample(i).key for i in range(SAMPLES))
    steps = steps_for(SAMPLES, 1, 2)
    assert sorted(fit(tmp_path / "full", "--trainer.max_steps", str(steps))) == everything
    cut = tmp_path / "cut"
    first = fit(cut, "--trainer.max_steps", "3")
    assert len(first) == 6
    both = fit(cut, "--trainer.max_steps", str(steps), "--ckpt_path", "last")  # the same log, appended to
    assert sorted(both) == everything


def test_bad_samples_are_skipped_and_counted_and_every_step_still_runs(tmp_path):
    out = tmp_path / "shards"
    with ShardWriter(str(out), "webvid", max_samples=3) as w:
        for i in range(7):
            w.write(make_sample(i, frames=6))
        for i in range(2):  # one frame: no clip of 2 frames fits
            w.write(make_sample(50 + i, frames=1))
    finalize(str(out))
    dm = ShardDataModule(train=[ShardSet(str(out))], clip=ClipConfig(frames=2, stride=1, size=16), batch_size=2,
                         num_workers=0, sampling="exact", shuffle_buffer=4)  # fmt: skip
    batches = list(dm.train_dataloader())
    assert len(batches) == steps_for(9, 1, 2)  # planned over all 9 indexed samples
    keys = [k for b in batches for k, p in zip(b["key"], b["pos"], strict=True) if p >= 0]
    assert sorted(keys) == sorted(make_sample(i).key for i in range(7))
    assert sum(b["skipped"] for b in batches) == 2


def test_an_unknown_sampling_and_a_set_without_an_index_are_refused(tmp_path, uneven_shards):
    with pytest.raises(ValueError, match="sampling must be one of"):
        ShardDataModule(train=[ShardSet(str(uneven_shards))], sampling="shuffled")
    (uneven_shards / "_index.parquet").unlink()
    dm = ShardDataModule(train=[ShardSet(str(uneven_shards))], clip=ClipConfig(frames=2, stride=1, size=16),
                         num_workers=0, sampling="exact")  # fmt: skip
    with pytest.raises(UnusableDataError, match=r"_index\.parquet, which is missing"):
        dm.train_dataloader()  # before any worker starts


def test_a_resampled_resume_on_another_split_says_it_starts_the_epoch_afresh(uneven_shards, caplog):
    dm = ShardDataModule(train=[ShardSet(str(uneven_shards))], clip=ClipConfig(frames=2, stride=1, size=16),
                         num_workers=0)  # fmt: skip
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0, training=True)
    saved = {"epoch": 0, "world": 2, "workers": 0, "positions": {0: {0: (3, 2)}, 1: {0: (3, 2)}}, "skipped": {}}
    dm.load_state_dict(saved)
    batch = next(iter(dm.train_dataloader()))
    assert batch["position"][0] == 1  # the stream started over rather than replaying another split's position
    assert "epoch 0 starts its streams afresh" in caplog.text and "saved on 2 x 0" in caplog.text
