"""``vidrd shards ls`` and ``stats``: counts, sizes and distributions."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from shards.reader import ShardScan, cut_count, is_number, number, sample_meta, scan_shard


def describe(values: list[float]) -> dict[str, float | int | None]:
    """count, mean, min, p5, p50, p95, max of the finite values (null, NaN and infinity are no measurement:
    one NaN would make every figure NaN, and NaN is not JSON)."""
    v = np.asarray([x for x in values if is_number(x)], dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean": None, "min": None, "p5": None, "p50": None, "p95": None, "max": None}
    q = np.percentile(v, [5, 50, 95])
    return {
        "count": int(v.size),
        "mean": round(float(v.mean()), 3),
        "min": round(float(v.min()), 3),
        "p5": round(float(q[0]), 3),
        "p50": round(float(q[1]), 3),
        "p95": round(float(q[2]), 3),
        "max": round(float(v.max()), 3),
    }


def ls_row(scan: ShardScan) -> dict[str, Any]:
    """One line of ``shards ls``."""
    return {
        "shard": scan.url.rsplit("/", 1)[-1],
        "samples": len(scan.samples),
        "bytes": scan.bytes,
        "status": "ok" if scan.ok else f"broken: {scan.error}",
    }


def rows_from_scan(urls: list[str], progress=None) -> tuple[list[dict[str, Any]], list[str]]:
    """Index-like rows read from each sample's ``.json`` (for folders without ``_index.parquet``)."""
    rows, broken = [], []
    for url in urls:
        scan = scan_shard(url, load=True)
        if scan.error:
            broken.append(f"{url}: {scan.error}")
        for members in scan.samples.values():
            meta = sample_meta(members)
            txt = members.get("txt", b"")
            frames, fps = number(meta.get("frames")), number(meta.get("fps"))
            rows.append(
                {
                    "source": str(meta.get("source", "unknown")),
                    "frames": frames,
                    "duration": frames / fps if frames and fps else None,
                    "caption_length": len(txt.decode("utf-8", "replace")) if isinstance(txt, bytes) else None,
                    "cuts": cut_count(meta),
                    "motion": number(meta.get("motion")),
                }
            )
        if progress:
            progress(scan)
    return rows, broken


def stats(rows: list[dict[str, Any]], rejects: pa.Table | None) -> dict[str, Any]:
    """Counts by source, distributions, rejects by stage and reason."""
    out: dict[str, Any] = {
        "samples": len(rows),
        "by_source": dict(sorted(Counter(r["source"] for r in rows).items())),
        "duration_s": describe([r["duration"] for r in rows]),
        "frames": describe([r["frames"] for r in rows]),
        "caption_chars": describe([r["caption_length"] for r in rows]),
        # curation signals (cuts, motion); count 0 for shards curated before them
        "motion": describe([r.get("motion") for r in rows]),
        "cuts": describe([r.get("cuts") for r in rows]),
    }
    if rejects is not None:
        rr = rejects.select(["stage", "reason"]).to_pylist()
        out["rejects"] = len(rr)
        out["rejects_by_reason"] = {
            f"{k[0]}/{k[1]}": v for k, v in sorted(Counter((r["stage"], r["reason"]) for r in rr).items())
        }
    return out
