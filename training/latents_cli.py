"""``vidrd latents``: add precomputed VAE latents to a shard set (``training.latent_cache``). The parser imports
no torch, so ``vidrd --help`` stays fast."""

from __future__ import annotations

import argparse
import json
import sys

from devices import DTYPE_NAMES, resolve_device, torch_dtype


def part(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    try:
        return int(i), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part takes I/N (e.g. 0/8), got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd latents``."""
    p = sub.add_parser(
        "latents",
        help="add precomputed VAE latents to a shard set (training then reads them instead of decoding video)",
        description="Copy a shard set into OUT with each sample's VAE posterior (mean and std of every frame, short "
        "side SIZE, float16) beside its video, caption and metadata. Train on it with `data.latents: true` and "
        "`data.clip.size: SIZE`: no video decode and no VAE encode per step. A sample whose video does not decode "
        "is a reject with its reason (samples in = samples out + rejects); a training run whose VAE is not the "
        "one named in OUT/_latents.json refuses the set at start. Re-running skips the shards already done.",
    )
    p.add_argument(
        "--pretrained", required=True, help="the checkpoint whose VAE makes the latents (a VidRD or SD 2.1 folder)"
    )
    p.add_argument("--shards", required=True, help="the input shard set (folder, glob or URL)")
    p.add_argument("--out", required=True, help="the output shard set (folder or URL)")
    p.add_argument("--size", type=int, required=True, help="short side in pixels: the training run's data.clip.size")
    p.add_argument("--device", help="cuda or cpu (default: cuda when there is a GPU)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32", help="VAE precision (default fp32)")
    p.add_argument("--chunk", type=int, default=64, help="frames per VAE call (bounds memory)")
    p.add_argument(
        "--part", type=part, default=(0, 1), help="I/N: every N-th input shard from the I-th (one process per GPU)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.latent_cache import cache_latents
    from training.model.loading import WeightLoadError

    dtype, device = torch_dtype(args.dtype), resolve_device(args.device)
    import posixpath

    from manifests.io import check_output_apart

    try:
        if args.chunk < 1:
            raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
        if not 8 <= args.size <= 4096:  # past 4096 px a frame's latents alone outgrow any GPU: a typo
            raise ValueError(f"--size must be a short side in pixels in [8, 4096], a multiple of 8, got {args.size}")
        one_tar = args.shards.endswith(".tar")  # then its folder is what an output must stay out of
        shards = posixpath.dirname(args.shards) if one_tar else args.shards
        check_output_apart(args.out, shards=shards, pretrained=args.pretrained)
        summary = cache_latents(args.pretrained, args.shards, args.out, args.size, device, dtype, args.chunk, args.part)
    except (ValueError, FileNotFoundError, WeightLoadError) as e:  # WeightLoadError: a VAE that does not fit
        print(f"vidrd latents: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
