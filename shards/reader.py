"""Read shards tolerantly: a truncated or unreadable tar is reported, never raised past the caller."""

from __future__ import annotations

import json
import math
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from manifests.io import read_table, url_to_fs
from manifests.schema import INDEX_FILE, INDEX_SCHEMA, REJECTS_FILE, REJECTS_SCHEMA


class ShardPathError(FileNotFoundError):
    """The path names no shard (no such file or folder, or a folder without ``*.tar``)."""


def _uri(fs, path: str) -> str:
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if proto in ("file", "local") else f"{proto}://{path}"


def list_shards(path: str) -> list[str]:
    """Shard URLs under ``path``: a folder (its ``*.tar``), one tar, or a glob."""
    fs, p = url_to_fs(path)
    if any(c in p for c in "*?["):
        found = sorted(fs.glob(p))
    elif fs.isdir(p):
        found = sorted(x for x in fs.ls(p, detail=False) if x.endswith(".tar"))
    elif fs.exists(p):
        found = [p]
    else:
        raise ShardPathError(f"{path}: no such file or folder")
    found = [x for x in found if not posixpath.basename(x).startswith(".")]
    if not found:
        raise ShardPathError(f"{path}: no .tar shards found")
    return [_uri(fs, x) for x in found]


def shard_dir(path: str) -> str | None:
    """The folder that holds ``_index.parquet`` for ``path`` (the folder itself or a tar's parent)."""
    fs, p = url_to_fs(path)
    if any(c in p for c in "*?[") or not fs.isdir(p):
        p = posixpath.dirname(p)
    return _uri(fs, p)


def load_index(path: str) -> pa.Table | None:
    """The ``_index.parquet`` beside the shards, if any."""
    d = shard_dir(path)
    fs, p = url_to_fs(d)
    f = posixpath.join(p, INDEX_FILE)
    return read_table(_uri(fs, f), INDEX_SCHEMA) if fs.exists(f) else None


def load_rejects(path: str) -> pa.Table | None:
    """The ``_rejects.parquet`` beside the shards, if any."""
    d = shard_dir(path)
    fs, p = url_to_fs(d)
    f = posixpath.join(p, REJECTS_FILE)
    return read_table(_uri(fs, f), REJECTS_SCHEMA) if fs.exists(f) else None


def split_name(name: str) -> tuple[str, str]:
    """Tar member name -> (key, extension), split at the first dot of the base name as WebDataset does."""
    d, base = posixpath.split(name)
    key, _, ext = base.partition(".")
    return posixpath.join(d, key) if d else key, ext


@dataclass
class ShardScan:
    """What one pass over a tar found."""

    url: str
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> ext -> bytes | size
    bytes: int = 0
    error: str | None = None
    duplicate_members: list[str] = field(default_factory=list)  # names stored more than once (later ones win)

    @property
    def ok(self) -> bool:
        return self.error is None


def iter_members(url: str, load: bool) -> Iterator[tuple[str, bytes | int]]:
    """(member name, data or size) for each file in a tar; raises on a broken tar.

    Python's tarfile stops quietly at a damaged header after the first member, as if the archive ended there;
    so once its members are read, whatever follows must be the end-of-archive zeros, or the tar is reported
    broken at that byte (the samples after it would otherwise vanish unnoticed).
    """
    fs, p = url_to_fs(url)
    with fs.open(p, "rb") as f:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                if load:
                    yield m.name, tar.extractfile(m).read()
                else:
                    yield m.name, m.size
            end = tar.offset
        f.seek(end)
        while block := f.read(1 << 16):
            if block.strip(b"\0"):
                raise tarfile.ReadError(
                    f"unreadable data at byte {end} after the last readable member: a damaged header, the "
                    "members after it are lost"
                )


def scan_shard(url: str, load: bool = False) -> ShardScan:
    """Group a tar's members into samples; a read error is kept in ``error`` with what came before it."""
    scan = ShardScan(url)
    fs, p = url_to_fs(url)
    try:
        scan.bytes = int(fs.size(p) or 0)
        for name, data in iter_members(url, load):
            key, ext = split_name(name)
            if ext in scan.samples.get(key, {}):
                scan.duplicate_members.append(name)
            scan.samples.setdefault(key, {})[ext] = data
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        scan.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return scan


def find_sample(path: str, key: str) -> tuple[str, dict[str, bytes]] | None:
    """(shard url, members) of ``key``: through the index when there is one, else by scanning."""
    index = load_index(path)
    shards = list_shards(path)
    if index is not None:
        hits = index.filter(pc.equal(index.column("key"), key)).column("shard").to_pylist()
        by_name = {posixpath.basename(s): s for s in shards}
        shards = [by_name[h] for h in hits if h in by_name] or shards
    for url in shards:
        scan = scan_shard(url, load=True)
        if key in scan.samples:
            return url, scan.samples[key]
    return None


def sample_meta(members: dict[str, Any]) -> dict[str, Any]:
    """The parsed ``.json`` of a loaded sample ({} when absent or not JSON)."""
    raw = members.get("json")
    if not isinstance(raw, (bytes, bytearray)):
        return {}
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
        return {}
    return meta if isinstance(meta, dict) else {}  # a list or a number carries no fields


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (not a bool, not a numeric string): what a field must be to be
    drawn or summed as it is."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any) -> float | None:
    """A finite number from a ``.json`` field, else None (a sample's metadata may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def cut_count(meta: dict[str, Any]) -> int | None:
    """How many shot cuts a sample's ``.json`` lists (None when it was curated without the signals)."""
    cuts = meta.get("cuts")
    return len(cuts) if isinstance(cuts, list) else None
