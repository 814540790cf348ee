"""``vidrd generate``: a long video (or a batch, or a story) from a VidRD checkpoint."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devices import DTYPE_NAMES, default_dtype, resolve_device, torch_dtype
from inference.choices import (
    CLIP_FRAMES,
    FAST_MODES,
    HOLDS,
    LONG_VIDEO_FRAMES,
    PAPER,
    PAPER_GUIDANCE,
    PAPER_SIZE,
    PAPER_STEPS,
    REUSES,
    SCHEDULES,
    SUFFIXES,
)
from inference.config_args import add_config_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd generate``."""
    p = sub.add_parser(
        "generate",
        help="generate a long video with FNR / PNS / DSG",
        description="Generate videos clip by clip (paper 4.3): N frames per clip, the last M guide the next clip "
        "(--schedule picks the paper's loop or the authors' released one). "
        "Frames are written to --out as each clip finishes. With several prompts (--prompts-file), one file per "
        "video: OUT's name gets _000, _001, ...",
    )
    p.add_argument("--checkpoint", required=True, help="VidRD checkpoint folder (unet/, vae/, text_encoder/, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="prompt; repeat for a story (one prompt per clip)")
    src.add_argument("--prompts-file", help=".txt (one video per line, clips split by ' | ') or .json")
    p.add_argument(
        "--frames", type=int, default=LONG_VIDEO_FRAMES, help=f"frames in the video (default {LONG_VIDEO_FRAMES})"
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=PAPER,
        help="long-video loop: 'paper' (eq. 6-8, seamless join; default) or 'official' (the authors' released "
        "pipeline: DSG on step indices, all N frames of every clip kept, per-frame VAE decode)",
    )
    p.add_argument("--clip-frames", type=int, default=CLIP_FRAMES, help=f"N: frames per clip (default {CLIP_FRAMES})")
    p.add_argument("--prompt-frames", type=int, help="M: prompt frames (default: paper 8, official 4)")
    p.add_argument("--alpha", type=float, help="PNS: weight of the reused noise (default: paper 1, official 4)")
    p.add_argument("--beta", type=float, help="DSG: share of guided denoising, 0..1 (default: paper 1, official 0.4)")
    p.add_argument(
        "--reuse",
        choices=REUSES,
        help="which frame of the previous clip each frame reuses: 'reversed' (the paper's FNR: frame j takes frame "
        "N-1-j, a mirror at the seam) or 'shifted' (the last M frames in their own order; each clip adds N-M "
        "frames; its defaults: alpha 0, hold finished, every prompt frame held, resample 3); paper schedule only; "
        "default: reversed",
    )
    p.add_argument(
        "--hold",
        choices=HOLDS,
        help="what DSG holds a prompt frame to: 'trajectory' (eq. 8: the previous clip's latents after the same "
        "step) or 'finished' (the previous clip's finished latents noised to the step's level); paper schedule "
        "only; default: trajectory ('finished' with --reuse shifted)",
    )
    p.add_argument(
        "--resample",
        type=int,
        help="passes of every step that holds a prompt frame (RePaint's resampling: each step is noised back and "
        "taken again, so the new frames agree with the held ones); default 1 (3 with --reuse shifted)",
    )
    p.add_argument(
        "--negative-prompt",
        default="",
        help="text of the unconditional branch (default: empty; the authors' evaluation used 'watermark')",
    )
    p.add_argument(
        "--decode",
        choices=("temporal", "frames"),
        help="VAE decode: 'temporal' (the fine-tuned temporal decoder over each clip) or 'frames' (each frame on "
        "its own, as the release's pipeline does); default: paper temporal, official frames",
    )
    p.add_argument("--steps", type=int, default=PAPER_STEPS, help=f"DDIM steps (paper: {PAPER_STEPS})")
    p.add_argument(
        "--guidance",
        type=float,
        default=PAPER_GUIDANCE,
        help=f"classifier-free guidance scale w (paper: {PAPER_GUIDANCE:g})",
    )
    p.add_argument(
        "--guidance-rescale",
        type=float,
        default=0.0,
        help="pull the guided output's spread back towards the conditional one by this share (0..1; Lin et al.'s "
        "0.7 for a zero-terminal-SNR model at a large guidance scale; default 0: plain CFG)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first video; video b uses seed + b")
    p.add_argument("--height", type=int, default=PAPER_SIZE)
    p.add_argument("--width", type=int, default=PAPER_SIZE)
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the output file")
    p.add_argument("--device", help="cuda or cpu (default: cuda when there is a GPU)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument(
        "--fast",
        choices=FAST_MODES,
        default="auto",
        help="sampling fast path on CUDA (same outputs within bf16 rounding): 'compile' (regional torch.compile, "
        "channels-last and CUDA graphs: fastest per clip, but the first clip waits for compiling: ~17 s with the "
        "compiled kernels cached under $VIDRD_CACHE, ~2 min without), 'graphs' (CUDA graphs only: no wait), 'off' "
        "(plain eager); 'auto' (default) compiles when the clips asked repay it (20 clips of 50 steps with a warm "
        "cache, 157 cold) and says which it picked",
    )
    p.add_argument("--no-fast", action="store_true", help="the same as --fast off")
    p.add_argument("--decode-chunk", type=int, help="decode this many frames at a time (bounds VAE memory)")
    p.add_argument("--out", required=True, help=f"output file, one of {', '.join(SUFFIXES)} (PNG: a frame strip)")
    add_config_arguments(p)
    p.set_defaults(func=run)


def out_paths(out: str, n: int) -> list[Path]:
    path = Path(out)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{b:03d}{path.suffix}") for b in range(n)]


def run(args: argparse.Namespace) -> int:
    from inference.fast_mode import choose as choose_fast
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from inference.prompts import PromptError, VideoRequest, read_prompts_file
    from inference.video_out import FrameSink
    from training.model.loading import WeightLoadError, check_checkpoint_folder

    device = resolve_device(args.device)
    dtype = torch_dtype(args.dtype) if args.dtype else default_dtype(device)
    try:
        requests = read_prompts_file(args.prompts_file) if args.prompts_file else [VideoRequest(list(args.prompt))]
        long = LongVideoConfig.for_schedule(
            args.schedule, args.clip_frames, args.prompt_frames, args.alpha, args.beta, args.reuse, args.hold,
            resample=args.resample,
        )
        settings = GenerationSettings(
            frames=args.frames, steps=args.steps, guidance=args.guidance, guidance_rescale=args.guidance_rescale,
            seed=args.seed, height=args.height,
            width=args.width, long=long, negative_prompt=args.negative_prompt,
            temporal_decode=None if args.decode is None else args.decode == "temporal",
        )  # fmt: skip
        if Path(args.out).suffix not in SUFFIXES:
            raise ValueError(f"--out must end in one of {SUFFIXES}")
        if args.decode_chunk is not None and args.decode_chunk < 1:
            raise ValueError(f"--decode-chunk must be >= 1, got {args.decode_chunk}")
        settings.check_requests(requests)
        check_checkpoint_folder(args.checkpoint)
        clips = len(requests) * settings.long.num_clips(settings.frames) * settings.steps / 50
        fast, why = choose_fast("off" if args.no_fast else args.fast, device, clips)
        print(why)
        pipe = VidRDPipeline.from_checkpoint(args.checkpoint, device, dtype, decode_chunk=args.decode_chunk, fast=fast)
        pipe.check_size(settings)
    except (PromptError, ValueError, FileNotFoundError, WeightLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = out_paths(args.out, len(requests))
    sinks = [FrameSink(p, args.fps) for p in paths]
    t0 = time.perf_counter()
    try:
        for _, frames in pipe.generate(requests, settings):
            for sink, f in zip(sinks, frames, strict=True):
                sink.write(f)
    finally:
        for sink in sinks:
            sink.close()
    dt = time.perf_counter() - t0
    for p, sink in zip(paths, sinks, strict=True):
        print(f"{p}: {sink.count} frames")
    print(f"{len(paths)} video(s) in {dt:.1f} s")
    return 0
