"""WebDataset shard writer that follows the shard contract (DESIGN.md, "Shard contract").

A writer owns one *part* of an output folder: the shards it writes
(``{prefix}-{NNNNNN}.tar``, each written under a temporary name and renamed when complete) and two
part files, ``_parts/{part}.index.parquet`` and ``_parts/{part}.rejects.parquet``, written last.
A part whose two files exist is complete; :func:`finalize` merges all parts into the folder's
``_index.parquet`` and ``_rejects.parquet``. This split is what lets many Ray tasks write one folder
side by side and lets a re-run skip parts that are already complete. Before them a part writes
``_parts/{part}.shards.json`` (each shard's size and SHA-256): a re-run checks a complete part's shards
against it (:func:`damaged_parts`) and redoes a part whose shards were deleted, truncated or altered.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from manifests.io import (
    SchemaError,
    join,
    move_into_place,
    open_new,
    read_table,
    rows_to_table,
    url_to_fs,
    write_atomic,
    write_table,
)
from manifests.keys import check_key
from manifests.schema import INDEX_FILE, INDEX_SCHEMA, PARTS_DIR, REJECTS_FILE, REJECTS_SCHEMA, RejectReason
from shards.reader import cut_count

# A fixed member mtime makes shards byte-identical across re-runs of the same input.
TAR_MTIME = 946684800
REQUIRED_META = ("source", "source_id", "stage", "frames", "fps", "width", "height")


@dataclass
class Sample:
    """One sample: ``<key>.mp4`` (H.264), ``<key>.txt`` (default caption), ``<key>.json`` (metadata).

    ``meta`` must carry :data:`REQUIRED_META`; ``captions`` (all captions) is added when absent.
    ``events`` name things the run summary counts (e.g. a caption fallback); they are not written.
    ``extra``: more members beside those three, by extension (e.g. ``latents.npy``: precomputed VAE latents).
    """

    key: str
    mp4: bytes
    caption: str
    meta: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    extra: dict[str, bytes] = field(default_factory=dict)


class _HashingFile:
    """A write-only file that hashes and counts what passes through it (the shard's checksum at no extra read)."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class DuplicateKeyError(ValueError):
    """Two samples in one output folder share a key."""


def _encode_json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")


class SampleTar:
    """One shard's tar stream in WebDataset's layout, as ``webdataset.TarWriter`` writes it (``KEY.EXT`` members in
    sorted order, read-only, owner ``vidrd``, the fixed :data:`TAR_MTIME`, so equal samples give equal bytes), with
    the standard library's ``tarfile``: importing webdataset imports torch, which would cost every curation worker
    its start-up time and memory for nothing (``tests/test_shard_writer.py`` holds the bytes to webdataset's)."""

    def __init__(self, fileobj: Any):
        self._tar = tarfile.open(fileobj=fileobj, mode="w|")  # noqa: SIM115 (closed by close(), with the shard)

    def write(self, key: str, members: dict[str, bytes]) -> None:
        for ext in sorted(members):
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o444
            info.uname = info.gname = "vidrd"
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


class ShardWriter:
    """Write samples of one part into size-bounded tar shards plus the part's index and rejects."""

    def __init__(
        self,
        out_dir: str,
        prefix: str,
        part: str | None = None,
        first_number: int = 0,
        max_bytes: int = 512 * 1024**2,
        max_samples: int = 2000,
    ):
        check_key(prefix)
        self.out_dir = out_dir.rstrip("/")
        self.fs, self._root = url_to_fs(self.out_dir)
        self.fs.makedirs(self._root, exist_ok=True)
        self.prefix = prefix
        self.part = part or prefix
        check_key(self.part)
        self.number = first_number
        self.max_bytes = max_bytes
        self.max_samples = max_samples
        self.index_rows: list[dict[str, Any]] = []
        self.reject_rows: list[dict[str, Any]] = []
        self.shards: list[str] = []
        self.checksums: dict[str, dict[str, Any]] = {}  # shard -> bytes and SHA-256 as written
        self._keys: set[str] = set()
        self._tar = None  # a SampleTar while a shard is open
        self._file = None
        self._tmp = ""
        self._final = ""
        self._bytes = 0
        self._count = 0
        self._closed = False

    # -- shards ---------------------------------------------------------------------------------------
    def _open_shard(self) -> None:
        name = f"{self.prefix}-{self.number:06d}.tar"
        self.number += 1
        self._final = posixpath.join(self._root, name)
        self._tmp = posixpath.join(self._root, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        self._file = _HashingFile(open_new(self.fs, self._tmp))
        self._tar = SampleTar(self._file)
        self._bytes = 0
        self._count = 0

    def _close_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        move_into_place(self.fs, self._tmp, self._final)  # a link planted at the name is replaced, not followed
        name = posixpath.basename(self._final)
        self.shards.append(name)
        self.checksums[name] = {"bytes": self._file.size, "sha256": self._file.sha.hexdigest()}
        self._tar = self._file = None

    def write(self, sample: Sample) -> None:
        """Append a sample; starts a new shard when the current one would pass its size bound."""
        if self._closed:
            raise RuntimeError("writer is closed")
        key = check_key(sample.key)
        if key in self._keys:
            raise DuplicateKeyError(f"duplicate sample key {key!r} in part {self.part!r}")
        missing = [k for k in REQUIRED_META if k not in sample.meta]
        if missing:
            raise ValueError(f"sample {key!r}: metadata lacks {missing}")
        if not sample.mp4:
            raise ValueError(f"sample {key!r}: empty video bytes")
        clash = sorted(set(sample.extra) & {"mp4", "txt", "json", "__key__"})
        if clash:
            raise ValueError(f"sample {key!r}: extra members {clash} would replace the sample's own")
        meta = dict(sample.meta)
        meta.setdefault("captions", [sample.caption])
        txt = sample.caption.encode("utf-8")
        js = _encode_json(meta)
        size = (
            len(sample.mp4) + len(txt) + len(js) + sum(map(len, sample.extra.values())) + (3 + len(sample.extra)) * 1024
        )
        if self._tar is not None and (
            self._count >= self.max_samples or (self._count and self._bytes + size > self.max_bytes)
        ):
            self._close_shard()
        if self._tar is None:
            self._open_shard()
        self._tar.write(key, {"mp4": sample.mp4, "txt": txt, "json": js, **sample.extra})
        self._bytes += size
        self._count += 1
        self._keys.add(key)
        frames, fps = int(meta["frames"]), float(meta["fps"])
        self.index_rows.append(
            {
                "key": key,
                "shard": posixpath.basename(self._final),
                "source": meta["source"],
                "source_id": str(meta["source_id"]),
                "stage": meta["stage"],
                "frames": frames,
                "fps": fps,
                "duration": frames / fps if fps > 0 else None,
                "width": int(meta["width"]),
                "height": int(meta["height"]),
                "caption_length": len(sample.caption),
                "num_captions": len(meta["captions"]),
                "bytes": len(sample.mp4),
                "cuts": cut_count(meta),
                "motion": meta.get("motion"),
            }
        )

    def reject(
        self, input_id: str, stage: str, reason: RejectReason | str, message: str, source: str = "", uri: str = ""
    ) -> None:
        """Record an input that produced no sample."""
        self.reject_rows.append(
            {
                "input_id": str(input_id),
                "source": source,
                "uri": uri,
                "stage": stage,
                "reason": reason.value if isinstance(reason, RejectReason) else str(reason),
                "message": message,
            }
        )

    def close(self) -> None:
        """Finish the open shard, then write the part's index and rejects (marks the part complete)."""
        if self._closed:
            return
        self._close_shard()
        parts = join(self.out_dir, PARTS_DIR)
        pdir = posixpath.join(self._root, PARTS_DIR)
        self.fs.makedirs(pdir, exist_ok=True)
        record = json.dumps(self.checksums, indent=1, sort_keys=True).encode()
        write_atomic(join(parts, f"{self.part}.shards.json"), lambda f: f.write(record))
        write_table(rows_to_table(self.index_rows, INDEX_SCHEMA), join(parts, f"{self.part}.index.parquet"))
        write_table(rows_to_table(self.reject_rows, REJECTS_SCHEMA), join(parts, f"{self.part}.rejects.parquet"))
        self._closed = True

    def abort(self) -> None:
        """Drop the unfinished shard; the part stays incomplete so a re-run redoes it."""
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self.fs.rm(self._tmp)
            self._tar = self._file = None
        self._closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def complete_parts(out_dir: str) -> set[str]:
    """Names of the parts of ``out_dir`` whose index and rejects files both exist."""
    fs, root = url_to_fs(out_dir)
    pdir = posixpath.join(root, PARTS_DIR)
    if not fs.exists(pdir):
        return set()
    names = [posixpath.basename(p) for p in fs.ls(pdir, detail=False)]
    idx = {n[: -len(".index.parquet")] for n in names if n.endswith(".index.parquet")}
    rej = {n[: -len(".rejects.parquet")] for n in names if n.endswith(".rejects.parquet")}
    return idx & rej


def shard_checksum(fs, path: str) -> str:
    sha = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def shard_problem(fs, path: str, want: dict[str, Any], checksum: bool) -> str | None:
    """What differs between a shard on disk and its record (None: nothing)."""
    if not fs.exists(path):
        return "is missing"
    size = fs.size(path)
    if size != want["bytes"]:
        return f"has {size} bytes, {want['bytes']} were written"
    if checksum and shard_checksum(fs, path) != want["sha256"]:
        return "has other bytes than were written (SHA-256 differs)"
    return None


def damaged_parts(out_dir: str, parts: set[str], checksums: bool = True) -> dict[str, str]:
    """Complete parts whose shards no longer match their ``.shards.json``: part -> what is wrong.

    Every shard the part's index names must be in the record, and every recorded shard must be there with its
    size (and, with ``checksums``, its SHA-256: what finds a flipped byte). A record that is missing, emptied or
    not a record of shards damages its part too: nothing else says which shards the part wrote, so the part is
    redone rather than trusted.
    """
    fs, root = url_to_fs(out_dir)
    damaged: dict[str, str] = {}
    for part in sorted(parts):
        shards = _read_record(fs, posixpath.join(root, PARTS_DIR, f"{part}.shards.json"))
        if isinstance(shards, str):
            damaged[part] = f"{PARTS_DIR}/{part}.shards.json {shards}"
            continue
        try:
            index = read_table(join(out_dir, PARTS_DIR, f"{part}.index.parquet"), INDEX_SCHEMA)
            indexed = set(index.column("shard").to_pylist())
        except (SchemaError, OSError) as e:
            damaged[part] = f"{PARTS_DIR}/{part}.index.parquet is unreadable ({e})"
            continue
        unrecorded = sorted(indexed - shards.keys())
        if unrecorded:
            damaged[part] = f"{unrecorded[0]} holds indexed samples but is not in {PARTS_DIR}/{part}.shards.json"
            continue
        for name, want in sorted(shards.items()):
            problem = shard_problem(fs, posixpath.join(root, name), want, checksums)
            if problem:
                damaged[part] = f"{name} {problem}"
                break
    return damaged


def _read_record(fs, path: str) -> dict[str, dict[str, Any]] | str:
    """A part's shard record, or why it is not one."""
    if not fs.isfile(path):
        return "is missing" if not fs.exists(path) else "is not a file"
    try:
        with fs.open(path, "rb") as f:
            shards = json.loads(f.read())
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or bad UTF-8
        return "is unreadable"
    ok = isinstance(shards, dict) and all(
        isinstance(name, str) and posixpath.basename(name) == name and name.endswith(".tar")
        and isinstance(w, dict) and isinstance(w.get("bytes"), int) and isinstance(w.get("sha256"), str)
        for name, w in shards.items()
    )  # fmt: skip
    return shards if ok else "is not a record of shards ({name: {bytes, sha256}})"


def forget_part(out_dir: str, part: str) -> None:
    """Mark a part incomplete so the next run redoes it: its index, rejects and shard record go (an empty folder
    at the record's name too; anything else there is left for the redo to refuse, named)."""
    fs, root = url_to_fs(out_dir)
    for suffix in (".index.parquet", ".rejects.parquet", ".shards.json"):
        path = posixpath.join(root, PARTS_DIR, f"{part}{suffix}")
        if fs.isdir(path):
            if not fs.ls(path):
                fs.rmdir(path)
        elif fs.exists(path):
            fs.rm(path)


def finalize(out_dir: str) -> tuple[pa.Table, pa.Table]:
    """Merge every complete part into ``_index.parquet`` and ``_rejects.parquet``; returns both tables.

    Raises :class:`DuplicateKeyError` when two parts wrote the same key.
    """
    parts = sorted(complete_parts(out_dir))
    pdir = join(out_dir, PARTS_DIR)
    index = [read_table(join(pdir, f"{p}.index.parquet"), INDEX_SCHEMA) for p in parts]
    rejects = [read_table(join(pdir, f"{p}.rejects.parquet"), REJECTS_SCHEMA) for p in parts]
    index_t = pa.concat_tables(index) if index else INDEX_SCHEMA.empty_table()
    rejects_t = pa.concat_tables(rejects) if rejects else REJECTS_SCHEMA.empty_table()
    keys = index_t.column("key").to_pylist()
    if len(keys) != len(set(keys)):
        seen: set[str] = set()
        dups = sorted({k for k in keys if k in seen or seen.add(k)})
        raise DuplicateKeyError(f"{out_dir}: keys written by more than one part: {dups[:10]}")
    write_table(index_t, join(out_dir, INDEX_FILE))
    write_table(rejects_t, join(out_dir, REJECTS_FILE))
    return index_t, rejects_t
