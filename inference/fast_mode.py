"""Which sampling fast path pays for the work asked (``vidrd generate --fast auto|compile|graphs|off``).

Compiling makes each 50-step clip faster but costs time before the first one; CUDA graphs cost nothing up front.
``auto`` compiles only when the clips to make repay the compile, with these measured constants (16 frames at
256x256, 50 DDIM steps, CFG 10; ``benchmarks/RESULTS.md``, "Start fast"):

* per clip, steady (H100 lever series): plain eager 3.25 s, CUDA graphs 2.10 s, compiled + graphs 1.26 s:
  compiling saves 0.84 s a clip against graphs alone;
* before the first clip (H200, ``benchmarks/bench_first_video.py``, a fresh process each): the first video takes
  139.6 s compiled with an empty cache and 24.5 s with the compiled kernels on disk
  (``training.model.compile_cache``), against 7.8 s with CUDA graphs alone: 131.8 s and 16.7 s of compiling.

Break-even: 16.7 / 0.84 = 20 clips with a warm cache, 131.8 / 0.84 = 157 with a cold one. A clip here is 50
denoising steps of one video's clip (a 61-frame long video is 4 clips; 25 steps are half a clip).
"""

from __future__ import annotations

import torch

from inference.choices import FAST_MODES
from training.model.compile_cache import cache_root, compile_folder
from training.model.fast_paths import FastPaths

CLIP_SECONDS = {"off": 3.25, "graphs": 2.10, "compile": 1.26}
COMPILE_SECONDS = {"cold": 131.8, "warm": 16.7}


def break_even_clips(cache_state: str) -> int:
    """Clips after which compiling has paid for itself against CUDA graphs alone."""
    saved = CLIP_SECONDS["graphs"] - CLIP_SECONDS["compile"]
    return int(-(-COMPILE_SECONDS["warm" if cache_state == "warm" else "cold"] // saved))


def cache_state(device: torch.device | str) -> str:
    """``warm`` when this machine's keyed compile folder already holds artifacts, else ``cold`` (not created)."""
    folder = compile_folder(device)
    return "warm" if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")) else "cold"


def choose(mode: str, device: torch.device | str, clips: float) -> tuple[FastPaths, str]:
    """The fast paths for ``mode`` and ``clips`` (50-step clip equivalents), and one line saying why."""
    if mode not in FAST_MODES:
        raise ValueError(f"--fast {mode!r}: one of {', '.join(FAST_MODES)}")
    if torch.device(device).type != "cuda":
        note = "" if mode in ("auto", "off") else f"; --fast {mode} is a no-op off CUDA"
        return FastPaths.off(), f"fast path: off ({torch.device(device).type}: the fast paths are CUDA only{note})"
    if mode != "auto":
        return FastPaths.for_mode(mode, device), f"fast path: {mode} (asked)"
    state = cache_state(device)
    need = break_even_clips(state)
    picked = "compile" if clips >= need else "graphs"
    why = (
        f"fast path: {picked} ({clips:g} clip(s) of 50 steps; compiling pays from {need} with a {state} compile "
        f"cache{', kept under ' + str(cache_root()) if picked == 'compile' else ''}; --fast compile|graphs|off)"
    )
    return FastPaths.for_mode(picked, device), why
