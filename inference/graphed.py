"""CUDA graphs for the sampling loop: one captured call per input shape, replayed at every step.

A 16-frame CFG call of the full-size UNet launches ~2,000 kernels; in eager mode the host needs about as long to
launch them as the GPU needs to run them (measured in ``benchmarks/RESULTS.md``). Sampling repeats the same
shapes 50 times per clip, so the pipeline captures the whole guided DDIM step (``inference.sampler.GuidedStep``:
UNet, guidance mix and update) once and replays it: the host cost per step becomes a few small copies and one
graph launch, and the GPU runs the step's kernels back to back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor | None, ...]
    output: torch.Tensor


def _signature(a: torch.Tensor | None) -> tuple | None:
    return None if a is None else (tuple(a.shape), a.dtype, a.device)


class CUDAGraphed:
    """Wraps ``fn(*tensors) -> tensor`` (arguments may be None) so that CUDA calls replay a captured graph.

    Inputs are copied into static buffers and the output is copied out, so callers see ordinary tensors.
    Each new combination of shapes/dtypes (and of None arguments) is warmed up (which also triggers any
    ``torch.compile``) and captured on first use; all graphs share one memory pool. Calls whose first
    argument is not on a CUDA device go straight through. ``fn`` must not change between calls (weights
    are read in place, so loading new weights with ``copy_`` is fine; replacing parameter tensors is not).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], warmup: int = 2):
        self.fn = fn
        self.warmup = warmup
        self._graphs: dict[tuple, _Captured] = {}
        self._pool = None

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def __call__(self, *args: torch.Tensor | None) -> torch.Tensor:
        if args[0].device.type != "cuda":
            return self.fn(*args)
        args = tuple(None if a is None else torch.as_tensor(a, device=args[0].device) for a in args)
        key = tuple(_signature(a) for a in args)
        cap = self._graphs.get(key)
        if cap is None:
            cap = self._graphs[key] = self._capture(args)
        for static, a in zip(cap.inputs, args, strict=True):
            if static is not None:
                static.copy_(a)
        cap.graph.replay()
        return cap.output.clone()

    def _capture(self, args: tuple[torch.Tensor | None, ...]) -> _Captured:
        static = tuple(None if a is None else a.clone() for a in args)
        device = args[0].device
        # Warm-up on a side stream, as CUDA graph capture requires: lazy initialisation (cuBLAS handles,
        # cuDNN plans, compiled kernels, cached position encodings) must happen before capture.
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static)
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self.fn(*static)
        return _Captured(graph, static, out)
