"""Whether a UNet's training step is bound by the host or by the GPU, measured without a GPU.

Eager PyTorch pays a fixed host cost for every operator it dispatches (and, on a GPU, launches), whatever the tensor
sizes. This benchmark takes a UNet config (``examples.learn_video.SMALL_UNET`` unless a JSON file is given) and
reports, for one forward and backward at the training batch:

* ``ops``: aten operators dispatched (counted with a ``TorchDispatchMode``), the kernel launches' lower bound;
* ``host_ms``: the same operator graph (within 1%: autograd's bookkeeping varies a little) run on tensors too small
  to compute anything (every width cut to 32 channels, 8x8 latents, 2 frames, one clip), the host's time for it on
  this machine;
* ``tflop``: the real step's floating-point work (``torch.utils.flop_counter``), and ``saved_gib``: the activations
  autograd keeps for the backward, in fp32 (bf16 autocast keeps about half).

A measured GPU step much longer than what ``tflop`` needs at the GPU's rate but near ``host_ms`` (plus the other
parts of the step) is host-bound: a larger batch then costs little time, and fewer operators (compiling) pay.

    python -m benchmarks.bench_step_host [--batch 64] [--frames 16] [--latent 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import emit, write_results


class OpCount(TorchDispatchMode):
    """Counts the aten operators dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def fwd_bwd(unet: torch.nn.Module, batch: int, frames: int, latent: int, context: int) -> None:
    """One forward and backward of ``unet`` on random inputs (the v/eps target does not change the operators)."""
    x = torch.randn(batch, unet.config.in_channels, frames, latent, latent)
    t = torch.randint(0, 1000, (batch,))
    ctx = torch.randn(batch, 8, context)
    out = unet(x, t, ctx)
    (out.sample if hasattr(out, "sample") else out).float().mean().backward()


def small_widths(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every width cut to 32 channels and one head: the same operators, next to no arithmetic."""
    levels = len(config["block_out_channels"])
    return dict(config, block_out_channels=(32,) * levels, attention_head_dim=(1,) * levels, cross_attention_dim=8)


def measure(config: dict[str, Any], batch: int, frames: int, latent: int, repeats: int = 10) -> dict[str, Any]:
    """The figures above for one UNet config."""
    from training.model.unet import VidRDUNet

    torch.manual_seed(0)
    tiny = VidRDUNet(**small_widths(config)).train()
    for _ in range(3):
        fwd_bwd(tiny, 1, 2, 8, 8)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fwd_bwd(tiny, 1, 2, 8, 8)
        times.append(time.perf_counter() - t0)
    counter = OpCount()
    with counter:
        fwd_bwd(tiny, 1, 2, 8, 8)
    unet = VidRDUNet(**config).train()
    context = unet.config.cross_attention_dim
    with FlopCounterMode(display=False) as flops:  # two clips, scaled: the work is linear in the batch
        fwd_bwd(unet, 2, frames, latent, context)
    saved = 0

    def keep(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        x = torch.randn(1, unet.config.in_channels, frames, latent, latent)
        unet(x, torch.randint(0, 1000, (1,)), torch.randn(1, 8, context))
    return {
        "ops": counter.ops,
        "host_ms": round(1000 * sorted(times)[len(times) // 2], 1),
        "params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 2),
        "batch": batch,
        "tflop": round(flops.get_total_flops() / 2 * batch / 1e12, 2),
        "saved_gib": round(saved * batch / 2**30, 1),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="a UNet config as JSON (default: examples.learn_video.SMALL_UNET)")
    ap.add_argument("--batch", type=int, default=64, help="clips per training step (default 64)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--latent", type=int, default=16, help="latent side in pixels (default 16: 64 px through 4x)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    for name in ("batch", "frames", "latent"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.config is None:
        from examples.learn_video import SMALL_UNET

        config = dict(SMALL_UNET)
    else:
        try:
            config = json.loads(a.config.read_text())
        except (OSError, ValueError) as e:
            ap.error(f"--config {a.config}: not a readable JSON UNet config ({e})")
    rows = [measure(config, a.batch, a.frames, a.latent)]
    emit(rows[-1])
    write_results(a.json, rows, config=str(a.config or "examples.learn_video.SMALL_UNET"))
    return rows


if __name__ == "__main__":
    main()
