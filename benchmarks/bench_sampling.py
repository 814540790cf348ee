"""Seconds to sample a video with the full-size VidRD (random weights, bf16) vs a diffusers
TextToVideoSDPipeline-style loop over UNet3DConditionModel (ModelScope config), in one run.

* VidRD, 16 frames 256x256, 50 DDIM steps, CFG w=10: UNet loop only, and end to end (text encoding
  + sampling + temporal VAE decode) through ``inference.pipeline.VidRDPipeline``;
* VidRD, 64 frames with FNR/PNS/DSG (N=16, M=8): end to end, and seconds per clip;
* peer, 16 frames: the same DDIM + batched-CFG loop around UNet3DConditionModel, and + VAE decode.

    python benchmarks/bench_sampling.py --json $OUT/sampling.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import AutoencoderKL
from transformers import CLIPTextModel

from inference.long_video import LongVideoConfig, clips_needed
from inference.pipeline import GenerationSettings, VidRDPipeline
from inference.prompts import VideoRequest
from inference.sampler import DDIMSampler, make_scheduler
from training.model.loading import SDComponents, openclip_text_config
from training.model.sampling_defaults import sd_scheduler_config
from training.model.text_encoder import FrozenTextEncoder
from training.model.tiny import write_char_tokenizer
from training.model.unet import VidRDUNet
from training.model.vae import TemporalVAE

PROMPT = "a corgi running on the beach at sunset"


def clock(fn) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def best(fn, n: int = 2) -> float:
    fn()  # warm-up
    return min(clock(fn) for _ in range(n))


def vidrd_components() -> SDComponents:
    tok = write_char_tokenizer(Path(tempfile.mkdtemp()) / "tok")
    with torch.device("cuda"):
        unet, vae = VidRDUNet(sample_size=32), TemporalVAE(sample_size=256)
        text = CLIPTextModel(openclip_text_config())
    return SDComponents(unet, vae, FrozenTextEncoder(tok, text.to(torch.bfloat16)), sd_scheduler_config("v_prediction"),
                        "v_prediction")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    rows = []
    pipe = VidRDPipeline(vidrd_components(), "cuda", torch.bfloat16)
    cond = pipe.embed([PROMPT])
    uncond = pipe.text.empty(1).to(torch.bfloat16)
    sampler = DDIMSampler(pipe.unet, make_scheduler(pipe.scheduler_config), args.steps, 10.0)
    z = torch.randn(1, 4, 16, 32, 32, device="cuda", dtype=torch.bfloat16)
    s = best(lambda: sampler.sample(z, cond, uncond))
    rows.append(dict(model="vidrd", what="16 frames, UNet loop", frames=16, seconds=round(s, 3)))

    def run(frames: int) -> None:
        st = GenerationSettings(frames=frames, steps=args.steps, guidance=10.0, long=LongVideoConfig(16, 8, 1.0, 1.0))
        for _ in pipe.generate([VideoRequest([PROMPT])], st, progress=False):
            pass

    pipe._emb.clear()
    torch.cuda.reset_peak_memory_stats()
    s16 = best(lambda: run(16))
    peak16 = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    rows.append(dict(model="vidrd", what="16 frames, text + sampling + VAE decode", frames=16, seconds=round(s16, 3),
                     peak_GiB=peak16))  # fmt: skip
    torch.cuda.reset_peak_memory_stats()
    s64 = best(lambda: run(64), n=1)
    k = clips_needed(64, 16)
    rows.append(dict(model="vidrd", what=f"64 frames FNR/PNS/DSG ({k} clips of 16, M=8), end to end", frames=64,
                     seconds=round(s64, 3), per_clip=round(s64 / k, 3),
                     peak_GiB=round(torch.cuda.max_memory_allocated() / 2**30, 2)))  # fmt: skip
    pipe = sampler = None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

    from diffusers import UNet3DConditionModel

    from benchmarks.bench_unet import MODELSCOPE

    with torch.device("cuda"):
        peer = UNet3DConditionModel(**MODELSCOPE).to(torch.bfloat16).eval().requires_grad_(False)
        vae = AutoencoderKL(sample_size=256).to(torch.bfloat16).eval().requires_grad_(False)
    ctx = torch.randn(1, 77, 1024, device="cuda", dtype=torch.bfloat16)
    peer_sampler = DDIMSampler(lambda x, t, c: peer(x, t, encoder_hidden_states=c).sample,
                               make_scheduler(sd_scheduler_config("epsilon")), args.steps, 10.0)  # fmt: skip

    def peer_video(decode: bool) -> None:
        with torch.no_grad():
            lat = peer_sampler.sample(z, ctx, torch.zeros_like(ctx))
            if decode:  # TextToVideoSDPipeline decodes frame by frame through AutoencoderKL
                frames = lat.transpose(1, 2).reshape(16, 4, 32, 32) / vae.config.scaling_factor
                vae.decode(frames)

    rows.append(
        dict(model="peer", what="16 frames, UNet loop", frames=16, seconds=round(best(lambda: peer_video(False)), 3))
    )
    rows.append(dict(model="peer", what="16 frames, UNet loop + VAE decode", frames=16,
                     seconds=round(best(lambda: peer_video(True)), 3)))  # fmt: skip
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, steps=args.steps, guidance=10.0,
               size="256x256", dtype="bf16", date=time.strftime("%Y-%m-%d"))  # fmt: skip
    for r in rows:
        print(json.dumps(r))
    print(json.dumps(env))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
