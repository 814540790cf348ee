"""What every benchmark shares: one timer (wall clock, CUDA-synchronised when asked), the ways a figure is taken
from it (best of, median of, items per second, CUDA-event means), GPU kernel time and FLOP counts, the bf16
matmul limit, the environment record, JSON rows, and the peer models. Run a benchmark as
``python -m benchmarks.NAME`` from the repository root."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The ModelScope text-to-video UNet (diffusers' UNet3DConditionModel), the peer every UNet figure stands beside.
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


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


class Timer:
    """``with Timer(cuda=True) as t: ...`` then ``t.seconds``: wall time of the block, with the GPU's queued work
    finished at both ends when ``cuda``."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.seconds = float("nan")

    def __enter__(self) -> Timer:
        _sync(self.cuda)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.cuda)
        self.seconds = time.perf_counter() - self._t0


def once(fn: Callable[[], object], cuda: bool = False) -> float:
    """Seconds of one call (a first call: compiling, capturing, loading included)."""
    with Timer(cuda) as t:
        fn()
    return t.seconds


def best_of(fn: Callable[[], object], runs: int = 3, warmup: int = 1, cuda: bool = False) -> float:
    """Fewest seconds of ``runs`` calls after ``warmup`` calls (host jitter only ever adds time)."""
    for _ in range(warmup):
        fn()
    return min(once(fn, cuda) for _ in range(runs))


def median_of(fn: Callable[[], object], runs: int = 7, cuda: bool = False) -> float:
    """Median seconds of ``runs`` calls, none discarded (for whole processes, where the first run is the point)."""
    return statistics.median(once(fn, cuda) for _ in range(runs))


def per_second(fn: Callable[[], object], items: int, warmup: int = 1, cuda: bool = False) -> float:
    """Items per second of one call of ``fn`` that handles ``items`` items, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    return items / once(fn, cuda)


def cuda_mean(fn: Callable[[], object], warmup: int = 3, iters: int = 10, repeats: int = 3) -> float:
    """Seconds per call on the GPU's clock: the best of ``repeats`` means over ``iters`` back-to-back calls."""
    import torch

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


def gpu_seconds(fn: Callable[[], object]) -> float:
    """Sum of the GPU kernel times of one call (what the call costs the GPU, host launch gaps excluded)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / 1e6


def flops_of(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def matmul_peak() -> float:
    """TFLOP/s of a bf16 8192^3 matmul on this GPU: the limit TFLOP/s figures are divided by."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    return 2 * 8192**3 / cuda_mean(lambda: a @ b, 3, 10) / 1e12


def peer_unet3d(dtype: Any = None, device: str = "cuda"):
    """diffusers' ``UNet3DConditionModel`` in the ModelScope configuration, random weights, and its call as
    ``fwd(x, t, context)``."""
    import torch
    from diffusers import UNet3DConditionModel

    with torch.device(device):
        m = UNet3DConditionModel(**MODELSCOPE)
    m = m.to(dtype or torch.bfloat16)
    return m, lambda x, t, c: m(x, t, encoder_hidden_states=c).sample


PROMPT = "a corgi running on the beach at sunset"


def vidrd_components(layout: str = "official"):
    """A full-size VidRD (SD 2.1 shapes: UNet, temporal VAE, OpenCLIP-H text tower) with random weights on the GPU;
    a character tokenizer stands in for CLIP's (the work per token is the same)."""
    import tempfile

    import torch
    from transformers import CLIPTextModel

    from training.model.loading import SDComponents, openclip_text_config
    from training.model.sampling_defaults import sd_scheduler_config
    from training.model.text_encoder import FrozenTextEncoder
    from training.model.tiny import write_char_tokenizer
    from training.model.unet import VidRDUNet
    from training.model.vae import TemporalVAE

    tok = write_char_tokenizer(Path(tempfile.mkdtemp()) / "tok")
    with torch.device("cuda"):
        unet = VidRDUNet(sample_size=32, layout=layout)
        vae = TemporalVAE(sample_size=256)
        text = CLIPTextModel(openclip_text_config())
    return SDComponents(unet, vae, FrozenTextEncoder(tok, text.to(torch.bfloat16)), sd_scheduler_config("v_prediction"),
                        "v_prediction")  # fmt: skip


def save_random_checkpoint(folder: Path, tiny: bool = False) -> None:
    """A VidRD checkpoint folder with random weights: full size (:func:`vidrd_components`, on the GPU) or the
    tests' tiny model (its tokenizer files beside ``folder``)."""
    from training.model.loading import save_vidrd

    if tiny:
        from training.model.tiny import tiny_components

        comps = tiny_components(str(folder.parent / "tiny-parts"))
    else:
        comps = vidrd_components()
    save_vidrd(str(folder), comps)


def run_vidrd(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``python -m vidrd.cli ARGS`` in a fresh process from the repository root: (seconds from start to exit,
    stdout + stderr); a failure raises with the output's tail."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vidrd.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ, **(env or {})})  # fmt: skip
    wall = time.perf_counter() - t0
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"vidrd {' '.join(args)} failed ({done.returncode}):\n{out[-4000:]}")
    return wall, out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(**extra: Any) -> dict[str, Any]:
    """Where and when a figure was measured: date, machine, Python, library versions, GPU, commit."""
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": _git_commit(),
    }
    for name in ("torch", "diffusers", "transformers", "ray"):
        mod = sys.modules.get(name)
        if mod is not None:
            env[name] = getattr(mod, "__version__", None)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
    return {**env, **extra}


def emit(row: dict[str, Any]) -> None:
    """Print one result row as a JSON line as soon as it is measured (a long run shows progress)."""
    print(json.dumps(row), flush=True)


def write_results(path: str | Path | None, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """``{"env": environment(**extra), "rows": rows}``, printed and written to ``path`` when given."""
    result = {"env": environment(**extra), "rows": rows}
    print(json.dumps(result["env"]))
    if path:
        Path(path).write_text(json.dumps(result, indent=2))
    return result
