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
3. **Semantic duplicates**, when a CLIP is configured (``--clip``, any spec ``curate scores`` takes): a model actor
   pool embeds each sample (its keyframes' mean CLIP embedding, normalised; the scores job's actor shape) and
   hashes the embedding to 256 bits by random hyperplanes (SimHash: bits differ with probability angle / pi).
   The same band machinery groups samples under each 16-bit band; pairs whose signatures are close enough for
   ``similarity`` (with a margin for the estimate's spread) are candidates, and only the candidates' embeddings
   are brought together to keep pairs with cosine >= ``similarity``: ``semantic`` duplicates (distance: 1000 x
   (1 - cosine)). Recall at cosine 0.95 is about 96% (a pair shares one of 16 bands), near 100% above 0.98.
4. **Clusters**: the pairs (few: only duplicates) are joined in the driver; each cluster keeps its first
   sample in (set order, key) order and lists the others in their set's ``_dups.parquet``
   (``shards.sidecars``) with the kept one, ``exact`` or ``near`` and the bits apart. Tars are never rewritten.

Memory per worker is one shard's samples (hashing) or one band group (comparing); the band shuffle moves 4 x
``keyframes`` rows of ~100 bytes (key, hashes) per sample, about 16 GB at 10M samples (Ray's object store, or
disk with ``RAY_DATA_ENABLE_DISK_SHUFFLE=1``), and with a CLIP 16 more rows of ~170 bytes per sample (27 GB at
10M; the embeddings themselves, 2 KB per sample, stay in the hashed dataset and never enter a shuffle); the
driver holds only the duplicate pairs and the candidates' embeddings.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curation.shard_jobs import (
    NO_FRAMES,
    SPREAD_FRAMES,
    decode_keyframes,
    finalized_indexes,
    indexed_shard_items,
    resize_short,
    sample_rows,
)
from shards.sidecars import DUPS, DUPS_SCHEMA, write_sidecar

MAX_GROUP = 2048
BANDS = 4
SAMPLES_PER_PARTITION = 50_000
SIM_BITS = 256  # SimHash bits of a CLIP embedding
SIM_BANDS = SIM_BITS // 16
SIM_SEED = 22  # the hyperplanes: the same in every actor and every run, so signatures compare


@dataclass(frozen=True)
class DedupConfig:
    threshold: int = 8  # mean bits apart (of 64) over the keyframes for a near duplicate
    keyframes: int = SPREAD_FRAMES
    clip: str | None = None  # a CLIP spec (as `curate scores --clip`): also find semantic duplicates
    similarity: float = 0.95  # cosine of the mean keyframe embeddings for a semantic duplicate
    device: str = "auto"
    batch_size: int = 64
    size: int = 224  # keyframes' short side before CLIP's own preprocessing

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 32:
            raise ValueError(f"threshold must be in [0, 32] bits of 64, got {self.threshold}")
        if self.keyframes < 1:
            raise ValueError(f"keyframes must be >= 1, got {self.keyframes}")
        if not 0.5 <= self.similarity <= 1.0:
            raise ValueError(f"similarity must be a cosine in [0.5, 1], got {self.similarity}")


def simhash(embeddings: np.ndarray, seed: int = SIM_SEED, bits: int = SIM_BITS) -> list[str]:
    """Random-hyperplane signatures (hex) of ``[N, D]`` embeddings: two vectors at angle a differ in each bit
    with probability a / pi."""
    planes = np.random.default_rng([seed, embeddings.shape[1]]).standard_normal((embeddings.shape[1], bits))
    signs = (np.asarray(embeddings, np.float64) @ planes) > 0
    return [np.packbits(row).tobytes().hex() for row in signs]


def max_signature_bits(similarity: float, bits: int = SIM_BITS) -> int:
    """Signature bits two embeddings at cosine ``similarity`` differ in, plus 3 standard deviations: pairs
    farther apart are not candidates (a pair at the threshold is kept with probability > 99.8%)."""
    p = math.acos(min(1.0, similarity)) / math.pi
    return math.ceil(bits * p + 3 * math.sqrt(bits * p * (1 - p)))


