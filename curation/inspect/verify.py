"""``vidrd shards verify``: every sample decodes, metadata agrees, keys are unique, tars are complete."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from manifests.io import SchemaError
from manifests.keys import is_valid_key
from manifests.schema import INDEX_FILE
from media.video import VideoDecodeError, decode_frames
from shards.reader import ShardScan, is_number, load_index, number, sample_meta, scan_shard, split_name

REQUIRED_EXTS = ("mp4", "txt", "json")


@dataclass
class VerifyReport:
    """Result of a verify pass; ``ok`` only when ``problems`` is empty."""

    shards: int = 0
    samples: int = 0
    decoded: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, shard: str, key: str | None, problem: str, detail: str = "") -> None:
        self.problems.append({"shard": shard, "key": key, "problem": problem, "detail": detail})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "decoded": self.decoded,
            "problems": self.problems,
        }


def check_sample(
    report: VerifyReport, shard: str, key: str, members: dict[str, Any], decode: bool, index_frames: int | None
) -> None:
    """Record every problem of one loaded sample."""
    if not is_valid_key(posixpath.basename(key)) or "/" in key:
        report.add(shard, key, "bad_key", "keys must match [A-Za-z0-9_-]+")
    missing = [e for e in REQUIRED_EXTS if e not in members]
    if missing:
        report.add(shard, key, "missing_member", f"no .{', .'.join(missing)}")
    meta = sample_meta(members)
    if "json" in members and not meta:
        report.add(shard, key, "bad_json", ".json is not a JSON object")
    for name in ("frames", "fps", "width", "height"):
        v = meta.get(name)
        if meta and not (is_number(v) and v > 0):
            report.add(shard, key, "bad_json", f".json {name} is not a positive number: {v!r}")
    if "txt" in members:
        try:
            members["txt"].decode("utf-8")
        except UnicodeDecodeError:
            report.add(shard, key, "bad_caption", ".txt is not UTF-8")
    if not decode or "mp4" not in members:
        return
    try:
        _, info = decode_frames(members["mp4"], indices=[])
    except VideoDecodeError as e:
        report.add(shard, key, "undecodable", str(e))
        return
    report.decoded += 1
    if isinstance(meta.get("frames"), int | float) and number(meta["frames"]) not in (None, info.frames):
        report.add(shard, key, "frame_count", f"decoded {info.frames} frames, .json says {meta['frames']}")
    if index_frames is not None and index_frames != info.frames:
        report.add(shard, key, "frame_count", f"decoded {info.frames} frames, _index.parquet says {index_frames}")


def verify(
    shards: list[str],
    path: str,
    decode: bool = True,
    whole_dir: bool = True,
    progress: Callable[[ShardScan], None] | None = None,
) -> VerifyReport:
    """Check ``shards`` (and the index beside them, when present).

    ``whole_dir``: ``shards`` are all the shards of the folder, so index rows naming a shard that is
    not there are problems too.
    """
    report = VerifyReport(shards=len(shards))
    try:
        index = load_index(path)
    except SchemaError as e:  # reported like any other damage; the tars are still checked
        report.add(INDEX_FILE, None, "index_unreadable", str(e))
        index = None
    index_rows: dict[str, dict[str, Any]] = {}
    if index is not None:
        for row in index.select(["key", "shard", "frames"]).to_pylist():
            index_rows[row["key"]] = row
    where: dict[str, str] = {}
    shard_names = set()
    for url in shards:
        name = posixpath.basename(url)
        shard_names.add(name)
        scan = scan_shard(url, load=True)
        if scan.error:
            report.add(name, None, "truncated_or_unreadable", scan.error)
        for member in scan.duplicate_members:
            report.add(name, split_name(member)[0], "duplicate_member", f"{member} is stored more than once")
        for key, members in scan.samples.items():
            report.samples += 1
            if key in where:
                report.add(name, key, "duplicate_key", f"also in {where[key]}")
            where[key] = name
            row = index_rows.get(key)
            if index is not None and row is None:
                report.add(name, key, "not_in_index", "sample missing from _index.parquet")
            elif row is not None and row["shard"] != name:
                report.add(name, key, "index_shard", f"_index.parquet says shard {row['shard']}")
            check_sample(report, name, key, members, decode, row["frames"] if row else None)
        if progress:
            progress(scan)
    for key, row in index_rows.items():
        if row["shard"] in shard_names and key not in where:
            report.add(row["shard"], key, "missing_sample", "in _index.parquet but not in the tar")
        elif whole_dir and row["shard"] not in shard_names:
            report.add(row["shard"], key, "missing_shard", "_index.parquet names a shard that is not there")
    return report
