"""Steady time per video of ``vidrd generate``'s pipeline for each ``--fast`` mode, beside diffusers'
``TextToVideoSDPipeline`` eager and compiled, in one process on one GPU
(the steady-video figure in `benchmarks/RESULTS.md`).

Every row makes the same video: one prompt, 16 frames at 256x256, 50 DDIM steps, CFG w = 10, text encoding and
VAE decode included (the prompt's embedding is dropped between videos, so each video encodes its text). The first
video of each row (compiling, capturing, autotuning) is reported apart; ``steady_s`` is the median of the next
``--videos``. Random weights at full size: VidRD with SD 2.1 shapes (``benchmarks.common.vidrd_components``);
the peer is ``TextToVideoSDPipeline`` with the ModelScope ``UNet3DConditionModel`` (``benchmarks.common``) and the
same VAE and text encoder, compiled the way its documentation shows (``pipe.unet = torch.compile(pipe.unet)``).
The peer runs first, so VidRD's in-place fast paths (regional compile of the VAE) cannot reach it. ``auto`` is a
policy, not a path: its rows say which path it picks for one video and for a hundred, with this machine's cache.

    python -m benchmarks.bench_steady_video [--videos 3] [--json out.json] [--tiny]

``--tiny`` runs every row with the tests' tiny models on the CPU (a check of this script, not a figure; the peer is
"compiled" with torch.compile's eager backend there).
"""

from __future__ import annotations

import argparse
import gc
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from benchmarks.common import PROMPT, emit, once, write_results

FRAMES, SIZE, STEPS, GUIDANCE = 16, 256, 50, 10.0
MODES = ("off", "graphs", "compile")
TINY = dict(frames=4, size=32, steps=3)
# Targets set for the steady video (16 frames, 50 steps, CFG, decode) on one H200.
TARGET_SECONDS, TARGET_VS_EAGER, TARGET_VS_COMPILED = 1.2, 3.0, 1.9


def tiny_peer_unet(cross_attention_dim: int) -> torch.nn.Module:
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=cross_attention_dim,
    )  # fmt: skip


def components(tiny: bool):
    if tiny:
        import tempfile

        from training.model.tiny import tiny_components

        return tiny_components(tempfile.mkdtemp())
    from benchmarks.common import vidrd_components

    return vidrd_components()


def timed(run: Callable[[], Any], videos: int, cuda: bool) -> dict[str, Any]:
    """The first call apart, then the median of ``videos`` more."""
    first = once(run, cuda=cuda)
    times = [once(run, cuda=cuda) for _ in range(videos)]
    return {"first_video_s": round(first, 2), "steady_s": round(statistics.median(times), 3), "videos": videos}


