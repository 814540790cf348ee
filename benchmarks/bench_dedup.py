"""Dedup throughput per CPU core: hashing alone, and ``vidrd curate dedup`` end to end on a Ray of one
CPU (Ray start, hashing, the exact and band shuffles, writing ``_dups.parquet``), beside the decode limit of the
same keyframes in the same run.

Shards of WebVid-like samples (256x144, 24 frames, H.264) as curation writes them; every 6th sample is stored
twice (the second copy in another set), so both shuffles carry real groups. The end-to-end run is made at two
sizes (n and 4n): the difference gives the rate per further sample, apart from the fixed cost of Ray Data's
stages, which a 10M-sample run pays once.

    python -m benchmarks.bench_dedup [--n 96] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.common import once, write_results
from curation.dedup import DedupConfig, hash_shard
from curation.shard_jobs import keyframe_indices, shard_items
from media.video import decode_frames, encode_mp4
from shards.writer import Sample, ShardWriter, finalize
from vidrd.synthetic import COLOURS, DIRECTIONS, moving_square

FRAMES, FPS = 24, 8.0


def make_sets(root: Path, n: int) -> tuple[list[str], list[bytes]]:
    a, b = root / "a", root / "b"
    mp4s = []
    with ShardWriter(str(a), "webvid", max_samples=32) as wa, ShardWriter(str(b), "tgif", max_samples=32) as wb:
        for i in range(n):
            c, d = list(COLOURS)[i % 4], list(DIRECTIONS)[(i // 4) % 4]
            mp4 = encode_mp4(moving_square(c, d, frames=FRAMES, width=256, height=144, seed=i), FPS)
            mp4s.append(mp4)
            meta = {"source": "webvid", "source_id": f"v{i}", "stage": "bench", "frames": FRAMES, "fps": FPS,
                    "width": 256, "height": 144}  # fmt: skip
            wa.write(Sample(f"webvid-v{i}", mp4, "a clip", meta))
            if i % 6 == 0:
                wb.write(Sample(f"tgif-copy{i}", mp4, "a clip", dict(meta, source="tgif", source_id=f"copy{i}")))
    finalize(str(a))
    finalize(str(b))
    return [str(a), str(b)], mp4s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=96, help="samples in the first set (the second holds every 6th again)")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    sets, mp4s = make_sets(Path(tempfile.mkdtemp()), a.n)
    big, _ = make_sets(Path(tempfile.mkdtemp()), 4 * a.n)
    total = a.n + len(range(0, a.n, 6))
    urls = shard_items(sets)
    idx = keyframe_indices(FRAMES, DedupConfig().keyframes)
    decode_s = once(lambda: [decode_frames(m, idx) for m in mp4s])
    hash_s = once(lambda: [hash_shard(u, DedupConfig().keyframes) for u in urls])
    import ray

    from curation.dedup import dedup

    start_s = once(lambda: ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False))
    small_s = once(lambda: dedup(sets))
    summary = {}
    big_s = once(lambda: summary.update(dedup(big)))
    ray.shutdown()
    big_total = summary["samples"]
    marginal = (big_total - total) / (big_s - small_s)
    rows = [
        {"part": "keyframe decode limit", "samples_per_s": round(a.n / decode_s, 1)},
        {"part": "hash (decode keyframes + SHA-256 + pHash)", "samples_per_s": round(total / hash_s, 1)},
        {"part": "ray start (local, 1 CPU)", "seconds": round(start_s, 1)},
        {"part": f"vidrd curate dedup, {total} samples", "seconds": round(small_s, 1)},
        {"part": f"vidrd curate dedup, {big_total} samples", "seconds": round(big_s, 1),
         "duplicates": summary["duplicates"]},
        {"part": "vidrd curate dedup, each further sample (marginal rate)", "samples_per_s": round(marginal, 1)},
    ]  # fmt: skip
    for r in rows:
        print(json.dumps(r))
    write_results(a.json, rows, cores_used=1)


if __name__ == "__main__":
    main()
