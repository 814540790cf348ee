"""``vidrd convert``: other projects' weights into the layouts this project reads."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd convert`` and its kinds."""
    p = sub.add_parser("convert", help="convert released weights into a VidRD checkpoint folder")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    r = kinds.add_parser(
        "vidrd-release",
        help="the authors' released VidRD (ModelT2V.pth + temporal VAE folder)",
        description="Write a VidRD checkpoint folder (safetensors) from the authors' release, for `vidrd generate "
        "--checkpoint OUT` and `vidrd eval ucf101 --checkpoint OUT`. The UNet is built in the official layout from "
        "SD 2.1-base's config and loaded strictly from the checkpoint's unet.* weights; the text encoder's weights "
        "come from the checkpoint (text_encoder.*), its tokenizer and config from the SD folder.",
    )
    r.add_argument("--ckpt", required=True, help="ModelT2V.pth (a Lightning checkpoint with unet.* and text_encoder.*)")
    r.add_argument(
        "--sd",
        required=True,
        help="Stable Diffusion 2.1-base in diffusers layout (unet/config.json, tokenizer/, text_encoder/config.json, "
        "scheduler/, vae/): a local copy of stabilityai/stable-diffusion-2-1-base",
    )
    r.add_argument(
        "--temporal-vae",
        help="the release's fine-tuned VAE folder (config.json + diffusion_pytorch_model.bin); without it the "
        "checkpoint's vae.* weights, else SD 2.1's VAE, with the temporal layers at their identity init",
    )
    r.add_argument("--out", required=True, help="checkpoint folder to write")
    r.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load the checkpoint with full pickle (runs code stored in it) when a weights-only load refuses it",
    )
    r.set_defaults(func=run_release)


def run_release(args: argparse.Namespace) -> int:
    from training.model.loading import WeightLoadError
    from training.model.official import convert_release

    try:
        report = convert_release(args.ckpt, args.sd, args.out, args.temporal_vae, args.trust_pickle)
    except (FileNotFoundError, WeightLoadError, ValueError, OSError) as e:
        print(f"vidrd convert vidrd-release: {e}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    print(f"next: vidrd generate --checkpoint {args.out} --schedule official --prompt '...' --out video.mp4")
    return 0
