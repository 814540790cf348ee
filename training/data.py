"""Stream WebDataset shards into training clips (paper A.2): several shard sets mixed by weight,
8 frames every 4 from a random start, shorter-side resize then a random square crop, values in
[-1, 1], one caption drawn at random when a sample has several.

Balance under DDP: every rank and every DataLoader worker draws shards with replacement from a
generator seeded by (seed, epoch, rank, worker) and yields exactly ``batches_per_worker * batch_size``
good samples, so every rank runs the same number of steps per epoch whatever the shard sizes (no
DDP hang on uneven shards), and ranks see different samples. The epoch length comes from
``_index.parquet`` (sample counts), not from scanning tars.

Resuming mid-epoch: every yielded sample carries its worker id and that worker's position (draws
from its shuffle buffer, and good samples yielded). Given the positions a checkpoint recorded, a
worker replays its stream without decoding (tar reads only) up to that point and goes on from there;
each clip's frame offsets and crop come from a generator seeded by its position, so the resumed
epoch yields exactly the samples the uninterrupted one would have (the interleaving of workers in
the DataLoader may differ).

Bad data never stops training: an unreadable or truncated shard, a missing shard, a sample that does
not decode, one with fewer frames than a clip needs, or an empty caption is skipped and counted;
each yielded sample carries ``skipped``, the number skipped since the previous one, so the trainer
can log a running total.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from manifests.schema import INDEX_SCHEMA
from media.video import decode_clip
from shards.clips import TRAIN_CLIP_FRAMES, TRAIN_CLIP_STRIDE
from shards.filters import FilterError, filter_index, parse_where
from shards.reader import list_shards, load_index
from shards.sidecars import DERIVED_COLUMNS, named, with_derived_columns
from training.latent_cache import LATENTS_MEMBER, LatentSpec, load_npy


@dataclass
class ShardSet:
    """A folder (or glob, or URL) of shards, its sampling weight, and optionally a filter over its
    ``_index.parquet`` columns (``where: "frames >= 64 and source != 'tgif'"``, :mod:`shards.filters`): only the
    samples it keeps are trained on, and the epoch length counts only them."""

    path: str
    weight: float = 1.0
    where: str | None = None

    def check(self) -> None:
        """:class:`~shards.filters.FilterError` naming what is wrong with ``where`` (parsed against the index
        schema's columns: no file is read)."""
        if self.where:
            parse_where(self.where, [*INDEX_SCHEMA.names, *DERIVED_COLUMNS])

    def kept(self) -> pa.Table | None:
        """The index rows this set trains on (``None``: the set has no index, so no filter can apply). A filter
        that names ``is_dup``, ``aesthetic`` or ``clip_score`` reads the set's ``_dups.parquet`` / ``_scores.parquet``
        (``vidrd curate dedup`` / ``scores``; refused when stale)."""
        index = load_index(self.path)
        if index is None:
            if self.where:
                raise FilterError(f"{self.path}: where {self.where!r} needs the set's _index.parquet, which is missing")
            return None
        derived = named(self.where)
        if derived:
            index = with_derived_columns(self.path, index, derived)
        return filter_index(index, self.where)


@dataclass
class ClipConfig:
    """How a training clip is cut from a video."""

    frames: int = TRAIN_CLIP_FRAMES
    stride: int = TRAIN_CLIP_STRIDE
    size: int = 256

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")

    @property
    def span(self) -> int:
        """Frames a clip covers: (frames - 1) * stride + 1."""
        return (self.frames - 1) * self.stride + 1


class SkipSample(Exception):
    """This sample cannot become a training clip (the message says why)."""


class UnusableDataError(RuntimeError):
    """Too many samples (or shards) in a row could not be used: the data or the clip settings are wrong."""


# Skips in a row before a stream gives up: a few bad samples are normal, thousands in a row mean nothing will load.
MAX_SKIPS_IN_A_ROW = 1000


def clip_indices(total: int, clip: ClipConfig, rng: np.random.Generator) -> list[int]:
    """``clip.frames`` indices every ``clip.stride`` frames from a random start."""
    if total < clip.span:
        raise SkipSample(f"{total} frames < {clip.span} needed")
    start = int(rng.integers(0, total - clip.span + 1))
    return [start + k * clip.stride for k in range(clip.frames)]


def to_clip(frames: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``[F, H, W, 3]`` uint8 -> ``[3, F, size, size]`` float in [-1, 1]: short side to ``size``, random crop."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
    x = x[:, :, top : top + size, left : left + size]
    return (x / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()


def _captions(meta: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    captions = [c for c in meta.get("captions") or [] if isinstance(c, str) and c.strip()]
    if not captions and raw.get("txt"):
        captions = [raw["txt"].decode("utf-8", "replace")]
    if not captions:
        raise SkipSample("no caption")
    return captions


def make_example(raw: dict[str, Any], clip: ClipConfig, rng: np.random.Generator) -> dict[str, Any]:
    """A WebDataset sample (mp4/json/txt bytes) -> {"video", "caption", "key"}; :class:`SkipSample` if unusable."""
    if "mp4" not in raw or "json" not in raw:
        raise SkipSample("sample lacks .mp4 or .json")
    meta = json.loads(raw["json"])
    captions = _captions(meta, raw)
    idx = clip_indices(int(meta["frames"]), clip, rng)
    frames = decode_clip(raw["mp4"], idx, float(meta["fps"]))
    return {
        "video": to_clip(frames, clip.size, rng),
        "caption": captions[int(rng.integers(len(captions)))],
        "key": raw["__key__"],
    }


def make_latent_example(raw: dict[str, Any], clip: ClipConfig, rng: np.random.Generator) -> dict[str, Any]:
    """A sample with precomputed latents (``training.latent_cache``) -> {"latents" ``[C, F, h, w]``, "caption",
    "key"}: the clip's frames from a random start, a random crop in latent space, drawn from the stored
    posterior (mean + std * noise) as the VAE's ``encode`` would. :class:`SkipSample` if unusable."""
    if LATENTS_MEMBER not in raw or "json" not in raw:
        raise SkipSample(f"sample lacks .{LATENTS_MEMBER} or .json (run `vidrd latents` on this shard set)")
    meta = json.loads(raw["json"])
    captions = _captions(meta, raw)
    spec = LatentSpec.of(meta["latents"])
    if clip.size != spec.size:
        raise SkipSample(f"latents were made at size {spec.size}, data.clip.size is {clip.size}")
    both = load_npy(raw[LATENTS_MEMBER])  # [2, C, F, h, w]
    idx = clip_indices(both.shape[2], clip, rng)
    side = spec.size // spec.factor
    h, w = both.shape[-2:]
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    mean, std = both[:, :, idx, top : top + side, left : left + side].astype(np.float32)
    z = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
    return {
        "latents": torch.from_numpy(z),
        "caption": captions[int(rng.integers(len(captions)))],
        "key": raw["__key__"],
    }


@dataclass
class StreamPlan:
    """Everything a worker needs to produce its share of an epoch."""

    sets: list[ShardSet]
    clip: ClipConfig = field(default_factory=ClipConfig)
    batch_size: int = 1
    batches_per_worker: int = 1
    shuffle_buffer: int = 64
    open_shards: int = 8  # shards each worker reads side by side (see VideoTextStream._raw)
    seed: int = 0
    rank: int = 0
    # worker id -> (buffer draws, samples yielded) already consumed this epoch (resume)
    resume: dict[int, tuple[int, int]] = field(default_factory=dict)
    world: int = 1  # ranks (exact epochs split the epoch among them: training.exact_epoch)
    consumed: frozenset[int] = frozenset()  # exact epochs: positions already trained on this epoch (resume)
    max_skips_in_a_row: int = MAX_SKIPS_IN_A_ROW
    latents: bool = False  # read precomputed latents (training.latent_cache) instead of decoding video


class VideoTextStream(IterableDataset):
    """Infinite resampled shards of several sets, mixed by weight, cut to an exact epoch length."""

    def __init__(self, plan: StreamPlan):
        super().__init__()
        self.plan = plan
        self.urls, self.keys = [], []
        for s in plan.sets:
            urls = list_shards(s.path)
            kept = s.kept() if s.where else None
            if kept is not None:  # only the shards that hold a kept sample, and only those samples
                shards = set(kept.column("shard").to_pylist())
                urls = [u for u in urls if posixpath.basename(u) in shards]
                if not urls:
                    raise UnusableDataError(f"{s.path}: where {s.where!r} keeps no sample")
            self.urls.append(urls)
            self.keys.append(set(kept.column("key").to_pylist()) if kept is not None else None)
        total = sum(s.weight for s in plan.sets)
        self.probs = np.array([s.weight / total for s in plan.sets])
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _raw(
        self, urls: list[str], keys: set[str] | None, rng: np.random.Generator, errors: list[int]
    ) -> Iterator[dict[str, Any]]:
        """Samples of ``open_shards`` randomly resampled shards read side by side, each draw from one of them
        at random. Curated shards hold runs of related samples (one partition of a sorted manifest: one class
        of Kinetics, one prompt template of a synthetic set); read one shard at a time, a worker's whole batch
        would come from one or two such runs, and the gradient would swing from class to class."""
        last: list[str] = []

        def handler(exc: Exception) -> bool:
            errors[0] += 1
            last[:] = [f"{type(exc).__name__}: {exc}"]
            return True  # skip the broken shard or sample and go on

        def shard(url: str) -> Iterator[dict[str, Any]]:
            for sample in wds.tarfile_to_samples(handler=handler)(iter([{"url": url}])):
                if keys is None or sample.get("__key__") in keys:  # `where` drops: not a skip, not an error
                    yield sample

        empty = 0  # shard reads in a row that gave no sample
        lanes: list[tuple[str, Iterator[dict[str, Any]], int]] = []  # (url, samples, yielded so far)
        while True:
            while len(lanes) < self.plan.open_shards:
                url = urls[int(rng.integers(len(urls)))]
                lanes.append((url, shard(url), 0))
            j = int(rng.integers(len(lanes)))
            url, samples, n = lanes[j]
            sample = next(samples, None)
            if sample is not None:
                lanes[j] = (url, samples, n + 1)
                empty = 0
                yield sample
                continue
            del lanes[j]
            empty = 0 if n else empty + 1
            if empty > self.plan.max_skips_in_a_row:
                raise UnusableDataError(
                    f"{empty} shard reads in a row gave no sample (last: {url}: {last[0] if last else 'empty'}); "
                    f"check data.train ({', '.join(s.path for s in self.plan.sets)})"
                )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.plan
        info = get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([p.seed, self.epoch, p.rank, wid])
        errors = [0]
        sources = [self._raw(u, k, rng, errors) for u, k in zip(self.urls, self.keys, strict=True)]
        buffer: list[dict[str, Any]] = []
        want = p.batches_per_worker * p.batch_size
        skip_draws, done = p.resume.get(wid, (0, 0))
        draws = reported = in_a_row = 0
        while done < want:
            raw = next(sources[int(rng.choice(len(sources), p=self.probs))])
            buffer.append(raw)
            if len(buffer) < p.shuffle_buffer:
                continue
            raw = buffer.pop(int(rng.integers(len(buffer))))
            draws += 1
            if draws <= skip_draws:  # replaying up to a checkpoint's position: no decode
                reported = errors[0]
                continue
            ex = usable_example(raw, p, np.random.default_rng([p.seed, self.epoch, p.rank, wid, draws]), in_a_row)
            if ex is None:
                errors[0] += 1
                in_a_row += 1
                continue
            in_a_row = 0
            done += 1
            ex.update(skipped=errors[0] - reported, worker=wid, draws=draws, done=done, epoch=self.epoch)
            reported = errors[0]
            yield ex


def usable_example(
    raw: dict[str, Any], plan: StreamPlan, rng: np.random.Generator, failed_in_a_row: int
) -> dict[str, Any] | None:
    """``raw`` made into a training example (video or latents, as ``plan`` says), or None when it cannot be: anything
    a bad sample raises is a skip, never a crash, unless it is the ``max_skips_in_a_row``-th unusable sample in a
    row (``failed_in_a_row`` before it): then :class:`UnusableDataError` names it."""
    try:
        return (make_latent_example if plan.latents else make_example)(raw, plan.clip, rng)
    except Exception as e:
        if failed_in_a_row + 1 > plan.max_skips_in_a_row:
            raise UnusableDataError(
                f"{failed_in_a_row + 1} samples in a row could not be used (last: {raw.get('__key__')}: "
                f"{type(e).__name__}: {e}); check data.train and data.clip (a clip spans "
                f"{plan.clip.span} frames: frames={plan.clip.frames} x stride={plan.clip.stride})"
            ) from e
        return None


def samples_in(sets: list[ShardSet]) -> int:
    """Samples in all sets that their filters keep, from their ``_index.parquet`` files (0 for a set without one)."""
    n = 0
    for s in sets:
        kept = s.kept()
        n += kept.num_rows if kept is not None else 0
    return n


def batches_per_worker(samples: int, world_size: int, num_workers: int, batch_size: int) -> int:
    """Batches each worker yields so one epoch covers about ``samples`` samples over all ranks."""
    workers = world_size * max(1, num_workers)
    return max(1, math.ceil(samples / (workers * batch_size)))


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack videos (or latents); keep captions and keys as lists; sum the skip counts; keep the worker's position
    after the batch's last sample (what a checkpoint records for resuming)."""
    last = batch[-1]
    data = "latents" if "latents" in last else "video"
    return {
        data: torch.stack([b[data] for b in batch]),
        "caption": [b["caption"] for b in batch],
        "key": [b["key"] for b in batch],
        "skipped": sum(b["skipped"] for b in batch),
        "worker": last["worker"],
        "position": (last["draws"], last["done"]),
        "epoch": last["epoch"],
    }
