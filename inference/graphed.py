"""CUDA graphs for the sampling loop: one captured UNet call per input shape, replayed at every step.

A 16-frame CFG call of the full-size UNet launches ~2,000 kernels; in eager mode the host needs about as
long to launch them as the GPU needs to run them (``benchmarks/RESULTS.md``: 42.5 ms of GPU work in an
82.5 ms call). Sampling calls the UNet with the same shapes 50 times per clip, so the call is captured
once and replayed: the host cost per step becomes three small copies and one graph launch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.sampler import Denoiser


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    output: torch.Tensor


class CUDAGraphDenoiser:
    """Wraps a denoiser ``(x, t, context) -> prediction`` so that CUDA calls replay a captured graph.

    Inputs are copied into static buffers and the output is copied out, so callers see ordinary tensors.
    Each new combination of shapes/dtypes is warmed up (which also triggers any ``torch.compile``) and
    captured on first use; all graphs share one memory pool. Calls on other devices go straight through.
    The wrapped denoiser must not change between calls (weights are read in place, so loading new
    weights with ``copy_`` is fine; replacing parameter tensors is not).
    """

    def __init__(self, denoiser: Denoiser, warmup: int = 2):
        self.denoiser = denoiser
        self.warmup = warmup
        self._graphs: dict[tuple, _Captured] = {}  # by (shape, dtype, device) of the three inputs
        self._pool = None

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            return self.denoiser(x, t, context)
        t = torch.as_tensor(t, device=x.device)
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in (x, t, context))
        cap = self._graphs.get(key)
        if cap is None:
            cap = self._graphs[key] = self._capture(x, t, context)
        for static, a in zip(cap.inputs, (x, t, context), strict=True):
            static.copy_(a)
        cap.graph.replay()
        return cap.output.clone()

    def _capture(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> _Captured:
        static = (x.clone(), t.clone(), context.clone())
        # Warm-up on a side stream, as CUDA graph capture requires: lazy initialisation (cuBLAS handles,
        # cuDNN plans, compiled kernels, cached position encodings) must happen before capture.
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.denoiser(*static)
        torch.cuda.current_stream(x.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self.denoiser(*static)
        return _Captured(graph, static, out)
