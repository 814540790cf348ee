"""Exact epochs (``data.sampling: exact``): every sample the shard sets keep is trained on once per epoch, over all
ranks together, and every rank runs the same number of steps (no rank waits at the epoch's end for another).

The epoch's order is fixed by the seed and the epoch and read from the sets' ``_index.parquet`` files, the same on
every rank: shards in a shuffled order, each shard's samples in the order they were written (so a worker reads its
shards front to back). The samples not yet trained on this epoch are cut into one contiguous run per rank (sizes
differ by at most one), each run into the epoch's ``steps`` batches (sizes differ by at most one, none larger than
``batch_size``, none empty), and each rank's batches into one contiguous run per DataLoader worker, which shuffles
its samples through a buffer as it forms its batches. Every batch carries its samples' positions in the epoch's
order; a checkpoint records the positions trained on over all ranks (:class:`~training.datamodule.ShardDataModule`),
and a resume, on the same or another number of ranks or workers, splits what is left the same way. The sets'
weights do not apply (each sample once); the resampled default (``training.data``) mixes sets by weight instead.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from shards.reader import list_shards
from training.data import ShardSet, StreamPlan, UnusableDataError, collate, usable_example


@dataclass(frozen=True)
class EpochOrder:
    """The samples of an epoch in the order it reads them: position ``i`` is ``keys[i]`` in shard ``urls[i]``."""

    urls: list[str]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)


def epoch_order(sets: Sequence[ShardSet], seed: int, epoch: int) -> EpochOrder:
    """Every sample the sets keep, their shards shuffled by ``(seed, epoch)``, each shard's samples in index order."""
    shards: list[tuple[str, list[str]]] = []
    for s in sets:
        kept = s.kept()
        if kept is None:
            raise UnusableDataError(f"{s.path}: data.sampling exact reads the set's _index.parquet, which is missing")
        url_of = {posixpath.basename(u): u for u in list_shards(s.path)}
        by_shard: dict[str, list[str]] = {}
        for shard, key in zip(kept.column("shard").to_pylist(), kept.column("key").to_pylist(), strict=True):
            by_shard.setdefault(shard, []).append(key)
        for shard, keys in by_shard.items():
            if shard not in url_of:
                raise UnusableDataError(f"{s.path}: the index lists {shard}, which is not among the set's shards")
            shards.append((url_of[shard], keys))
    order = np.random.default_rng([seed, epoch]).permutation(len(shards))
    urls, keys = [], []
    for i in order:
        url, ks = shards[int(i)]
        urls += [url] * len(ks)
        keys += ks
    return EpochOrder(urls, keys)


def steps_for(samples: int, world: int, batch_size: int) -> int:
    """Steps every rank runs to train on ``samples`` samples once over ``world`` ranks."""
    return math.ceil(math.ceil(samples / world) / batch_size)


def _runs(n: int, parts: int) -> list[int]:
    """``n`` cut into ``parts`` sizes that differ by at most one, larger first."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def split_epoch(
    remaining: Sequence[int], world: int, rank: int, workers: int, batch_size: int
) -> list[tuple[list[int], list[int]]]:
    """This rank's share of ``remaining`` (positions in the epoch's order): for each DataLoader worker, its positions
    and the sizes of the batches it forms from them. Every rank gets the same number of batches in all."""
    n = len(remaining)
    steps = steps_for(n, world, batch_size) if n else 0
    if n and n // world < steps:
        raise UnusableDataError(
            f"an exact epoch of {n} samples over {world} ranks at batch_size {batch_size} cannot give every rank "
            f"{steps} non-empty batches; use fewer ranks, a larger batch_size or data.sampling resampled"
        )
    sizes = _runs(n, world)
    start = sum(sizes[:rank])
    mine = list(remaining[start : start + sizes[rank]])
    batches = _runs(len(mine), steps) if steps else []
    out, b, p = [], 0, 0
    for count in _runs(len(batches), max(1, workers)):
        sizes_k = batches[b : b + count]
        out.append((mine[p : p + sum(sizes_k)], sizes_k))
        b, p = b + count, p + sum(sizes_k)
    return out


class ExactEpochStream(IterableDataset):
    """One rank's share of an exact epoch, as batches (see the module docstring); ``plan.consumed`` holds the
    positions already trained on this epoch (a resume)."""

    def __init__(self, plan: StreamPlan):
        super().__init__()
        self.plan = plan
        self.epoch = -1
        self.order = EpochOrder([], [])

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch's order, once, in the main process (its workers get it with the dataset, not re-reading
        every set's index each)."""
        if epoch != self.epoch:
            self.order = epoch_order(self.plan.sets, self.plan.seed, epoch)
            self.epoch = epoch

    def _read(self, order: EpochOrder, positions: list[int], errors: list[int]) -> Iterator[tuple[int, dict]]:
        """``(position, raw sample)`` for each of ``positions`` found in its shard, reading each shard once."""

        def handler(exc: Exception) -> bool:
            errors[0] += 1
            return True  # a broken shard or member: its samples count as skipped

        runs: list[tuple[str, dict[str, int]]] = []
        for pos in positions:
            url = order.urls[pos]
            if not runs or runs[-1][0] != url:
                runs.append((url, {}))
            runs[-1][1][order.keys[pos]] = pos
        for url, wanted in runs:
            for sample in wds.tarfile_to_samples(handler=handler)(iter([{"url": url}])):
                pos = wanted.pop(sample.get("__key__"), None)
                if pos is not None:
                    yield pos, sample
            errors[0] += len(wanted)  # listed by the index, not in the shard

    def __iter__(self) -> Iterator[dict]:
        p = self.plan
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.epoch < 0:
            self.set_epoch(0)  # iterated without the trainer's loader
        order = self.order
        remaining = [i for i in range(len(order)) if i not in p.consumed]
        shares = split_epoch(remaining, p.world, p.rank, workers, p.batch_size)
        if wid >= len(shares):
            return
        positions, sizes = shares[wid]
        rng = np.random.default_rng([p.seed, self.epoch, p.rank, wid, len(p.consumed)])
        errors, reported, in_a_row = [0], 0, 0
        buffer: list[tuple[int, dict]] = []
        source = self._read(order, positions, errors)
        last_good: dict | None = None
        for size in sizes:
            batch, pos = [], []
            while len(batch) < size:
                while len(buffer) < p.shuffle_buffer:  # keep the buffer full while the worker's samples last
                    item = next(source, None)
                    if item is None:
                        break
                    buffer.append(item)
                if not buffer:
                    break
                at, raw = buffer.pop(int(rng.integers(len(buffer))))
                # The same clip whatever the split: its draw is seeded by its position in the epoch.
                ex = usable_example(raw, p, np.random.default_rng([p.seed, self.epoch, at]), in_a_row)
                if ex is None:
                    errors[0] += 1
                    in_a_row += 1
                    continue
                in_a_row = 0
                ex.update(skipped=0, worker=wid, draws=0, done=0, epoch=self.epoch)
                batch.append(ex)
                pos.append(at)
            if not batch:
                if last_good is None:
                    raise UnusableDataError(f"worker {wid} of rank {p.rank}: no sample of its share could be used")
                # Every rank must run every step: the step repeats a trained sample, recorded as no position.
                batch, pos = [last_good], [-1]
            last_good = batch[-1]
            out = collate(batch)
            out["skipped"], reported = errors[0] - reported, errors[0]
            out["pos"] = pos
            yield out


def as_is(batch: dict) -> dict:
    """The DataLoader's collate for streams that yield whole batches."""
    return batch
