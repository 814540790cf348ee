"""``vidrd curate dedup --shards DIR [DIR ...]``: duplicates across everything curated, on Ray.

1. **Hash** (one Ray task per shard): each sample's keyframes (``keyframes`` frames evenly spread) are decoded;
   the exact hash is SHA-256 of their pixels, the perceptual hash a 64-bit DCT hash (pHash) of each keyframe's
   grey image at 32x32, so re-encodes at another size or quality land a few bits apart.
2. **Candidates** by hash prefix, not by one driver holding everything: exact duplicates share their exact hash
   (a Ray Data ``groupby``); for near duplicates each sample is grouped under each 16-bit band of each
   keyframe's hash (``4 x keyframes`` groups per sample) and pairs are compared only inside a group. A pair
   with at most 3 bits changed on some keyframe always shares a band (pigeonhole); farther pairs are found
   when any of their bands survived the re-encode (locality-sensitive hashing: likely, not certain, as
   the distance grows). A near duplicate is within ``threshold`` bits on average over the keyframes. A group
   larger than :data:`MAX_GROUP` (a flat colour, a title card) is compared against its first members only.
3. **Clusters**: the pairs (few: only duplicates) are joined in the driver; each cluster keeps its first
   sample in (set order, key) order and lists the others in their set's ``_dups.parquet``
   (``shards.sidecars``) with the kept one, ``exact`` or ``near`` and the bits apart. Tars are never rewritten.

Memory per worker is one shard's samples (hashing) or one band group (comparing); the band shuffle moves 4 x
``keyframes`` rows of ~100 bytes (key, hashes) per sample, about 16 GB at 10M samples (Ray's object store, or
disk with ``RAY_DATA_ENABLE_DISK_SHUFFLE=1``); the driver holds only the duplicate pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curation.shard_jobs import KEYFRAMES, decode_keyframes, finalized_indexes, sample_rows, shard_items
from shards.sidecars import DUPS, DUPS_SCHEMA, write_sidecar

MAX_GROUP = 2048
BANDS = 4
SAMPLES_PER_PARTITION = 50_000


@dataclass(frozen=True)
class DedupConfig:
    threshold: int = 8  # mean bits apart (of 64) over the keyframes for a near duplicate
    keyframes: int = KEYFRAMES

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 32:
            raise ValueError(f"threshold must be in [0, 32] bits of 64, got {self.threshold}")
        if self.keyframes < 1:
            raise ValueError(f"keyframes must be >= 1, got {self.keyframes}")


def phash(rgb: np.ndarray) -> int:
    """64-bit perceptual hash: the 8x8 lowest DCT frequencies of the 32x32 grey image against their median."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    low = cv2.dct(cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32))[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def bits_apart(a: str, b: str) -> int:
    """Mean Hamming distance between corresponding keyframe hashes (as :func:`hash_sample` writes them), rounded."""
    d = [(x ^ y).bit_count() for x, y in zip(unpack_hashes(a), unpack_hashes(b), strict=True)]
    return round(sum(d) / len(d))


def unpack_hashes(text: str) -> list[int]:
    # Hashes travel as text: Arrow (hence Ray Data) has no portable unsigned 64-bit integers in every version.
    return [int(h, 16) for h in text.split(",")]


def hash_sample(mp4: bytes, frames: int, keyframes: int) -> tuple[str, str]:
    """(exact hash, perceptual hash per keyframe as comma-separated hex) of one sample's video."""
    decoded = decode_keyframes(mp4, frames, keyframes)
    exact = hashlib.sha256(np.ascontiguousarray(decoded).tobytes() + str(decoded.shape).encode()).hexdigest()
    hashes = [f"{phash(f):016x}" for f in decoded]
    return exact, ",".join(hashes + [hashes[-1]] * (keyframes - len(hashes)))  # very short clips: pad


