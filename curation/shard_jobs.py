"""What the jobs over finished shard sets (``vidrd curate dedup``, ``vidrd curate scores``) share: the sets'
indexes, one Ray work item per shard, a row per sample with its error instead of a crash, and the keyframes
a sample is judged by."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from manifests.io import url_to_fs
from media.video import decode_frames
from shards.reader import list_shards, load_index, sample_meta, scan_shard

# Frames spread evenly over a sample that the shard jobs look at (dedup hashes them, scores embeds them); not the
# trainer's clip (shards.clips.TRAIN_CLIP_FRAMES: 8 frames every 4).
SPREAD_FRAMES = 4
# The ``frames`` of a sample that could not be read: an empty array of the keyframes' rank, not None, so a Ray
# block of only such rows still concatenates with others into one (variable-shaped) tensor column.
NO_FRAMES = np.zeros((0, 1, 1, 3), np.uint8)


def _set_identity(path: str) -> tuple[str, str]:
    """What makes two spellings of a set the same set: the resolved local folder, or the URL without a
    trailing slash."""
    fs, p = url_to_fs(path)
    if isinstance(fs, LocalFileSystem):
        return "file", os.path.realpath(p)
    return str(fs.protocol), p.rstrip("/")


def finalized_indexes(sets: list[str], job: str) -> dict[str, pa.Table]:
    """Each set's ``_index.parquet``; FileNotFoundError naming a set that has none, ValueError for a set named
    twice (``DIR`` and ``DIR/``: every sample would be its own duplicate)."""
    seen: dict[tuple[str, str], str] = {}
    for s in sets:
        other = seen.setdefault(_set_identity(s), s)
        if other is not s:
            raise ValueError(f"{other!r} and {s!r} are the same shard set: name each set once")
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


def indexed_shard_items(
    sets: list[str], indexes: dict[str, pa.Table], blank: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(:func:`shard_items` with the keys each set's index lists in that shard, rows for what the index lists but
    the set lost). A sample the index does not list is no sample of the set: it is reported, never judged; each
    sample of a shard the index names but the set no longer holds is ``blank`` with its error, so the job's
    counts still add up to the index. Each set is listed once."""
    by_shard = {s: _keys_by_shard(indexes[s]) for s in sets}
    items = shard_items(sets)
    present: dict[str, set[str]] = {s: set() for s in sets}
    for item in items:
        name = posixpath.basename(item["url"])
        present[item["set"]].add(name)
        item["keys"] = by_shard[item["set"]].get(name, [])
    missing = []
    for o, s in enumerate(sets):
        for shard, keys in by_shard[s].items():
            if shard not in present[s]:
                err = f"its shard {shard} is listed in _index.parquet but missing from the set"
                missing += [{"set": s, "order": o, **blank, "key": k, "error": err} for k in keys]
    return items, missing


def _keys_by_shard(index: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, shard in zip(index.column("key").to_pylist(), index.column("shard").to_pylist(), strict=True):
        out.setdefault(shard, []).append(key)
    return out


def sample_rows(
    item: dict[str, Any], blank: dict[str, Any], work: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """``blank`` updated by ``work(members, meta)`` for each sample of the item's shard, with ``error`` set
    instead when it raises. With the item's ``keys`` (the index's), every listed key gets a row (an error one
    when the tar lacks it or is damaged there) and a sample the index does not list gets an error row; without
    them, a damaged tar adds one row for the shard (its readable samples still count)."""
    base = {"set": item["set"], "order": item["order"], **blank, "error": ""}
    scan = scan_shard(item["url"], load=True)
    listed = set(item["keys"]) if item.get("keys") is not None else None
    damaged = f"shard unreadable: {scan.error}" if scan.error else ""
    rows = []
    if damaged and listed is None:
        rows.append({**base, "key": posixpath.basename(item["url"]), "error": damaged})
    for key, m in scan.samples.items():
        row = {**base, "key": key}
        if listed is not None and key not in listed:
            row["error"] = "in the tar but not in _index.parquet: not a sample of the set (curate it again)"
        else:
            try:
                row.update(work(m, sample_meta(m)))
            except Exception as e:  # an unreadable sample is reported, never the job's end
                row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
    if listed is not None:
        for key in sorted(listed - scan.samples.keys()):
            rows.append({**base, "key": key, "error": damaged or "listed in _index.parquet but not in its shard"})
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
