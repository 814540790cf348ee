"""``vidrd eval ucf101``: zero-shot UCF-101 FVD / IS (/ CLIPSIM) of a VidRD checkpoint, next to table 1."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from devices import DTYPE_NAMES, resolve_device, torch_dtype
from inference.choices import CLIP_FRAMES, PAPER_GUIDANCE, PAPER_SIZE, PAPER_STEPS
from inference.config_args import add_config_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd eval``."""
    p = sub.add_parser(
        "eval",
        help="zero-shot UCF-101 FVD / IS / CLIPSIM (paper table 1)",
        description="Evaluate a checkpoint the way the paper does (section 5.1, appendix A.4).",
    )
    evsub = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    u = evsub.add_parser(
        "ucf101",
        help="FVD (I3D) and IS (C3D) on UCF-101 with the paper's 101 prompts",
        description="Generate N videos (16 frames, 256x256, 50 DDIM steps, guidance 10) with the paper's expanded "
        "UCF-101 prompts, classes following the training split; compare with real UCF-101 clips through I3D (FVD); "
        "classify with the UCF-101 C3D (IS, 10 splits); optionally CLIPSIM. Writes a JSON report and a markdown "
        "table beside it. Videos and real-video statistics are kept in --work, so a second run only computes what "
        "is missing.",
    )
    u.add_argument("--checkpoint", help="VidRD checkpoint folder (omit to score videos already in --work)")
    u.add_argument("--ucf-root", required=True, help="UCF-101 root: UCF-101/<Class>/*.avi [+ ucfTrainTestlist/]")
    u.add_argument("--trainlist", help="trainlist01.txt (default: UCF_ROOT/ucfTrainTestlist/trainlist01.txt)")
    u.add_argument("--i3d", required=True, help="i3d_torchscript.pt or pytorch-i3d rgb_imagenet.pt")
    u.add_argument("--c3d", required=True, help="UCF-101 C3D: TorchScript c3d_ucf101.pt or a C3D state dict")
    u.add_argument("--c3d-mean", help="C3D mean volume [3,16,128,171] as .npy (default: per-channel means)")
    u.add_argument("--clip", help="CLIP model folder (Hugging Face layout) for CLIPSIM (optional)")
    u.add_argument("--num-videos", type=int, default=10000, help="videos to generate (paper: 10000)")
    u.add_argument("--num-real", type=int, default=10000, help="real UCF-101 clips for FVD statistics")
    u.add_argument("--out", required=True, help="report JSON (a .md table is written beside it)")
    u.add_argument("--work", help="folder for generated videos and caches (default: OUT's folder / ucf101-work)")
    u.add_argument("--size", type=int, default=PAPER_SIZE, help=f"frame height and width (paper: {PAPER_SIZE})")
    u.add_argument("--frames", type=int, default=CLIP_FRAMES)
    u.add_argument("--steps", type=int, default=PAPER_STEPS)
    u.add_argument("--guidance", type=float, default=PAPER_GUIDANCE)
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--batch", type=int, default=4, help="videos generated at once per device")
    u.add_argument("--negative-prompt", default="", help="unconditional text (the authors' evaluation: 'watermark')")
    u.add_argument("--decode", choices=("temporal", "frames"), default="temporal",
                   help="VAE decode: the temporal decoder, or each frame alone (the release)")  # fmt: skip
    u.add_argument("--spread", choices=("local", "gpus", "ray"), default="gpus",
                   help="one device, a process per visible GPU, or Ray GPU tasks on a cluster")  # fmt: skip
    u.add_argument("--ray-workers", type=int, help="Ray tasks (default: the cluster's GPU count)")
    u.add_argument("--ray-gpus", type=float, default=1.0, help="GPUs per Ray task")
    u.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32")
    u.add_argument("--device", help="device for metrics (default: cuda when there is a GPU)")
    add_config_arguments(u)
    u.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inference.eval.ucf101 import UCFDataError
    from inference.eval.ucf101_eval import EvalSettings, evaluate, markdown

    out = Path(args.out)
    work = Path(args.work) if args.work else out.parent / "ucf101-work"
    settings = EvalSettings(
        num_videos=args.num_videos, frames=args.frames, height=args.size, width=args.size, steps=args.steps,
        guidance=args.guidance, seed=args.seed, batch=args.batch, negative_prompt=args.negative_prompt,
        temporal_decode=args.decode == "temporal",
    )  # fmt: skip
    try:
        report = evaluate(
            args.checkpoint, args.ucf_root, args.i3d, args.c3d, work, settings, args.trainlist, args.clip,
            args.c3d_mean, args.num_real, args.spread, torch_dtype(args.dtype), resolve_device(args.device),
            args.ray_workers, args.ray_gpus,
        )  # fmt: skip
    except (FileNotFoundError, UCFDataError, ValueError) as e:
        print(f"vidrd eval ucf101: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(report), indent=2))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"report: {out} and {out.with_suffix('.md')}")
    return 0
