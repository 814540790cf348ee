"""The fast paths' levers measured one unit at a time, at the full-size UNet's shapes (bf16, 256x256 video).

* Temp-Attn's attention kernel: one row per pixel (F = 8 or 16 tokens) through each SDPA backend, against
  sequences packed into rows of 32-128 tokens under a block-diagonal mask (SDPA backends that take a mask,
  and FlexAttention compiled): forward + backward for training (batch 16, 8 frames), forward alone at the
  same shapes, and forward for sampling (CFG batch 2, 16 frames). Summed over the UNet's 16 Temp-Attns.
* Temp-Conv (GroupNorm, SiLU, Conv3d (3,1,1), twice, residual) and SD's ResNet block, compiled: cuDNN's
  Conv3d against the same convolution as one GEMM over three frames' channels, and GroupNorm's own lowering
  against ``training.model.group_norm`` (statistics per channel first). Summed over the UNet's 22 of each.

Each candidate's output is compared with the fp32 plain path so a fast but wrong kernel shows. Times are
CUDA-event wall time over 10 launches, which includes launch overhead at the small levels (the UNet's
sampling loop hides it in a CUDA graph); ``--profile`` prints the GPU kernel time of each level-0 unit and
the layout copies in it, the figure to compare for kernels.

    python benchmarks/bench_temporal_units.py --json $OUT/units.json
    python benchmarks/bench_temporal_units.py --units conv,resnet --cases training --profile
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.common import cuda_mean, emit, write_results
from training.model.attention_kernels import block_diagonal_mask, sequences_per_row
from training.model.group_norm import use_channel_stats_group_norm
from training.model.temporal import TempConv

# (channels, latent pixels per frame, how many in the UNet): Temp-Attn follows each spatial transformer,
# Temp-Conv each ResNet (SD 2.1 at 32x32 latents).
ATTN_LEVELS = ((320, 1024, 5), (640, 256, 5), (1280, 64, 5), (1280, 16, 1))
CONV_LEVELS = ((320, 1024, 5), (640, 256, 5), (1280, 64, 5), (1280, 16, 7))
# videos, frames, backward
CASES = {"training": (16, 8, True), "training forward": (16, 8, False), "sampling": (2, 16, False)}
HEAD_DIM = 64


def cuda_ms(fn: Callable[[], object]) -> float:
    """Milliseconds per call: one mean over 10 calls after 2 warm-up calls."""
    return cuda_mean(fn, warmup=2, iters=10, repeats=1) * 1e3


def attention_variants(f: int) -> dict[str, Callable]:
    """Attention over ``q, k, v`` of shape ``[N, heads, F, d]`` (one row per pixel) -> ``[N, heads, F, d]``."""

    def rows(backend=None):
        def run(q, k, v):
            with sdpa_kernel(backend) if backend else nullcontext():
                return F.scaled_dot_product_attention(q, k, v)

        return run

    def pack(q, length=128):
        n, h, _, d = q.shape
        p = sequences_per_row(n, f, length)
        return p, lambda t: t.transpose(1, 2).reshape(n // p, p * f, h, d).transpose(1, 2)

    def unpack(o, n):
        h, d = o.shape[1], o.shape[-1]
        return o.transpose(1, 2).reshape(n, f, h, d).transpose(1, 2)

    def packed(backend=None, length=128):
        def run(q, k, v):
            p, to_rows = pack(q, length)
            mask = block_diagonal_mask(f, p, q.device)
            with sdpa_kernel(backend) if backend else nullcontext():
                o = F.scaled_dot_product_attention(to_rows(q), to_rows(k), to_rows(v), attn_mask=mask)
            return unpack(o, q.shape[0])

        return run

    def flex():
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        compiled = torch.compile(flex_attention, dynamic=False)
        masks: dict = {}

        def run(q, k, v):
            p, to_rows = pack(q)
            length = p * f
            if length not in masks:
                masks[length] = create_block_mask(
                    lambda b, h, i, j: i // f == j // f, None, None, length, length, device=q.device
                )
            return unpack(compiled(to_rows(q), to_rows(k), to_rows(v), block_mask=masks[length]), q.shape[0])

        return run

    return {
        "rows, SDPA default": rows(),
        "rows, flash": rows(SDPBackend.FLASH_ATTENTION),
        "rows, mem-efficient": rows(SDPBackend.EFFICIENT_ATTENTION),
        "rows, cuDNN": rows(SDPBackend.CUDNN_ATTENTION),
        "packed 128, SDPA default": packed(),
        "packed 128, mem-efficient": packed(SDPBackend.EFFICIENT_ATTENTION),
        "packed 64, mem-efficient": packed(SDPBackend.EFFICIENT_ATTENTION, 64),
        "packed 32, mem-efficient": packed(SDPBackend.EFFICIENT_ATTENTION, 32),
        "packed 128, cuDNN": packed(SDPBackend.CUDNN_ATTENTION),
        "packed 128, FlexAttention": flex(),
    }


def attention_step(fn: Callable, qkv: torch.Tensor, dout: torch.Tensor, backward: bool) -> torch.Tensor:
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    o = fn(q, k, v)
    if backward:
        torch.autograd.grad(o, qkv, dout)
    return o


def module_step(run: Callable, x: torch.Tensor, frames: int, dout: torch.Tensor, backward: bool) -> torch.Tensor:
    o = run(x, frames)
    if backward:
        o.backward(dout)
    return o


def bench_attention(case: str) -> list[dict]:
    b, f, backward = CASES[case]
    out = []
    for name, fn in attention_variants(f).items():
        total, err, note = 0.0, 0.0, ""
        try:
            for c, hw, count in ATTN_LEVELS:
                n, heads = b * hw, c // HEAD_DIM
                g = torch.Generator("cuda").manual_seed(0)
                qkv = torch.randn(n, f, 3, heads, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
                qkv.requires_grad_(backward)
                with torch.no_grad():
                    q, k, v = qkv.permute(2, 0, 3, 1, 4)
                    ref = F.scaled_dot_product_attention(*(t.float() for t in (q, k, v)))
                step = partial(attention_step, fn, qkv, torch.randn_like(ref).bfloat16(), backward)
                with torch.set_grad_enabled(backward):
                    o = step()
                    err = max(err, ((o.float() - ref).norm() / ref.norm()).item())
                    total += cuda_ms(step) * count
        except Exception as e:  # a backend that refuses these shapes is a result too
            note = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        row = dict(unit="Temp-Attn attention", case=case, variant=name)
        row.update(dict(error=note) if note else dict(ms=round(total, 2), rel_err_vs_fp32=round(err, 4)))
        emit(row)
        out.append(row)
    return out


def conv3d_as_gemm(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A ``(k, 1, 1)`` Conv3d with frame padding k//2 on ``[B, C, F, H, W]`` as one GEMM over the k
    neighbouring frames' channels (channels-last: the frames' channel vectors are contiguous)."""
    _, _, frames, _, _ = v.shape
    k = weight.shape[2]
    t = F.pad(v.permute(0, 2, 3, 4, 1), (0, 0, 0, 0, 0, 0, k // 2, k // 2))  # [B, F+k-1, H, W, C]
    cols = torch.cat([t[:, i : i + frames] for i in range(k)], dim=-1)  # [B, F, H, W, k*C]
    w = weight[..., 0, 0].permute(0, 2, 1).reshape(weight.shape[0], -1)  # [Co, k*Ci], frame-major like cols
    return F.linear(cols, w, bias).permute(0, 4, 1, 2, 3)


class TempConvGemm(TempConv):
    """Candidate: :class:`TempConv` with its Conv3d computed by :func:`conv3d_as_gemm`."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        v = x.view(bf // num_frames, num_frames, c, h, w).transpose(1, 2)
        for layer in self.convs:
            v = conv3d_as_gemm(v, layer.weight, layer.bias) if isinstance(layer, torch.nn.Conv3d) else layer(v)
        return x + v.transpose(1, 2).reshape(bf, c, h, w)


def channel_stats(module: torch.nn.Module) -> torch.nn.Module:
    use_channel_stats_group_norm(module)
    return module


TEMP_CONV_VARIANTS = {
    "cuDNN Conv3d": lambda c: TempConv(c),
    "Conv3d as one GEMM": lambda c: TempConvGemm(c),
    "channel-stats GroupNorm + Conv3d": lambda c: channel_stats(TempConv(c)),
    "channel-stats GroupNorm + GEMM": lambda c: channel_stats(TempConvGemm(c)),
}


class FrozenResNet(torch.nn.Module):
    """SD's ResNet block (frozen in training: only the input needs a gradient) with a fixed time embedding."""

    def __init__(self, c: int):
        super().__init__()
        from diffusers.models.resnet import ResnetBlock2D

        self.block = ResnetBlock2D(in_channels=c, out_channels=c, temb_channels=1280)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.block(x, self.temb[: x.shape[0]])


RESNET_VARIANTS = {
    "ResNet, GroupNorm": lambda c: FrozenResNet(c),
    "ResNet, channel-stats GroupNorm": lambda c: channel_stats(FrozenResNet(c)),
}


def bench_units(case: str, unit: str, variants: dict[str, Callable], profile: bool) -> list[dict]:
    """Each variant of a ``(x [B*F, C, h, w], frames) -> same`` unit, compiled, summed over the UNet's levels."""
    b, f, backward = CASES[case]
    out = []
    for name, build in variants.items():
        total, err = 0.0, 0.0
        for c, hw, count in CONV_LEVELS:
            torch.manual_seed(0)
            ref_mod = build(c).cuda()
            if isinstance(ref_mod, FrozenResNet):
                ref_mod.temb = torch.randn(b * f, 1280, device="cuda")
            ref_mod = reference_of(ref_mod)
            mod = build(c).cuda()
            mod.load_state_dict(ref_mod.state_dict())
            if isinstance(mod, FrozenResNet):
                mod.temb = ref_mod.temb.bfloat16()
            mod = mod.bfloat16()
            for p in mod.parameters():
                if p.dim() in (4, 5):
                    fmt = torch.channels_last if p.dim() == 4 else torch.channels_last_3d
                    p.data = p.data.contiguous(memory_format=fmt)
                p.requires_grad_(backward and not isinstance(mod, FrozenResNet))
            side = int(hw**0.5)
            x = torch.randn(b * f, c, side, side, device="cuda").contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                ref = ref_mod(x, f)
            xb = x.bfloat16().requires_grad_(backward)
            step = partial(module_step, torch.compile(mod, dynamic=False), xb, f, torch.randn_like(xb), backward)
            with torch.set_grad_enabled(backward):
                o = step()
                err = max(err, ((o.float() - ref).norm() / ref.norm()).item())
                total += cuda_ms(step) * count
                if profile and c == CONV_LEVELS[0][0]:
                    print(f"--- {unit}: {name}, {case}, level 0")
                    print_kernels(step)
        row = dict(unit=unit, case=case, variant=name, ms=round(total, 2), rel_err_vs_fp32=round(err, 4))
        emit(row)
        out.append(row)
    return out


def reference_of(mod: torch.nn.Module) -> torch.nn.Module:
    """The unit in fp32 with the plain GroupNorm; temporal output layers perturbed from zero so they count."""
    for m in mod.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.__class__ = torch.nn.GroupNorm
    with torch.no_grad():
        for p in mod.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return mod


COPY_OPS = ("aten::contiguous", "aten::_to_copy", "aten::copy_", "aten::clone")


def print_kernels(step: Callable, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=70))
    copies = [e for e in prof.key_averages(group_by_input_shape=True) if e.key in COPY_OPS]
    for e in sorted(copies, key=lambda e: -e.device_time_total):
        print(f"{e.key} x{e.count} {e.device_time_total / 1e3:.3f} ms {e.input_shapes}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--units", default="attention,conv,resnet", help="which units: attention, conv, resnet")
    ap.add_argument("--cases", default=",".join(CASES), help=f"from {list(CASES)}")
    ap.add_argument("--profile", action="store_true", help="top kernels of each conv/resnet variant at level 0")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    torch._dynamo.config.recompile_limit = 256  # one compile per unit, level and case
    rows = []
    for case in args.cases.split(","):
        if "attention" in args.units:
            rows += bench_attention(case)
        if "conv" in args.units:
            rows += bench_units(case, "Temp-Conv", TEMP_CONV_VARIANTS, args.profile)
        if "resnet" in args.units:
            rows += bench_units(case, "ResNet", RESNET_VARIANTS, args.profile)
    write_results(args.json, rows)


if __name__ == "__main__":
    main()
