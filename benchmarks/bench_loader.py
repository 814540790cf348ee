"""Training loader throughput per CPU core, beside the raw decode limit on the same files.

One process pinned to one core (a DataLoader worker is one such process, so per-core figures scale
with workers). Shards of WebVid-like clips as curation writes them (short side 256, 16:9, 24 fps,
4 s, H.264); each sample is the paper's training clip: 8 frames every 4 from a random start,
shorter-side resize then a random 256x256 crop, values in [-1, 1].

* ``loader``: :class:`training.data.VideoTextStream` end to end (tar read, JSON, seek + decode,
  resize, crop, normalise, caption choice);
* ``decode limit``: the same 8 frames of the same files decoded with the same seeking decoder,
  nothing else (bytes already in memory);
* ``full decode``: decoding every frame of each file, what a loader without seeking pays.

    python -m benchmarks.bench_loader [--n 24] [--samples 96] [--gpu-rate 40.8]

``--gpu-rate``: training samples/s of one GPU (benchmarks/RESULTS.md, VidRD fwd+bwd 16x8 on H100),
to print how many loader cores keep one GPU fed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import environment, per_second
from media.video import decode_clip, decode_frames, encode_mp4
from shards.writer import Sample, ShardWriter, finalize
from training.data import ClipConfig, ShardSet, StreamPlan, VideoTextStream, clip_indices
from vidrd.synthetic import COLOURS, DIRECTIONS, moving_square

W, H, FPS, FRAMES = 456, 256, 24.0, 96


def make_shards(out: str, n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    videos = []
    with ShardWriter(out, "webvid", max_samples=8) as w:
        for i in range(n):
            c, d = list(COLOURS)[i % 4], list(DIRECTIONS)[(i // 4) % 4]
            frames = moving_square(c, d, frames=FRAMES, width=W, height=H, seed=i)
            frames = np.clip(frames.astype(np.int16) + rng.integers(-20, 20, frames.shape), 0, 255).astype(np.uint8)
            mp4 = encode_mp4(frames, FPS)
            videos.append(mp4)
            meta = {"source": "webvid", "source_id": str(i), "stage": "bench", "frames": FRAMES, "fps": FPS,
                    "width": W, "height": H}  # fmt: skip
            w.write(Sample(f"webvid-{i}", mp4, f"a {c} square moving {d}", meta))
    finalize(out)
    return videos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24, help="videos in the shards")
    ap.add_argument("--samples", type=int, default=96, help="training clips drawn per measurement")
    ap.add_argument("--gpu-rate", type=float, default=40.8, help="one GPU's training samples/s")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    clip = ClipConfig(frames=8, stride=4, size=256)
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_shards(os.path.join(tmp, "shards"), a.n)
        plan = StreamPlan([ShardSet(os.path.join(tmp, "shards"))], clip, batch_size=1,
                          batches_per_worker=a.samples, shuffle_buffer=16)  # fmt: skip
        stream = VideoTextStream(plan)
        for _ in zip(range(8), stream, strict=False):  # warm-up: imports, codec init
            pass
        loader = per_second(lambda: sum(1 for _ in stream), a.samples, warmup=0)

        rng = np.random.default_rng(1)
        picks = [(videos[int(rng.integers(len(videos)))], clip_indices(FRAMES, clip, rng)) for _ in range(a.samples)]
        limit = per_second(lambda: [decode_clip(v, idx, FPS) for v, idx in picks], a.samples, warmup=0)
        k = max(4, a.samples // 8)
        full = per_second(lambda: [decode_frames(v) for v, _ in picks[:k]], k, warmup=0)
    res = {
        "loader_samples_per_s": loader,
        "decode_limit_samples_per_s": limit,
        "full_decode_samples_per_s": full,
        "loader_over_limit": limit / loader,
        "cores_per_gpu": a.gpu_rate / loader,
        "gpu_rate": a.gpu_rate,
        "video": f"{W}x{H} {FPS:g} fps {FRAMES} frames H.264",
        **environment(cores_used=1),
    }
    print(f"| loader (shards -> 8x256x256 clip) | {loader:.1f} samples/s per core |")
    print(f"| decode limit (same 8 frames, seeking) | {limit:.1f} samples/s ({limit / loader:.2f}x the loader) |")
    print(f"| full decode (all {FRAMES} frames) | {full:.1f} samples/s |")
    print(f"cores to feed one GPU at {a.gpu_rate} samples/s: {a.gpu_rate / loader:.1f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
