"""Tables beside a shard set's ``_index.parquet`` that later jobs add without rewriting tars or the index:

* ``_dups.parquet`` (``vidrd curate dedup``): one row per sample that duplicates another (:data:`DUPS_SCHEMA`);
  readers see it as an ``is_dup`` column;
* ``_scores.parquet`` (``vidrd curate scores``): ``aesthetic`` and ``clip_score`` per sample.

Each file records which index it was made for (:func:`index_fingerprint` of the keys), so a set curated again
afterwards refuses a stale table instead of silently filtering the wrong samples (:class:`StaleSidecarError`).
:func:`with_derived_columns` adds the columns a filter or a sort names to the index; :data:`DERIVED_COLUMNS`
lists them for checking a filter before anything is read.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from manifests.io import join, write_table

DUPS, SCORES = "_dups.parquet", "_scores.parquet"
DUPS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),  # the sample kept in its place
        pa.field("duplicate_of_set", pa.string(), nullable=False),  # the shard set that sample is in
        pa.field("kind", pa.string(), nullable=False),  # exact | near | semantic
        # exact: 0; near: perceptual-hash bits apart; semantic: 1000 x (1 - cosine of the CLIP embeddings)
        pa.field("distance", pa.int32(), nullable=False),
    ]
)
# derived column -> the sidecar it comes from
DERIVED = {"is_dup": DUPS, "aesthetic": SCORES, "clip_score": SCORES}
DERIVED_COLUMNS = tuple(DERIVED)
_MADE_BY = {DUPS: "vidrd curate dedup", SCORES: "vidrd curate scores"}


class StaleSidecarError(ValueError):
    """A sidecar table made for another version of the set's index."""


def index_fingerprint(index: pa.Table) -> str:
    """SHA-256 of the index's sorted keys: what a sidecar table is valid for."""
    h = hashlib.sha256()
    for key in sorted(index.column("key").to_pylist()):
        h.update(key.encode())
        h.update(b"\n")
    return h.hexdigest()


def _path(set_path: str, name: str) -> tuple[object, str]:
    fs, root = url_to_fs(set_path.rstrip("/"))
    return fs, posixpath.join(root, name)


def write_sidecar(set_path: str, name: str, rows: pa.Table, index: pa.Table, settings: dict[str, str]) -> None:
    """``rows`` as the set's sidecar ``name``, stamped with its index's fingerprint and the job's settings."""
    meta = {k.encode(): v.encode() for k, v in {**settings, "index_fingerprint": index_fingerprint(index)}.items()}
    write_table(rows.replace_schema_metadata(meta), join(set_path, name))  # atomic; a planted link is replaced


def load_sidecar(set_path: str, name: str, index: pa.Table) -> pa.Table | None:
    """The set's sidecar ``name``, None without one; :class:`StaleSidecarError` when made for another index."""
    fs, path = _path(set_path, name)
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
    except (OSError, pa.ArrowException) as e:  # a folder, a truncated or foreign file at that name
        raise ValueError(f"{set_path}: {name} is not a readable table ({e}); run `{_MADE_BY[name]}` again") from e
    missing = {"key", *(("aesthetic", "clip_score") if name == SCORES else ())} - set(table.column_names)
    if missing:
        raise ValueError(f"{set_path}: {name} lacks columns {sorted(missing)}; run `{_MADE_BY[name]}` again")
    made_for = (table.schema.metadata or {}).get(b"index_fingerprint", b"").decode()
    if made_for != index_fingerprint(index):
        raise StaleSidecarError(
            f"{set_path}: {name} was made for another version of _index.parquet (the set was curated again since); "
            f"run `{_MADE_BY[name]}` again"
        )
    return table


def named(text: str | None) -> list[str]:
    """The derived columns ``text`` (a filter or a sort column) mentions."""
    return [c for c in DERIVED_COLUMNS if text and re.search(rf"\b{c}\b", text)]


def with_derived_columns(set_path: str, index: pa.Table, columns: list[str]) -> pa.Table:
    """``index`` plus the derived ``columns`` (``is_dup``: False where ``_dups.parquet`` does not list the key, or
    without one; scores: null without ``_scores.parquet`` or for a key it does not hold)."""
    for name in sorted({DERIVED[c] for c in columns}):
        table = load_sidecar(set_path, name, index)
        if name == DUPS:
            keys = table.column("key") if table is not None else pa.array([], pa.string())
            index = index.append_column("is_dup", pc.is_in(index.column("key"), value_set=keys))
            continue
        for c in (c for c in ("aesthetic", "clip_score") if c in columns):
            if table is None:
                index = index.append_column(c, pa.nulls(index.num_rows, pa.float64()))
                continue
            row = pc.index_in(index.column("key"), value_set=table.column("key"))  # null where the key is absent
            index = index.append_column(c, pc.take(table.column(c), row))
    return index
