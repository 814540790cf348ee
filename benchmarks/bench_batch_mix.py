"""How mixed the trainer's batches are: distinct captions per batch, as ``vidrd train fit``'s loader makes them,
for several ``open_shards`` / ``shuffle_buffer`` settings on one shard set, beside the limit (the same count for
batches drawn uniformly at random from the whole set). Curated shards hold runs of one partition of a sorted
manifest; a loader that reads one shard at a time feeds a step only a few of the set's captions.

    python -m benchmarks.bench_batch_mix --shards runs/lv/shards --batch 64 [--batches 20] [--json out.json]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmarks.common import emit, write_results
from shards.reader import list_shards, scan_shard
from training.data import ClipConfig, ShardSet, StreamPlan, VideoTextStream

SETTINGS = ((1, 64), (8, 64), (8, 512), (16, 1024))  # (open_shards, shuffle_buffer); (1, 64): the old loader


def distinct(captions: list[str], batch: int) -> float:
    """Mean number of distinct captions per consecutive batch of ``batch``."""
    return float(np.mean([len(set(captions[k : k + batch])) for k in range(0, len(captions) - batch + 1, batch)]))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    captions = [m["txt"].decode() for url in list_shards(a.shards) for m in scan_shard(url, load=True).samples.values()]
    if not captions:
        ap.error(f"{a.shards}: no samples")
    rng = np.random.default_rng(0)
    iid = distinct([captions[i] for i in rng.integers(len(captions), size=a.batch * a.batches)], a.batch)
    clip = ClipConfig(frames=1, stride=1, size=16)  # the composition does not depend on the clip: decode little
    rows = [{"loader": "uniform over the set (limit)", "distinct_captions_per_batch": round(iid, 2),
             "of_set": len(set(captions))}]  # fmt: skip
    emit(rows[-1])
    for open_shards, buffer in SETTINGS:
        plan = StreamPlan(sets=[ShardSet(a.shards)], clip=clip, batch_size=a.batch, batches_per_worker=a.batches,
                          shuffle_buffer=buffer, open_shards=open_shards)  # fmt: skip
        caps = [e["caption"] for e in VideoTextStream(plan)]
        rows.append({"loader": f"open_shards={open_shards} shuffle_buffer={buffer}",
                     "distinct_captions_per_batch": round(distinct(caps, a.batch), 2)})  # fmt: skip
        emit(rows[-1])
    write_results(a.json, rows, shards=a.shards, batch=a.batch)
    return rows


if __name__ == "__main__":
    main()
