"""GPU benchmark of the full-size VidRD UNet against diffusers' UNet3DConditionModel (ModelScope config).

Both with random weights, bf16, 256x256 video (32x32 latents), text context [B, 77, 1024]:
  * train: forward + backward, 8 frames, batch 8 and 16 (no optimizer step);
  * cfg:   forward only, 16 frames, batch 2 (the conditional and unconditional halves of one CFG call).
Achieved TFLOP/s = FLOPs counted by torch.utils.flop_counter over the same step / measured time. The
bf16 8192^3 matmul rate is measured in the same run as the limit. Prints a table; --json writes one.

    python benchmarks/bench_unet.py --json $OUT/unet.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.model.unet import VidRDUNet, is_temporal

MODELSCOPE = dict(
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=1024,
    attention_head_dim=64,
    norm_num_groups=32,
)


def build(kind: str) -> tuple[torch.nn.Module, callable]:
    with torch.device("cuda"):
        if kind == "peer":
            from diffusers import UNet3DConditionModel

            m = UNet3DConditionModel(**MODELSCOPE)
            return m.to(torch.bfloat16), lambda x, t, c: m(x, t, encoder_hidden_states=c).sample
        m = VidRDUNet(sample_size=32)
        return m.to(torch.bfloat16), lambda x, t, c: m(x, t, c)


def set_trainable(model: torch.nn.Module, kind: str, group: str) -> int:
    for n, p in model.named_parameters():
        if group == "all":
            p.requires_grad_(True)
        elif group == "temporal":
            p.requires_grad_(is_temporal(n) or ("temp_" in n))
        elif group == "paper":  # temporal + spatial transformer blocks
            model.set_trainable(spatial_transformers=True)
            break
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def inputs(b: int, f: int):
    x = torch.randn(b, 4, f, 32, 32, device="cuda", dtype=torch.bfloat16)
    t = torch.randint(0, 1000, (b,), device="cuda")
    c = torch.randn(b, 77, 1024, device="cuda", dtype=torch.bfloat16)
    return x, t, c


def timed(fn, warmup: int = 3, iters: int = 10, repeats: int = 3) -> float:
    """Seconds per call: the best of ``repeats`` means over ``iters`` calls (host jitter only adds time)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / iters / 1e3)
    return best


def gpu_seconds(fn) -> float:
    """Sum of the GPU kernel times of one call (what the step costs the GPU, host launch gaps excluded)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / 1e6


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def matmul_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    s = timed(lambda: a @ b, 3, 10)
    return 2 * 8192**3 / s / 1e12


def run_case(kind: str, mode: str, batch: int, frames: int, group: str, ckpt: bool) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, fwd = build(kind)
    params = sum(p.numel() for p in model.parameters())
    temporal = sum(p.numel() for n, p in model.named_parameters() if is_temporal(n) or "temp_" in n)
    x, t, c = inputs(batch, frames)
    row = dict(
        model=kind,
        mode=mode,
        batch=batch,
        frames=frames,
        params_M=round(params / 1e6, 1),
        temporal_M=round(temporal / 1e6, 1),
        trainable=group if mode == "train" else "-",
        ckpt=ckpt,
    )
    try:
        if mode == "train":
            model.train()
            row["trainable_M"] = round(set_trainable(model, kind, group) / 1e6, 1)
            if ckpt:
                model.enable_gradient_checkpointing()

            def step():
                model.zero_grad(set_to_none=True)
                fwd(x, t, c).float().square().mean().backward()
        else:
            model.eval()
            model.requires_grad_(False)

            def step():
                with torch.no_grad():
                    fwd(x, t, c)

        flops = flops_of(step)
        torch.cuda.reset_peak_memory_stats()
        sec = timed(step)
        peak_mem = torch.cuda.max_memory_allocated()
        gpu = gpu_seconds(step)
        row.update(
            ms=round(sec * 1e3, 1),
            gpu_ms=round(gpu * 1e3, 1),
            samples_per_s=round(batch / sec, 1),
            tflop=round(flops / 1e12, 2),
            tflops=round(flops / sec / 1e12, 1),
            gpu_tflops=round(flops / gpu / 1e12, 1),
            peak_GiB=round(peak_mem / 2**30, 1),
        )
    except torch.cuda.OutOfMemoryError:
        row.update(ms=None, error="OOM")
    model = fwd = step = None  # free the GPU memory before the next case
    torch.cuda.empty_cache()
    return row


CASES = [
    ("train", 8, 8, "paper"),
    ("train", 16, 8, "paper"),
    ("train", 16, 8, "temporal"),
    ("cfg", 2, 16, "-"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--ckpt", action="store_true", help="gradient checkpointing in the train cases")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = matmul_peak()
    rows = []
    for mode, b, f, group in CASES:
        for kind in ("vidrd", "peer"):
            g = group
            if kind == "peer" and group == "paper":
                g = "temporal"  # the peer has no paper trainable set; its closest is temporal-only
            r = run_case(kind, mode, b, f, g, args.ckpt)
            if r.get("tflops"):
                r["of_matmul_peak"] = round(r["tflops"] / peak, 3)
            rows.append(r)
            print(json.dumps(r), flush=True)
    env = dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        matmul_tflops=round(peak, 1),
        date=time.strftime("%Y-%m-%d"),
    )
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    print(json.dumps(env))
    cols = [
        "model",
        "mode",
        "batch",
        "frames",
        "trainable",
        "params_M",
        "temporal_M",
        "ms",
        "gpu_ms",
        "samples_per_s",
        "tflop",
        "tflops",
        "gpu_tflops",
        "of_matmul_peak",
        "peak_GiB",
    ]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(k, "")) for k in cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
