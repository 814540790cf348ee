"""CUDA graphs: a call captured once per input shape and replayed, for work that repeats one shape.

A 16-frame CFG call of the full-size UNet launches ~2,000 kernels; in eager mode the host needs about as long to
launch them as the GPU needs to run them (measured in ``benchmarks/RESULTS.md``). Sampling repeats the same
shapes 50 times per clip, so the pipeline captures the whole guided DDIM step (``inference.sampler.GuidedStep``:
UNet, guidance mix and update) once and replays it: the host cost per step becomes a few small copies and one
graph launch, and the GPU runs the step's kernels back to back. Training replays the frozen text encoder the same
way (``training.model.text_encoder``): ~560 launches a step for 3 ms of GPU work at full size.
"""

from __future__ import annotations

import contextlib
import warnings
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


def _autocast_state() -> tuple[bool, torch.dtype | None]:
    on = torch.is_autocast_enabled("cuda")
    return on, torch.get_autocast_dtype("cuda") if on else None


def _autocast_like(state: tuple[bool, torch.dtype | None]) -> contextlib.AbstractContextManager:
    # Without the weight-cast cache: cached casts made during capture would be freed when the caller's autocast
    # region ends while the graph still reads them (torch.cuda.make_graphed_callables has the same rule).
    on, dtype = state
    return torch.autocast("cuda", dtype=dtype, cache_enabled=False) if on else contextlib.nullcontext()


class CUDAGraphed:
    """Wraps ``fn(*tensors) -> tensor`` (arguments may be None) so that CUDA calls replay a captured graph.

    Inputs are copied into static buffers and the output is copied out, so callers see ordinary tensors.
    Each new combination of shapes/dtypes (and of None arguments), autocast state and inference mode is warmed
    up (which also triggers any ``torch.compile``) and captured on first use; all graphs share one memory pool.
    Calls whose first argument is not on a CUDA device go straight through. ``fn`` must not change between calls
    (weights are read in place, so loading new weights with ``copy_`` is fine; replacing parameter tensors is
    not), and must not need gradients. With ``eager_on_failure`` a call that cannot be captured (a host sync
    inside ``fn``, say) warns once and runs eagerly from then on; otherwise the error is raised.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], warmup: int = 2, eager_on_failure: bool = False):
        self.fn = fn
        self.warmup = warmup
        self.eager_on_failure = eager_on_failure
        self._graphs: dict[tuple, _Captured] = {}
        self._pool = None
        self._failed = False

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def __call__(self, *args: torch.Tensor | None) -> torch.Tensor:
        if args[0].device.type != "cuda" or self._failed:
            return self.fn(*args)
        args = tuple(None if a is None else torch.as_tensor(a, device=args[0].device) for a in args)
        autocast = _autocast_state()
        key = (*(_signature(a) for a in args), autocast, torch.is_inference_mode_enabled())
        cap = self._graphs.get(key)
        if cap is None:
            try:
                cap = self._graphs[key] = self._capture(args, autocast)
            except Exception as exc:
                if not self.eager_on_failure:
                    raise
                self._failed = True
                warnings.warn(f"CUDA graph capture failed, running eagerly: {exc}", RuntimeWarning, stacklevel=2)
                return self.fn(*args)
        for static, a in zip(cap.inputs, args, strict=True):
            if static is not None:
                static.copy_(a)
        cap.graph.replay()
        return cap.output.clone()

    def _capture(self, args: tuple[torch.Tensor | None, ...], autocast: tuple[bool, torch.dtype | None]) -> _Captured:
        static = tuple(None if a is None else a.clone() for a in args)
        device = args[0].device
        # Warm-up on a side stream, as CUDA graph capture requires: lazy initialisation (cuBLAS handles,
        # cuDNN plans, compiled kernels, cached position encodings) must happen before capture.
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), _autocast_like(autocast):
            for _ in range(self.warmup):
                self.fn(*static)
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), _autocast_like(autocast):
            out = self.fn(*static)
        return _Captured(graph, static, out)