def signature_bits(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


class EmbedActor:
    """CLIP on one device: each sample's mean keyframe embedding and its signature (frames dropped)."""

    def __init__(self, clip: str, device: str, dtype: str, batch_size: int):
        from curation.stages.long_videos import load_clip

        self.clip = load_clip(clip, device, dtype, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from curation.scores import mean_embeddings

        n = len(batch["key"])
        ok = [i for i in range(n) if not batch["error"][i]]
        sig = np.array([""] * n, dtype=object)
        emb = np.zeros((n, 1), np.float32)
        if ok:
            with torch.no_grad():
                mean = mean_embeddings(self.clip, [batch["frames"][i] for i in ok]).float().cpu().numpy()
            emb = np.zeros((n, mean.shape[1]), np.float32)
            emb[ok] = mean
            sig[ok] = simhash(mean)
        out = {k: v for k, v in batch.items() if k != "frames"}
        return {**out, "embedding": emb, "simhash": sig}


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
    return hash_keyframes(decode_keyframes(mp4, frames, keyframes), keyframes)


def hash_keyframes(decoded: np.ndarray, keyframes: int) -> tuple[str, str]:
    """:func:`hash_sample` of decoded keyframes ``[K, H, W, 3]``."""
    exact = hashlib.sha256(np.ascontiguousarray(decoded).tobytes() + str(decoded.shape).encode()).hexdigest()
    hashes = [f"{phash(f):016x}" for f in decoded]
    return exact, ",".join(hashes + [hashes[-1]] * (keyframes - len(hashes)))  # very short clips: pad


def hash_shard(item: dict[str, Any], keyframes: int, size: int | None = None) -> list[dict[str, Any]]:
    """One row per sample of a shard: hashes (and, with ``size``, the keyframes at that short side for CLIP), or
    the error that kept it from being hashed."""

    def work(m: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        decoded = decode_keyframes(m["mp4"], int(meta["frames"]), keyframes)
        exact, hashes = hash_keyframes(decoded, keyframes)
        return {"exact": exact, "hashes": hashes} | ({"frames": resize_short(decoded, size)} if size else {})

    return sample_rows(item, {"exact": "", "hashes": ""} | ({"frames": NO_FRAMES} if size else {}), work)


def band_rows(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The row under each 16-bit band of each keyframe's hash."""
    for k, h in enumerate(unpack_hashes(row["hashes"])):
        for b in range(BANDS):
            yield {**row, "bucket": f"{k}:{b}:{(h >> (16 * b)) & 0xFFFF}"}


def signature_band_rows(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The row (without its embedding) under each 16-bit band of its embedding's signature."""
    slim = {k: row[k] for k in ("set", "order", "key", "exact", "hashes", "simhash")}
    for b in range(SIM_BANDS):
        yield {**slim, "bucket": f"{b}:{row['simhash'][4 * b : 4 * b + 4]}"}


def signature_pairs(group: list[dict[str, Any]], max_bits: int) -> list[dict[str, Any]]:
    """Candidate pairs inside one signature band group."""
    return pairs_within(group, lambda a, b: signature_bits(a["simhash"], b["simhash"]) <= max_bits)


def semantic_pairs(candidates: list[dict[str, Any]], embeddings: dict[tuple[int, str], np.ndarray],
                   similarity: float) -> list[dict[str, Any]]:  # fmt: skip
    """The candidate pairs whose embeddings' cosine is >= ``similarity``, as ``semantic`` pairs."""
    out, seen = [], set()
    for p in candidates:
        ia, ib = (p["a"]["order"], p["a"]["key"]), (p["b"]["order"], p["b"]["key"])
        if (ia, ib) in seen:  # the same pair from several bands
            continue
        seen.add((ia, ib))
        cos = float(np.dot(embeddings[ia], embeddings[ib]))
        if cos >= similarity:
            out.append({**p, "kind": "semantic", "distance": round(1000 * (1 - cos))})
    return out


def group_pairs(group: list[dict[str, Any]], threshold: int) -> list[dict[str, Any]]:
    """Near pairs inside one band group."""
    return pairs_within(group, lambda a, b: bits_apart(a["hashes"], b["hashes"]) <= threshold)


def pairs_within(group: list[dict[str, Any]], close: Callable[[dict, dict], bool]) -> list[dict[str, Any]]:
    """Pairs (earlier member as ``a``) of one bucket for which ``close`` holds; each member is compared with the
    first :data:`MAX_GROUP` members before it in (set order, key) order."""
    group = sorted(group, key=lambda r: (r["order"], r["key"]))
    refs = group[:MAX_GROUP]
    return [{"a": b, "b": a} for i, a in enumerate(group) for b in refs[: min(i, MAX_GROUP)] if close(a, b)]


def clusters(pairs: list[dict[str, Any]], threshold: int = 32) -> list[dict[str, Any]]:
    """Duplicate rows from pairs (``a``, ``b``: set, order, key, exact, hashes; ``kind`` ``semantic`` with its
    ``distance`` for pairs found by embedding): per connected cluster, every member but the first in (set order,
    key), with its distance to that one: ``exact``; ``near`` within ``threshold`` perceptual-hash bits of it (or
    joined only by perceptual pairs); else ``semantic`` with the closest of its embedding pairs."""
    parent: dict[tuple[int, str], tuple[int, str]] = {}
    nodes: dict[tuple[int, str], dict[str, Any]] = {}
    semantic: dict[tuple[int, str], int] = {}  # node -> its smallest semantic distance

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
        if p.get("kind") == "semantic":
            for i in ids:
                semantic[i] = min(semantic.get(i, p["distance"]), p["distance"])
        ra, rb = find(ids[0]), find(ids[1])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is always the cluster's first member
    out = []
    for i, n in sorted(nodes.items()):
        root = nodes[find(i)]
        if root is n:
            continue
        if n["exact"] == root["exact"]:
            kind, distance = "exact", 0
        else:
            kind, distance = "near", bits_apart(n["hashes"], root["hashes"])
            if distance > threshold and i in semantic:
                kind, distance = "semantic", semantic[i]
        out.append({"set": n["set"], "key": n["key"], "duplicate_of": root["key"], "duplicate_of_set": root["set"],
                    "kind": kind, "distance": distance})  # fmt: skip
    return out


def dedup(sets: list[str], cfg: DedupConfig | None = None) -> dict[str, Any]:
    """Find duplicates across ``sets`` on the current Ray cluster and write each set's ``_dups.parquet``;
    returns a summary (samples hashed, duplicates by kind, samples that could not be hashed)."""
    import ray

    cfg = cfg or DedupConfig()
    indexes = finalized_indexes(sets, "dedup")
    if cfg.clip:
        from curation.scores import check_clip_spec

        check_clip_spec(cfg.clip)  # a wrong path is an error now, not a crash in every actor
    size = cfg.size if cfg.clip else None
    items, missing = indexed_shard_items(sets, indexes, {})
    hashed = ray.data.from_items(items).flat_map(lambda it: hash_shard(it, cfg.keyframes, size))
    if cfg.clip:
        hashed = _embedded(hashed, cfg)
    hashed = hashed.materialize()
    failed = hashed.filter(lambda r: bool(r["error"])).select_columns(["key", "error"]).take_all()
    failed += missing
    good = hashed.filter(lambda r: not r["error"]).materialize()
    hashed_count = good.count()
    # Shuffle partitions by size: one for a small run (a shuffle's fixed cost is per partition), up to Ray's
    # usual 200 at tens of millions of samples.
    parts = max(1, min(200, hashed_count // SAMPLES_PER_PARTITION))
    slim = good.select_columns(["set", "order", "key", "exact", "hashes"])
    exact_pairs = slim.groupby("exact", num_partitions=parts).map_groups(_exact_pairs, batch_format="pandas").take_all()
    near_pairs = (
        slim.flat_map(band_rows)
        .groupby("bucket", num_partitions=parts)
        .map_groups(lambda g: _near_pairs(g, cfg.threshold), batch_format="pandas")
        .take_all()
    )
    pairs = [_unpack(p) for p in exact_pairs + near_pairs]
    if cfg.clip:
        pairs += _semantic(good, cfg, parts)
    rows = clusters(pairs, cfg.threshold)
    settings = {"threshold": str(cfg.threshold), "keyframes": str(cfg.keyframes), "sets": ",".join(sets)}
    if cfg.clip:
        settings |= {"clip": cfg.clip, "similarity": str(cfg.similarity)}
    for s in sets:
        mine = [r for r in rows if r["set"] == s]
        table = pa.Table.from_pylist([{k: r[k] for k in DUPS_SCHEMA.names} for r in mine], schema=DUPS_SCHEMA)
        write_sidecar(s, DUPS, table, indexes[s], settings)
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("exact", "near", "semantic")}
    not_hashed = [f"{r['key']}: {r['error']}" for r in failed]
    return {"samples": hashed_count + len(failed), "hashed": hashed_count, "not_hashed": not_hashed,
            "duplicates": kinds, "sets": len(sets)}  # fmt: skip


def _embedded(hashed, cfg: DedupConfig):
    """``hashed`` through a pool of :class:`EmbedActor` (one per GPU, else one on the CPU)."""
    import ray

    from curation.model_pipeline import model_resources
    from curation.partition import RunnerConfig

    per_actor, actors = model_resources(RunnerConfig())
    return hashed.map_batches(
        EmbedActor,
        fn_constructor_kwargs=dict(clip=cfg.clip, device=cfg.device, dtype="float16", batch_size=cfg.batch_size),
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=per_actor,
    )


def _semantic(good, cfg: DedupConfig, parts: int) -> list[dict[str, Any]]:
    """Semantic pairs: candidates by signature band, then the exact cosine of the candidates' embeddings only."""
    max_bits = max_signature_bits(cfg.similarity)
    candidates = (
        good.select_columns(["set", "order", "key", "exact", "hashes", "simhash"])
        .flat_map(signature_band_rows)
        .groupby("bucket", num_partitions=parts)
        .map_groups(lambda g: _signature_pairs(g, max_bits), batch_format="pandas")
        .take_all()
    )
    candidates = [_unpack(p) for p in candidates]
    wanted = {(n["order"], n["key"]) for p in candidates for n in (p["a"], p["b"])}
    if not wanted:
        return []
    rows = (
        good.select_columns(["order", "key", "embedding"])
        .filter(lambda r: (int(r["order"]), r["key"]) in wanted)
        .take_all()
    )
    embeddings = {(int(r["order"]), r["key"]): np.asarray(r["embedding"], np.float32) for r in rows}
    return semantic_pairs(candidates, embeddings, cfg.similarity)


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


def _signature_pairs(group, max_bits: int):
    import pandas as pd

    found = signature_pairs(group.to_dict("records"), max_bits)
    return pd.DataFrame([{"a": _pack(p["a"]), "b": _pack(p["b"])} for p in found], columns=["a", "b"])


def _pack(r) -> str:
    """A pair member as one string column."""
    return "\t".join([r["set"], str(int(r["order"])), r["key"], r["exact"], r["hashes"]])


def _unpack(p: dict[str, Any]) -> dict[str, Any]:
    def node(s: str) -> dict[str, Any]:
        set_, order, key, exact, hashes = s.split("\t")
        return {"set": set_, "order": int(order), "key": key, "exact": exact, "hashes": hashes}

    return {"a": node(p["a"]), "b": node(p["b"])}