def hash_shard(item: dict[str, Any], keyframes: int) -> list[dict[str, Any]]:
    """One row per sample of a shard: hashes, or the error that kept it from being hashed."""

    def work(m: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        exact, hashes = hash_sample(m["mp4"], int(meta["frames"]), keyframes)
        return {"exact": exact, "hashes": hashes}

    return sample_rows(item, {"exact": "", "hashes": ""}, work)


def band_rows(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The row under each 16-bit band of each keyframe's hash."""
    for k, h in enumerate(unpack_hashes(row["hashes"])):
        for b in range(BANDS):
            yield {**row, "bucket": f"{k}:{b}:{(h >> (16 * b)) & 0xFFFF}"}


def group_pairs(group: list[dict[str, Any]], threshold: int) -> list[dict[str, Any]]:
    """Near pairs inside one band group (capped at :data:`MAX_GROUP` reference members)."""
    group = sorted(group, key=lambda r: (r["order"], r["key"]))
    refs = group[:MAX_GROUP]
    return [
        {"a": b, "b": a}
        for i, a in enumerate(group)
        for b in refs[: min(i, MAX_GROUP)]
        if bits_apart(a["hashes"], b["hashes"]) <= threshold
    ]


def clusters(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Duplicate rows from pairs (``a``, ``b``: set, order, key, exact, hashes): per connected cluster, every member
    but the first in (set order, key), with its distance to that one."""
    parent: dict[tuple[int, str], tuple[int, str]] = {}
    nodes: dict[tuple[int, str], dict[str, Any]] = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ids = []
        for n in (p["a"], p["b"]):
            i = (n["order"], n["key"])
            nodes[i] = n
            parent.setdefault(i, i)
            ids.append(i)
        ra, rb = find(ids[0]), find(ids[1])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is always the cluster's first member
    out = []
    for i, n in sorted(nodes.items()):
        root = nodes[find(i)]
        if root is n:
            continue
        exact = n["exact"] == root["exact"]
        distance = 0 if exact else bits_apart(n["hashes"], root["hashes"])
        out.append({"set": n["set"], "key": n["key"], "duplicate_of": root["key"], "duplicate_of_set": root["set"],
                    "kind": "exact" if exact else "near", "distance": distance})  # fmt: skip
    return out


def dedup(sets: list[str], cfg: DedupConfig | None = None) -> dict[str, Any]:
    """Find duplicates across ``sets`` on the current Ray cluster and write each set's ``_dups.parquet``;
    returns a summary (samples hashed, duplicates by kind, samples that could not be hashed)."""
    import ray

    cfg = cfg or DedupConfig()
    indexes = finalized_indexes(sets, "dedup")
    hashed = ray.data.from_items(shard_items(sets)).flat_map(lambda it: hash_shard(it, cfg.keyframes)).materialize()
    failed = hashed.filter(lambda r: bool(r["error"])).take_all()
    good = hashed.filter(lambda r: not r["error"]).materialize()
    hashed_count = good.count()
    # Shuffle partitions by size: one for a small run (a shuffle's fixed cost is per partition), up to Ray's
    # usual 200 at tens of millions of samples.
    parts = max(1, min(200, hashed_count // SAMPLES_PER_PARTITION))
    exact_pairs = good.groupby("exact", num_partitions=parts).map_groups(_exact_pairs, batch_format="pandas").take_all()
    near_pairs = (
        good.flat_map(band_rows)
        .groupby("bucket", num_partitions=parts)
        .map_groups(lambda g: _near_pairs(g, cfg.threshold), batch_format="pandas")
        .take_all()
    )
    rows = clusters([_unpack(p) for p in exact_pairs + near_pairs])
    settings = {"threshold": str(cfg.threshold), "keyframes": str(cfg.keyframes), "sets": ",".join(sets)}
    for s in sets:
        mine = [r for r in rows if r["set"] == s]
        table = pa.Table.from_pylist([{k: r[k] for k in DUPS_SCHEMA.names} for r in mine], schema=DUPS_SCHEMA)
        write_sidecar(s, DUPS, table, indexes[s], settings)
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("exact", "near")}
    not_hashed = [f"{r['key']}: {r['error']}" for r in failed]
    return {"samples": hashed_count + len(failed), "hashed": hashed_count, "not_hashed": not_hashed,
            "duplicates": kinds, "sets": len(sets)}  # fmt: skip


def _exact_pairs(group):
    import pandas as pd

    g = group.sort_values(["order", "key"])
    first = g.iloc[0]
    out = [{"a": _pack(first), "b": _pack(r)} for _, r in g.iloc[1:].iterrows()]
    return pd.DataFrame(out, columns=["a", "b"])


def _near_pairs(group, threshold: int):
    import pandas as pd

    pairs = [{"a": _pack(p["a"]), "b": _pack(p["b"])} for p in group_pairs(group.to_dict("records"), threshold)]
    return pd.DataFrame(pairs, columns=["a", "b"])


def _pack(r) -> str:
    """A pair member as one string column."""
    return "\t".join([r["set"], str(int(r["order"])), r["key"], r["exact"], r["hashes"]])


def _unpack(p: dict[str, Any]) -> dict[str, Any]:
    def node(s: str) -> dict[str, Any]:
        set_, order, key, exact, hashes = s.split("\t")
        return {"set": set_, "order": int(order), "key": key, "exact": exact, "hashes": hashes}

    return {"a": node(p["a"]), "b": node(p["b"])}
