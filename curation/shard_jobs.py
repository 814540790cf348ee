"""What the jobs over finished shard sets (``vidrd curate dedup``, ``vidrd curate scores``) share: the sets'
indexes, one Ray work item per shard, a row per sample with its error instead of a crash, and the keyframes
a sample is judged by."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from media.video import decode_frames
from shards.reader import list_shards, load_index, sample_meta, scan_shard

KEYFRAMES = 4


def finalized_indexes(sets: list[str], job: str) -> dict[str, pa.Table]:
    """Each set's ``_index.parquet``; FileNotFoundError naming a set that has none."""
    indexes = {}
    for s in sets:
        index = load_index(s)
        if index is None:
            raise FileNotFoundError(f"{s}: no _index.parquet ({job} lists its results against a finalized set)")
        indexes[s] = index
    return indexes


def shard_items(sets: list[str]) -> list[dict[str, Any]]:
    """One work item per shard: its set, the set's position (the order duplicates are kept in) and its URL."""
    return [{"set": s, "order": o, "url": u} for o, s in enumerate(sets) for u in list_shards(s)]


def sample_rows(
    item: dict[str, Any], blank: dict[str, Any], work: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """``blank`` updated by ``work(members, meta)`` for each sample of the item's shard, with ``error`` set
    instead when it raises; a damaged tar adds one row for the shard (its readable samples still count)."""
    base = {"set": item["set"], "order": item["order"], **blank, "error": ""}
    scan = scan_shard(item["url"], load=True)
    rows = []
    if scan.error:
        rows.append({**base, "key": posixpath.basename(item["url"]), "error": f"shard unreadable: {scan.error}"})
    for key, m in scan.samples.items():
        row = {**base, "key": key}
        try:
            row.update(work(m, sample_meta(m)))
        except Exception as e:  # an unreadable sample is reported, never the job's end
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
    return rows


def keyframe_indices(frames: int, keyframes: int) -> list[int]:
    """``keyframes`` frame indices evenly inside ``frames`` (neither end: fades and title cards sit there)."""
    return sorted({round(i) for i in np.linspace(0, max(0, frames - 1), keyframes + 2)[1:-1]})


def decode_keyframes(mp4: bytes, frames: int, keyframes: int) -> np.ndarray:
    """The sample's keyframes ``[K, H, W, 3]``; ValueError when fewer decode than its metadata promises."""
    idx = keyframe_indices(frames, keyframes)
    decoded, _ = decode_frames(mp4, idx)
    if len(decoded) != len(idx):
        raise ValueError(f"{len(decoded)} of {len(idx)} keyframes decoded (shorter than its metadata says?)")
    return decoded


def resize_short(frames: np.ndarray, size: int) -> np.ndarray:
    """``[K, H, W, 3]`` frames with their short side at ``size`` (what a CLIP's preprocessing starts from)."""
    import cv2

    h, w = frames.shape[1:3]
    scale = size / min(h, w)
    out = (max(size, round(w * scale)), max(size, round(h * scale)))
    return np.stack([cv2.resize(f, out, interpolation=cv2.INTER_AREA) for f in frames])
