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
    b = kinds.add_parser(
        "blip2-lavis",
        help="a LAVIS BLIP-2 OPT checkpoint as a transformers Blip2ForConditionalGeneration folder",
        description="Write a transformers BLIP-2 folder (weights, config, processor with LAVIS's preprocessing) from "
        "a LAVIS BLIP-2 OPT checkpoint, for `short-videos`' stage.blip2. LAVIS's released files hold only what "
        "BLIP-2 trained: the ViT comes from --vit (eva_vit_g.pth) and OPT from --opt. Checked against LAVIS "
        "itself (tests/test_lavis.py): equal image embeddings, Q-Former outputs and first-token logits, and the "
        "same greedy caption.",
    )
    b.add_argument("ckpt", help="the LAVIS checkpoint (.pth; e.g. blip2_pretrained_opt2.7b.pth)")
    b.add_argument("--opt", help="the OPT folder (config, tokenizer; weights unless CKPT has them); not with "
                   "--vision-only")  # fmt: skip
    b.add_argument("--vision-only", action="store_true", help="only ViT + Q-Former + query tokens, what MiniGPT-4 "
                   "reads (stage.minigpt4_blip2); from any LAVIS BLIP-2, e.g. its FlanT5-XXL one")  # fmt: skip
    b.add_argument("--vit", help="eva_vit_g.pth, when CKPT holds no visual_encoder.* weights")
    b.add_argument("--vision-heads", type=int, default=16, help="the ViT's attention heads (EVA ViT-g: 16)")
    b.add_argument("--qformer-heads", type=int, default=12, help="the Q-Former's attention heads (BERT-base: 12)")
    b.add_argument("--out", required=True, help="folder to write")
    b.set_defaults(func=run_blip2_lavis)


def run_blip2_lavis(args: argparse.Namespace) -> int:
    from curation.models.blip2_convert import NotBlip2Checkpoint, convert, convert_vision
    from manifests.io import check_output_apart

    try:
        check_output_apart(args.out, ckpt=args.ckpt, opt=args.opt, vit=args.vit)
        if args.vision_only:
            out = convert_vision(args.ckpt, args.out, args.vit, args.vision_heads, args.qformer_heads)
            print(f"{out}: BLIP-2 vision side; use it as stage.minigpt4_blip2: {out}")
            return 0
        if not args.opt:
            raise NotBlip2Checkpoint("--opt OPT_FOLDER is needed (or --vision-only)")
        out = convert(args.ckpt, args.opt, args.out, args.vit, args.vision_heads, args.qformer_heads)
    except (FileNotFoundError, NotBlip2Checkpoint, OSError, ValueError) as e:
        print(f"vidrd convert blip2-lavis: {e}", file=sys.stderr)
        return 2
    print(f"{out}: transformers BLIP-2; use it as stage.blip2: {out}")
    return 0


def run_release(args: argparse.Namespace) -> int:
    from manifests.io import check_output_apart
    from training.model.loading import WeightLoadError
    from training.model.official import convert_release

    try:
        check_output_apart(args.out, sd=args.sd, temporal_vae=args.temporal_vae, ckpt=args.ckpt)
        report = convert_release(args.ckpt, args.sd, args.out, args.temporal_vae, args.trust_pickle)
    except (FileNotFoundError, WeightLoadError, ValueError, OSError) as e:
        print(f"vidrd convert vidrd-release: {e}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    print(f"next: vidrd generate --checkpoint {args.out} --schedule official --prompt '...' --out video.mp4")
    return 0
