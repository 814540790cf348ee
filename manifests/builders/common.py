"""Shared pieces of the source-manifest builders."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from manifests.io import SchemaError, read_table, url_to_fs
from manifests.schema import RejectReason

WHERE = "_where"  # a row's annotation file and line; dropped before the manifest is written
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".gif", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ManifestBuildError(RuntimeError):
    """The dataset root does not have the layout the builder expects (the message names the file)."""


@dataclass
class BuildResult:
    """Rows of the source manifest plus one reject row per annotation row that yields no item."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, input_id: str, source: str, reason: RejectReason, message: str, uri: str = "") -> None:
        self.rejects.append(
            {
                "input_id": input_id,
                "source": source,
                "uri": uri,
                "stage": "manifest",
                "reason": reason.value,
                "message": message,
            }
        )


class FileIndex:
    """Every file under a root, found once, looked up by relative path or by file stem.

    Listing once is what makes builders usable on millions of files and on object stores, where a
    per-row existence check would be one request each.
    """

    def __init__(self, root: str, extensions: Iterable[str]):
        self.fs, self.root = url_to_fs(root)
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        exts = tuple(e.lower() for e in extensions)
        self.by_rel: dict[str, str] = {}
        self.by_stem: dict[str, list[str]] = {}
        for path in self.fs.find(self.root):
            if not path.lower().endswith(exts):
                continue
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
            full = self._uri(path)
            self.by_rel[rel] = full
            stem = os.path.splitext(os.path.basename(path))[0]
            self.by_stem.setdefault(stem, []).append(full)

    def _uri(self, path: str) -> str:
        if self.protocol in ("file", "local"):
            return os.path.abspath(path)
        return f"{self.protocol}://{path}"

    def rel(self, relpath: str) -> str | None:
        return self.by_rel.get(relpath.replace("\\", "/").lstrip("/"))

    def stem(self, stem: str) -> str | None:
        hits = self.by_stem.get(stem)
        return sorted(hits)[0] if hits else None

    def __len__(self) -> int:
        return len(self.by_rel)


def require_file(root: str, *candidates: str) -> str:
    """First existing ``root/candidate``; a :class:`ManifestBuildError` listing all tried otherwise."""
    fs, base = url_to_fs(root)
    for c in candidates:
        p = os.path.join(base, c)
        if fs.exists(p):
            return p
    tried = ", ".join(os.path.join(root, c) for c in candidates)
    raise ManifestBuildError(f"annotation file not found; looked for: {tried}")


def read_text(path: str, root: str) -> str:
    """Text of an annotation file, with a clear error when it is not UTF-8."""
    fs, _ = url_to_fs(root)
    with fs.open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestBuildError(f"{path}: not UTF-8 text ({e})") from e


_ISO_DURATION = re.compile(r"^P(?:T)?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def read_parquet(fs, path: str):
    """A Parquet annotation table (``manifests.io.read_table``), or a :class:`ManifestBuildError` naming the file
    when it cannot be read."""
    try:
        return read_table(fs.unstrip_protocol(path))
    except SchemaError as e:
        cause = str(e.__cause__ or e).splitlines()[0][:200]
        raise ManifestBuildError(f"{path}: not a readable Parquet table ({cause})") from e


def csv_records(text: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(line, fields, error)`` for every record of a CSV text; ``line`` is where the record starts (1-based), so
    a caption spanning lines does not shift the numbers after it.

    A record the parser cannot end (an unterminated quote reads to the end of the file, swallowing every later
    row) comes back with ``fields=None`` and the error, and reading resumes on the line after its start: one bad
    row costs one reject, never the rest of the file.
    """
    lines = text.splitlines(keepends=True)
    pos = 0
    while pos < len(lines):
        reader = csv.reader(lines[pos:], strict=True)
        consumed = 0
        try:
            for rec in reader:
                yield pos + consumed + 1, rec, None
                consumed = reader.line_num
            return
        except csv.Error as e:
            yield pos + consumed + 1, None, f"unparsable CSV record ({e})"
            pos += consumed + 1


def csv_dicts(text: str) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, Any] | None, str | None]]]:
    """The header of a CSV text and ``(line, row, error)`` for every later record (:func:`csv_records`);
    short rows are padded with None, as ``csv.DictReader`` does."""
    records = csv_records(text)
    header = next((rec for _, rec, err in records if err is None and rec), None)

    def rows() -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        for line, rec, err in records:
            if err is not None:
                yield line, None, err
            elif rec and any(c.strip() for c in rec):
                yield line, dict(zip(header or [], rec + [None] * (len(header or []) - len(rec)), strict=False)), None

    return header, rows()


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds from a number or an ISO-8601 duration such as WebVid's ``PT00H00M11S``."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        pass
    m = _ISO_DURATION.match(s)
    if not m or not any(m.groups()):
        raise ValueError(f"not a duration: {value!r}")
    h, mi, se = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + se


def video_row(
    *,
    id: str,
    uri: str,
    source: str,
    label: str | None = None,
    captions: list[str] | None = None,
    duration: float | None = None,
    split: str | None = None,
    kind: str = "video",
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    where: str | None = None,
) -> dict[str, Any]:
    """One source-manifest row with every schema field present; ``where`` (file and line of its annotation) rides
    along as ``_where`` for messages about the row (``manifests.build.dedupe``) and is not written."""
    row = {
        "id": id,
        "uri": uri,
        "kind": kind,
        "label": label,
        "captions": captions,
        "duration": duration,
        "fps": fps,
        "width": width,
        "height": height,
        "source": source,
        "split": split,
        "start": start,
        "end": end,
    }
    if where is not None:
        row[WHERE] = where
    return row