def release(device: str) -> None:
    """Give the memory of a finished row back before the next one builds its models."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def peer_video(pipe, shape: dict[str, int], device: str) -> None:
    g = torch.Generator(device).manual_seed(0)
    pipe(PROMPT, num_frames=shape["frames"], height=shape["size"], width=shape["size"], generator=g,
         num_inference_steps=shape["steps"], guidance_scale=GUIDANCE, output_type="np")  # fmt: skip


def vidrd_video(pipe, settings) -> None:
    from inference.prompts import VideoRequest

    pipe._emb.clear()  # each video encodes its prompt, as the peer's call does
    for _ in pipe.generate([VideoRequest([PROMPT], seed=0)], settings, progress=False):
        pass


def peer_rows(shape: dict[str, int], videos: int, device: str, dtype: torch.dtype, tiny: bool) -> list[dict]:
    from diffusers import DDIMScheduler, TextToVideoSDPipeline

    from benchmarks.common import peer_unet3d
    from training.model.sampling_defaults import sd_scheduler_config

    comps = components(tiny)
    text = comps.text_encoder
    # The stand-in character tokenizer has no length limit; CLIP's is 77, what the peer pads every prompt to.
    text.tokenizer.model_max_length = text.model.config.max_position_embeddings
    unet = tiny_peer_unet(text.model.config.hidden_size) if tiny else peer_unet3d(dtype, device)[0]
    pipe = TextToVideoSDPipeline(
        vae=comps.vae.vae, text_encoder=text.model, tokenizer=text.tokenizer, unet=unet,
        scheduler=DDIMScheduler.from_config(sd_scheduler_config("epsilon")),
    ).to(device, dtype)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    run = partial(peer_video, pipe, shape, device)
    rows = []
    for compiled in (False, True):
        if compiled:  # --tiny: torch.compile's eager backend, the code path without minutes of CPU compiling
            pipe.unet = torch.compile(pipe.unet, backend="eager" if tiny else "inductor")
        row = {"model": "peer: diffusers TextToVideoSDPipeline", "mode": "compiled" if compiled else "eager",
               **timed(run, videos, device == "cuda")}  # fmt: skip
        emit(row)
        rows.append(row)
    del pipe, run, unet, comps
    release(device)
    return rows


def vidrd_rows(shape: dict[str, int], videos: int, device: str, dtype: torch.dtype, tiny: bool) -> list[dict]:
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from training.model.fast_paths import FastPaths

    n = shape["frames"]
    settings = GenerationSettings(frames=n, steps=shape["steps"], guidance=GUIDANCE, height=shape["size"],
                                  width=shape["size"], long=LongVideoConfig(n, n // 2, 1.0, 1.0))  # fmt: skip
    rows = []
    for mode in MODES:  # fresh modules per mode: the fast paths change them in place
        pipe = VidRDPipeline(components(tiny), device, dtype, fast=FastPaths.for_mode(mode, device))
        row = {"model": "VidRD pipeline", "mode": mode,
               **timed(partial(vidrd_video, pipe, settings), videos, device == "cuda")}  # fmt: skip
        emit(row)
        rows.append(row)
        del pipe
        release(device)
    return rows


def auto_rows(device: str) -> list[dict]:
    from inference.fast_mode import cache_state, choose

    rows = []
    for clips in (1, 100):
        _, why = choose("auto", device, clips)
        rows.append({"model": "VidRD pipeline", "mode": "auto", "clips": clips, "cache": cache_state(device),
                     "picks": why.split(" ")[2], "line": why})  # fmt: skip
        emit(rows[-1])
    return rows


def verdict(rows: list[dict]) -> dict[str, Any]:
    """The fastest VidRD path's steady video against the targets and the peer measured in the same run."""
    steady = {(r["model"].split(":")[0], r["mode"]): r["steady_s"] for r in rows if "steady_s" in r}
    best = min(v for (m, _), v in steady.items() if m == "VidRD pipeline")
    eager, compiled = steady[("peer", "eager")], steady[("peer", "compiled")]
    out = {
        "best_vidrd_steady_s": best,
        "vs_peer_eager": round(eager / best, 2),
        "vs_peer_compiled": round(compiled / best, 2),
        "targets": {
            f"steady <= {TARGET_SECONDS} s": best <= TARGET_SECONDS,
            f">= {TARGET_VS_EAGER}x peer eager": eager / best >= TARGET_VS_EAGER,
            f">= {TARGET_VS_COMPILED}x peer compiled": compiled / best >= TARGET_VS_COMPILED,
        },
    }
    emit(out)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_steady_video", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--videos", type=int, default=3, help="timed videos per row after the first (default 3)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the script, measures nothing")
    a = ap.parse_args(argv)
    device = "cpu" if a.tiny or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not a.tiny:
        ap.error("needs a CUDA GPU (or --tiny for a CPU check of the script)")
    dtype = torch.float32 if a.tiny else torch.bfloat16
    shape = TINY if a.tiny else dict(frames=FRAMES, size=SIZE, steps=STEPS)
    rows = peer_rows(shape, a.videos, device, dtype, a.tiny)
    rows += vidrd_rows(shape, a.videos, device, dtype, a.tiny)
    rows += auto_rows(device)
    summary = verdict(rows)
    write_results(a.json, rows, shape=shape, summary=summary)
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
