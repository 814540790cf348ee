"""Lightning data module over WebDataset shard sets (paper A.2), resumable mid-epoch under DDP.

Two ways to draw an epoch (``sampling``):

* ``resampled`` (default, :mod:`training.data`): every rank and worker draws shards with replacement, sets mixed by
  weight, to an epoch length; a resume continues, within the epoch it stopped in, exactly the samples the
  uninterrupted run would still have seen (the DataLoader may interleave its workers' batches differently).
  Resuming with a different number of ranks or workers starts the epoch's streams afresh (a new split cannot
  replay the old one), and says so.
* ``exact`` (:mod:`training.exact_epoch`): every kept sample once per epoch over all ranks; a resume on any
  number of ranks or workers trains on what the epoch has left, nothing repeated, nothing skipped.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from training.data import (
    MAX_SKIPS_IN_A_ROW,
    ClipConfig,
    ShardSet,
    StreamPlan,
    VideoTextStream,
    batches_per_worker,
    collate,
    samples_in,
)
from training.exact_epoch import ExactEpochStream, as_is
from training.latent_cache import LATENTS_INFO, LatentSpec, set_spec

logger = logging.getLogger(__name__)
SAMPLINGS = ("resampled", "exact")


class EpochAwareLoader(DataLoader):
    """A DataLoader that tells its stream the trainer's epoch each time an epoch's iterator is made
    (Lightning's ``set_epoch`` reaches samplers only, and iterable datasets have none)."""

    def __init__(self, *args: Any, epoch_of: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._epoch_of = epoch_of

    def __iter__(self):
        if self._epoch_of is not None:
            self.dataset.set_epoch(self._epoch_of())
        return super().__iter__()


class ShardDataModule(L.LightningDataModule):
    """Training clips from weighted shard sets; validation clips from a fixed stream.

    Args:
        train: shard sets (folder, glob or URL) with their sampling weights.
        val: shard sets for ``validate``/``test`` and validation during ``fit`` (default: ``train``).
        clip: frames, stride and crop size.
        batch_size: clips per rank per step.
        num_workers: DataLoader workers per rank.
        samples_per_epoch: samples in one epoch over all ranks (default: the sets' ``_index.parquet`` counts).
        val_batches: batches per rank in one validation pass.
        shuffle_buffer: samples each worker shuffles among (raw tar members, before decoding).
        open_shards: shards each worker reads side by side, drawing each sample from one of them at random. A
            curated shard holds one partition of a sorted manifest (often one class, one source); reading one
            at a time, a batch would hold a handful of classes. Costs an open file and one pending sample each.
        seed: the stream seed (shards, offsets, crops and caption choice follow from it).
        max_skips_in_a_row: unusable samples (or empty shard reads) in a row after which training stops with an
            error naming the last one, instead of waiting forever for a sample that never comes.
        latents: read the precomputed VAE latents that ``vidrd latents`` added to the sets
            (``training.latent_cache``) instead of decoding and encoding video: every set must have them, made at
            ``clip.size``, and the model refuses them at start when its VAE is not the one that made them.
        sampling: ``resampled`` (shards drawn with replacement, sets mixed by weight, ``samples_per_epoch`` long)
            or ``exact`` (every kept sample once per epoch over all ranks; weights and ``samples_per_epoch`` do
            not apply; each set needs its ``_index.parquet``). Module docstring: what a resume guarantees in each.
    """

    def __init__(
        self,
        train: list[ShardSet],
        val: list[ShardSet] | None = None,
        clip: ClipConfig | None = None,
        batch_size: int = 1,
        num_workers: int = 2,
        samples_per_epoch: int | None = None,
        val_batches: int = 4,
        shuffle_buffer: int = 64,
        open_shards: int = 8,
        seed: int = 0,
        max_skips_in_a_row: int = MAX_SKIPS_IN_A_ROW,
        latents: bool = False,
        sampling: str = "resampled",
    ):
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.sampling = sampling
        if max_skips_in_a_row < 1:
            raise ValueError(f"max_skips_in_a_row must be >= 1, got {max_skips_in_a_row}")
        self.max_skips_in_a_row = max_skips_in_a_row
        if not train:
            raise ValueError("train: give at least one shard set")
        if batch_size < 1 or num_workers < 0 or val_batches < 1 or shuffle_buffer < 1 or open_shards < 1:
            raise ValueError("batch_size, val_batches, shuffle_buffer and open_shards must be >= 1; num_workers >= 0")
        if any(s.weight <= 0 for s in train):
            raise ValueError("train: every shard set needs a positive weight")
        for s in [*train, *(val or [])]:
            s.check()  # a filter that names an unknown column or does not parse: an error now, naming it
        self.train_sets = train
        self.val_sets = val or train
        self.clip = clip or ClipConfig()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.samples_per_epoch = samples_per_epoch
        self.val_batches = val_batches
        self.shuffle_buffer = shuffle_buffer
        self.open_shards = open_shards
        self.seed = seed
        self.latents = latents
        self.latent_specs = self._check_latents() if latents else []
        # worker id -> (draws, done) of the last batch trained on, for the epoch in `_epoch`
        self._positions: dict[int, tuple[int, int]] = {}
        self._epoch = 0
        self._resume: dict[str, Any] | None = None
        self._consumed: set[int] = set()  # exact epochs: positions trained on this epoch (this rank)
        self.skipped = 0

    def _check_latents(self) -> list[LatentSpec]:
        specs = []
        for path in dict.fromkeys(s.path for s in [*self.train_sets, *self.val_sets]):  # val is often train
            spec = set_spec(path)
            if spec is None:
                raise ValueError(
                    f"data.latents: {path} has no precomputed latents ({LATENTS_INFO}); make a set with them: "
                    f"vidrd latents --pretrained CKPT --shards {path} --out DIR --size {self.clip.size}"
                )
            if spec.size != self.clip.size:
                raise ValueError(
                    f"data.latents: {path} was made at size {spec.size}, data.clip.size is {self.clip.size}"
                )
            specs.append(spec)
        return specs

    # -- layout --------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _batches_per_worker(self) -> int:
        _, world = self._world()
        total = self.samples_per_epoch if self.samples_per_epoch is not None else samples_in(self.train_sets)
        if total < 1:
            raise ValueError("no samples: the shard sets have no _index.parquet; set data.samples_per_epoch")
        return batches_per_worker(total, world, self.num_workers, self.batch_size)

    def _loader(self, plan: StreamPlan, epoch_of: Any = None) -> DataLoader:
        return EpochAwareLoader(
            VideoTextStream(plan),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            epoch_of=epoch_of,
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        if self.sampling == "exact":
            plan = StreamPlan(
                sets=self.train_sets, clip=self.clip, batch_size=self.batch_size, shuffle_buffer=self.shuffle_buffer,
                seed=self.seed, rank=rank, world=world, max_skips_in_a_row=self.max_skips_in_a_row,
                latents=self.latents,
            )  # fmt: skip
            stream = ExactEpochStream(plan)
            # The order now: a set without an index or with missing shards is an error before any worker starts.
            stream.set_epoch(self.trainer.current_epoch if self.trainer is not None else 0)
            return EpochAwareLoader(
                stream, batch_size=None, num_workers=self.num_workers, collate_fn=as_is,
                pin_memory=torch.cuda.is_available(), persistent_workers=False,
                epoch_of=lambda: self._start_exact_epoch(plan),
            )  # fmt: skip
        per_worker = self._batches_per_worker()
        plan = StreamPlan(
            sets=self.train_sets, clip=self.clip, batch_size=self.batch_size, batches_per_worker=per_worker,
            shuffle_buffer=self.shuffle_buffer, open_shards=self.open_shards, seed=self.seed, rank=rank,
            max_skips_in_a_row=self.max_skips_in_a_row, latents=self.latents,
        )  # fmt: skip
        return self._loader(plan, epoch_of=lambda: self._start_epoch(plan))

    def _start_epoch(self, plan: StreamPlan) -> int:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        r = self._resume
        rank, world = self._world()
        if r is not None and r["epoch"] == epoch and r["world"] == world and r["workers"] == self.num_workers:
            plan.resume = dict(r["positions"].get(rank, {}))
        else:
            if r is not None and r["epoch"] == epoch:
                logger.warning(
                    "resuming on %d rank(s) x %d worker(s), saved on %d x %d: epoch %d starts its streams afresh "
                    "(data.sampling exact resumes on any split)", world, self.num_workers, r["world"], r["workers"],
                    epoch,
                )  # fmt: skip
            plan.resume = {}
        self._resume = None  # a resume position applies to the first epoch iterated after loading only
        self._epoch, self._positions = epoch, dict(plan.resume)
        return epoch

    def _start_exact_epoch(self, plan: StreamPlan) -> int:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        r = self._resume
        same_epoch = r is not None and r.get("sampling") == "exact" and r["epoch"] == epoch
        done = set(unpack_positions(r)) if same_epoch else set()
        self._resume = None
        plan.consumed = frozenset(done)
        self._epoch, self._consumed = epoch, set(done)
        return epoch

    def _eval_loader(self) -> DataLoader:
        rank, _ = self._world()
        per_worker = max(1, -(-self.val_batches // max(1, self.num_workers)))
        plan = StreamPlan(
            sets=self.val_sets, clip=self.clip, batch_size=self.batch_size, batches_per_worker=per_worker,
            shuffle_buffer=min(self.shuffle_buffer, 8), open_shards=self.open_shards, seed=self.seed + 1_000_003,
            rank=rank,
            max_skips_in_a_row=self.max_skips_in_a_row, latents=self.latents,
        )  # fmt: skip
        return self._loader(plan)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    # -- position tracking (what `--ckpt_path` resumes from) -----------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        t = self.trainer
        if t is not None and t.training and isinstance(batch, dict) and "position" in batch:
            if "pos" in batch:  # an exact epoch: the positions trained on (-1: a repeat)
                self._consumed.update(int(p) for p in batch["pos"] if p >= 0)
            else:
                self._positions[int(batch["worker"])] = tuple(int(x) for x in batch["position"])
            self.skipped += int(batch["skipped"])
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Per-rank stream positions, gathered so rank 0's checkpoint holds every rank's."""
        _rank, world = self._world()
        mine = {"epoch": self._epoch, "positions": self._positions, "skipped": self.skipped,
                "consumed": sorted(self._consumed)}  # fmt: skip
        gathered = [mine]
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * world
            torch.distributed.all_gather_object(gathered, mine)
        return {
            "epoch": self._epoch,
            "world": world,
            "workers": self.num_workers,
            "positions": {r: g["positions"] for r, g in enumerate(gathered)},
            "skipped": {r: g["skipped"] for r, g in enumerate(gathered)},
            "sampling": self.sampling,
            **pack_positions(sorted({p for g in gathered for p in g["consumed"]})),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = state
        rank, world = self._world()
        self.skipped = int(state.get("skipped", {}).get(rank, 0)) if state.get("world") == world else 0


def pack_positions(positions: list[int]) -> dict[str, Any]:
    """Positions of an exact epoch as a bitmap (a bit per sample of the epoch up to the last one trained on)."""
    bits = np.zeros(positions[-1] + 1 if positions else 0, dtype=bool)
    bits[positions] = True
    # A tensor, not bytes: Lightning reads checkpoints with torch.load(weights_only=True).
    return {"consumed_bits": torch.from_numpy(np.packbits(bits)), "consumed_count": len(bits)}


def unpack_positions(state: dict[str, Any]) -> list[int]:
    """The positions :func:`pack_positions` stored in ``state`` (none when it holds none)."""
    n = int(state.get("consumed_count", 0))
    if not n:
        return []
    bits = np.unpackbits(torch.as_tensor(state["consumed_bits"], dtype=torch.uint8).numpy(), count=n).astype(bool)
    return np.flatnonzero(bits).tolist()
