"""Where a training step's time goes: ``torch.profiler`` over a window of steps of a real ``vidrd train fit``.

    vidrd train fit --config ... --trainer.callbacks+ '{class_path: training.step_profile.StepProfile,
                                                      init_args: {dirpath: prof, start: 30, steps: 5}}'

writes ``prof/step_profile.json`` (per step: wall time, GPU kernel time, GPU busy time, kernel launches, host
waits for the GPU) and ``prof/step_profile.txt`` (those figures and the top ops by GPU and by host time), and with
``trace: true`` the Chrome trace (``trace.json.gz``, for chrome://tracing or Perfetto). A step whose GPU busy time
is well under its wall time is waiting on the host: launches, Python, or a host wait the ``host_waits`` count
shows. The profiler adds host time per op, so wall times here are longer than without it.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

logger = logging.getLogger(__name__)

GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")
HOST_WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def trace_figures(events: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Per-step figures from Chrome-trace events: GPU kernel time (summed), GPU busy time (union of kernel, copy
    and memset intervals), kernel launches, and the host's waits for the GPU (count and time)."""
    work = sorted((e for e in events if e.get("cat") in GPU_WORK and "dur" in e), key=lambda e: e["ts"])
    busy, start, end = 0.0, None, None
    for e in work:
        s, t = e["ts"], e["ts"] + e["dur"]
        if end is None or s > end:
            busy += 0.0 if end is None else end - start
            start, end = s, t
        else:
            end = max(end, t)
    busy += 0.0 if end is None else end - start
    kernels = [e for e in work if e["cat"] == "kernel"]
    waits = [e for e in events if e.get("cat") == "cuda_runtime" and e.get("name") in HOST_WAITS and "dur" in e]
    per = 1000.0 * steps  # trace times are microseconds
    return {
        "gpu_kernel_ms": round(sum(e["dur"] for e in kernels) / per, 3),
        "gpu_busy_ms": round(busy / per, 3),
        "launches": round(len(kernels) / steps, 1),
        "host_waits": round(len(waits) / steps, 2),
        "host_wait_ms": round(sum(e["dur"] for e in waits) / per, 3),
    }


class StepProfile(L.Callback):
    """Profiles training steps ``start`` .. ``start + steps - 1`` (0-based batch indices) on global rank 0."""

    def __init__(self, dirpath: str = "step_profile", start: int = 30, steps: int = 5, trace: bool = False):
        if start < 0 or steps < 1:
            raise ValueError(f"StepProfile: start >= 0 and steps >= 1, got start={start}, steps={steps}")
        self.dirpath, self.start, self.steps, self.trace = Path(dirpath), start, steps, trace
        self._prof: profile | None = None
        self._t0 = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:  # an unwritable folder fails here, not after the steps before the window
            self.dirpath.mkdir(parents=True, exist_ok=True)

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if idx != self.start or not trainer.is_global_zero:
            return
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pl_module.device.type == "cuda" else [])
        self._sync(pl_module)
        self._prof = profile(activities=activities)
        self._prof.__enter__()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, idx: int):
        if self._prof is None or idx != self.start + self.steps - 1:
            return
        self._sync(pl_module)
        wall = time.perf_counter() - self._t0
        prof, self._prof = self._prof, None
        prof.__exit__(None, None, None)
        self.write(prof, wall)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._prof is not None:  # the fit ended inside the window: say so rather than write partial figures
            self._prof.__exit__(None, None, None)
            self._prof = None
            logger.warning("StepProfile: the fit ended before step %d; nothing written", self.start + self.steps)

    def write(self, prof: profile, wall: float) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            raw = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(raw)
            with open(raw) as f:
                events = json.load(f)["traceEvents"]
            if self.trace:
                with open(raw, "rb") as f, gzip.open(self.dirpath / "trace.json.gz", "wb") as g:
                    shutil.copyfileobj(f, g)
        figures = {"steps": self.steps, "first_step": self.start, "wall_ms": round(1000 * wall / self.steps, 2)}
        figures |= trace_figures(events, self.steps)
        (self.dirpath / "step_profile.json").write_text(json.dumps(figures, indent=1) + "\n")
        ka = prof.key_averages()
        sort_gpu = "self_device_time_total" if figures["launches"] else "self_cpu_time_total"
        lines = [f"{k}: {v}" for k, v in figures.items()]
        for title, key in (("top ops by GPU time", sort_gpu), ("top ops by host time", "self_cpu_time_total")):
            lines += ["", f"== {title} ({self.steps} steps)", ka.table(sort_by=key, row_limit=30)]
        (self.dirpath / "step_profile.txt").write_text("\n".join(lines) + "\n")
        logger.info("StepProfile: %s -> %s", figures, self.dirpath)
