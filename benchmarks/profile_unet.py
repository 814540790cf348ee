"""Where the time of one 16-frame CFG forward goes (torch.profiler), for VidRD and the peer.

python benchmarks/profile_unet.py [--cudnn-benchmark]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_unet import build, inputs, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    for kind in ("vidrd", "peer"):
        model, fwd = build(kind)
        model.eval().requires_grad_(False)
        x, t, c = inputs(2, 16)
        with torch.no_grad():
            ms = timed(lambda fwd=fwd, x=x, t=t, c=c: fwd(x, t, c)) * 1e3
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fwd(x, t, c)
                torch.cuda.synchronize()
        print(f"== {kind}: {ms:.1f} ms (cudnn.benchmark={args.cudnn_benchmark})")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows, max_name_column_width=70))
        model = fwd = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
