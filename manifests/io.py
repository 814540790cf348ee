"""Parquet readers and writers for the contract tables, through fsspec (local paths or URLs)."""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


class SchemaError(ValueError):
    """A table does not match the contract schema it claims to follow."""


def url_to_fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Filesystem and in-filesystem path for a local path or an fsspec URL."""
    fs, p = fsspec.core.url_to_fs(path)
    return fs, p


def join(base: str, *parts: str) -> str:
    """Join path parts keeping a URL scheme intact (``s3://b/x`` + ``y`` -> ``s3://b/x/y``)."""
    return posixpath.join(base.rstrip("/"), *parts)


def _resolved(path: str) -> tuple[str, str]:
    if any(c in path for c in "*?["):  # a glob: the folder it matches in
        path = posixpath.dirname(path)
    fs, p = url_to_fs(path)
    if isinstance(fs, LocalFileSystem):
        return "file", os.path.realpath(p)
    return str(fs.protocol), p.rstrip("/")


def check_output_apart(out: str, **inputs: str | None) -> None:
    """ValueError when the output folder ``out`` is one of the ``inputs`` (by option name) or lies inside one:
    writing there would overwrite what the command reads (``--out`` equal to ``--sd`` rewrites Stable
    Diffusion's own files). Local paths are compared resolved (links, ``..``, a trailing slash)."""
    proto, o = _resolved(out)
    for name, path in inputs.items():
        if not path:
            continue
        iproto, i = _resolved(path)
        if proto == iproto and (o == i or o.startswith(i.rstrip("/") + "/")):
            where = "is" if o == i else "lies inside"
            raise ValueError(f"--out {out} {where} --{name.replace('_', '-')} {path}: give an output folder of its own")


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table from dict rows; missing optional fields become null, unknown fields are an error."""
    rows = list(rows)
    names = set(schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - names
        if extra:
            raise SchemaError(f"row {i} has fields not in the schema: {sorted(extra)}")
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def open_new(fs: fsspec.AbstractFileSystem, path: str) -> IO[bytes]:
    """A new file for writing; on a local disk it must not exist yet (``O_EXCL``), so a link planted at that name
    is refused rather than followed."""
    return open(path, "xb") if isinstance(fs, LocalFileSystem) else fs.open(path, "wb")


def move_into_place(fs: fsspec.AbstractFileSystem, tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path``, replacing whatever is there, never following a link at ``path``: on a local
    disk ``os.replace`` swaps a symlink itself, where fsspec's ``mv`` (``shutil.move``) would write into the
    folder a planted link points to. Object stores have no links."""
    if isinstance(fs, LocalFileSystem):
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(f"{path}: is a folder, not replaced by a file")
        os.replace(tmp, path)
    else:
        fs.mv(tmp, path)


def write_atomic(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` whole or not at all: ``write(f)`` fills a new temporary file beside it, which is then renamed
    over it (:func:`move_into_place`); on failure the temporary file is removed and ``path`` is untouched."""
    fs, p = url_to_fs(path)
    parent = posixpath.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(p)}.{uuid.uuid4().hex}.tmp")
    try:
        with open_new(fs, tmp) as f:
            write(f)
        move_into_place(fs, tmp, p)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def write_table(table: pa.Table, path: str) -> None:
    """Write a Parquet file atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda f: pq.write_table(table, f))


def read_table(path: str, schema: pa.Schema | None = None) -> pa.Table:
    """Read a Parquet file; with ``schema``, check its columns and cast to the contract types."""
    fs, p = url_to_fs(path)
    if not fs.exists(p):
        raise FileNotFoundError(f"{path}: no such file")
    with fs.open(p, "rb") as f:
        try:
            table = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as e:
            raise SchemaError(f"{path}: not a readable Parquet file ({e})") from e
    if schema is None:
        return table
    for f in schema:  # columns added to a contract later: an older file has none, read as nulls
        if f.name not in table.column_names and f.nullable and (f.metadata or {}).get(b"optional"):
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise SchemaError(f"{path}: missing columns {missing}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SchemaError(f"{path}: columns do not match the schema ({e})") from e


def empty_table(schema: pa.Schema) -> pa.Table:
    """A zero-row table of ``schema``."""
    return schema.empty_table()
