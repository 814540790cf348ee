"""Where one fast 16-frame CFG call of the full-size VidRD UNet spends its GPU time, unit by unit.

Every unit the UNet runs (ResNet + Temp-Conv, spatial transformer + Temp-Attn) is wrapped in a
``torch.profiler.record_function`` label naming its class and input shape, and one warm, compiled (not graphed)
call is profiled: the table sums the GPU time of the kernels launched under each label, and what ran outside the
units (samplers, ``conv_in``/``conv_out``, time embedding).
``--temp-conv`` also times Temp-Conv's convolution as cuDNN's 3D kernel against the same arithmetic as a 2D
convolution over (frames, pixels), at every level's shape.

    python -m benchmarks.profile_units [--temp-conv] [--fast-paths unfused]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.bench_fast import VARIANTS, fresh_vidrd, sampling_inputs
from benchmarks.common import cuda_mean, emit
from inference.sampler import guidance_pass
from training.model.fast_paths import apply_fast_paths


def label_units(unet) -> None:
    """Wrap the UNet's unit calls in profiler labels ``Class [shape]``."""
    run = unet._run

    def labelled(fn, *args):
        with record_function(f"{type(fn).__name__} {list(args[0].shape)}"):
            return run(fn, *args)

    unet._run = labelled


def unit_table(fast_key: str, top: int) -> None:
    v = VARIANTS[fast_key]
    unet = fresh_vidrd()
    apply_fast_paths(unet, v.fast)
    label_units(unet)
    den = v.denoiser(unet)
    z, cond, uncond = sampling_inputs()
    t = torch.tensor(500, device="cuda")
    with torch.no_grad():
        with v.levers():  # the units compile on their first call
            guidance_pass(den, z, t, cond, uncond)
        ms = cuda_mean(lambda: guidance_pass(den, z, t, cond, uncond)) * 1e3
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            guidance_pass(den, z, t, cond, uncond)
            torch.cuda.synchronize()
    # Kernel time per label, from the kernels each CPU-side event launched (gpu_user_annotation spans would
    # include the idle gaps of an eager call).
    per_label: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    calls: dict[str, int] = defaultdict(int)

    def collect(evt, into: dict[str, float]) -> None:
        for k in evt.kernels:
            into[k.name] += k.duration / 1e3
        for child in evt.cpu_children:
            collect(child, into)

    total = 0.0
    for evt in prof.events():
        if evt.device_type == torch.autograd.DeviceType.CPU:
            total += sum(k.duration for k in evt.kernels) / 1e3
            if evt.name.split(" ")[0].endswith("Unit"):
                calls[evt.name] += 1
                collect(evt, per_label[evt.name])
    print(f"== {v.name}: eager call of compiled units {ms:.2f} ms; GPU kernels {total:.2f} ms")
    in_units = 0.0
    for name, kernels in sorted(per_label.items(), key=lambda kv: -sum(kv[1].values())):
        gpu_ms = sum(kernels.values())
        in_units += gpu_ms
        print(f"{gpu_ms:8.3f} ms  {calls[name]:2d}x  {name}")
        for kname, kms in sorted(kernels.items(), key=lambda kv: -kv[1])[:top]:
            print(f"          {kms:7.3f}  {kname[:110]}")
    outside = total - in_units
    print(f"{in_units:8.3f} ms  in units; {outside:.3f} ms outside (samplers, conv_in/out, time embedding)")


def temp_conv_table() -> None:
    """Temp-Conv's (3, 1, 1) convolution at each level, 32 frames (CFG x 16), bf16, channels-last."""
    for c, hw in ((320, 32), (640, 16), (1280, 8), (1280, 4)):
        x = torch.randn(2, c, 16, hw, hw, device="cuda", dtype=torch.bfloat16)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        w = (torch.randn(c, c, 3, 1, 1, device="cuda", dtype=torch.bfloat16) * 0.02).contiguous(
            memory_format=torch.channels_last_3d
        )
        b = torch.zeros(c, device="cuda", dtype=torch.bfloat16)
        x2, w2 = x.view(2, c, 16, hw * hw), w.view(c, c, 3, 1)
        ref = F.conv3d(x, w, b, padding=(1, 0, 0))
        diff = (F.conv2d(x2, w2, b, padding=(1, 0)).view_as(ref) - ref).abs().max().item()
        row = dict(channels=c, size=hw, max_abs_diff=diff)
        conv3d = lambda x=x, w=w, b=b: F.conv3d(x, w, b, padding=(1, 0, 0))  # noqa: E731
        conv2d = lambda x=x2, w=w2, b=b: F.conv2d(x, w, b, padding=(1, 0))  # noqa: E731
        row["conv3d_us"] = round(cuda_mean(conv3d, iters=50) * 1e6, 1)
        row["conv2d_us"] = round(cuda_mean(conv2d, iters=50) * 1e6, 1)
        emit(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast-paths", default="fast", choices=list(VARIANTS), help="the variant to profile")
    ap.add_argument("--temp-conv", action="store_true", help="also time Temp-Conv's Conv3d against a Conv2d")
    ap.add_argument("--top", type=int, default=8, help="kernels listed under each unit")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    if args.temp_conv:
        temp_conv_table()
    unit_table(args.fast_paths, args.top)


if __name__ == "__main__":
    main()
