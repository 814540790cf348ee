"""Build a source manifest and write it, with its rejects, as Parquet."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from manifests.builders import BUILDERS, BuildResult
from manifests.builders.common import WHERE
from manifests.io import rows_to_table, write_table
from manifests.schema import REJECTS_SCHEMA, SOURCE_SCHEMA, RejectReason


@dataclass
class ManifestSummary:
    """Counts of one manifest build: ``annotated == rows + rejects``."""

    source: str
    manifest: str
    rejects_path: str
    rows: int
    rejects: int
    reasons: dict[str, int]

    def line(self) -> str:
        why = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return (
            f"{self.source}: {self.rows + self.rejects} annotated items -> {self.rows} rows in {self.manifest}, "
            f"{self.rejects} rejects in {self.rejects_path} ({why})"
        )


def rejects_path_for(manifest_path: str) -> str:
    """``M.parquet`` -> ``M.rejects.parquet``."""
    stem = manifest_path[: -len(".parquet")] if manifest_path.endswith(".parquet") else manifest_path
    return f"{stem}.rejects.parquet"


def dedupe(result: BuildResult, source: str) -> BuildResult:
    """Keep the first row of each id; later ones become ``duplicate`` rejects."""
    first: dict[str, str | None] = {}
    kept = []
    for row in result.rows:
        where = row.pop(WHERE, None)
        if row["id"] in first:
            at = f"{where}: " if where else ""
            earlier = f" (first at {first[row['id']]})" if first[row["id"]] else ""
            msg = f"{at}id {row['id']!r} appears again{earlier}"
            result.reject(row["id"], source, RejectReason.DUPLICATE, msg, row["uri"])
            continue
        first[row["id"]] = where
        kept.append(row)
    result.rows = kept
    return result


def build_manifest(source: str, root: str, out: str) -> ManifestSummary:
    """Run the builder for ``source`` over ``root`` and write ``out`` plus its rejects file."""
    if source not in BUILDERS:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(BUILDERS)}")
    result = dedupe(BUILDERS[source](root), source)
    rpath = rejects_path_for(out)
    write_table(rows_to_table(result.rows, SOURCE_SCHEMA), out)
    write_table(rows_to_table(result.rejects, REJECTS_SCHEMA), rpath)
    reasons = Counter(r["reason"] for r in result.rejects)
    return ManifestSummary(source, out, rpath, len(result.rows), len(result.rejects), dict(reasons))
