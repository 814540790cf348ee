"""Proof that the trainer learns: a small VidRD trained on moving coloured squares follows its captions.

Steps (each a subcommand; `run_learn_shapes.sh` beside this file chains them on a GPU machine):

1. ``shards``: synthetic clips (4 colours x 4 directions, textured backgrounds), captioned
   "a {colour} square moving {direction}", written as WebDataset shards with ``_index.parquet``.
2. ``base``: a small random VidRD (text encoder, UNet, VAE). The VAE is random too, so it is first
   fitted as a plain autoencoder on the clips' frames for a minute: the stand-in for SD's pretrained
   VAE, which latent diffusion assumes. Saved as a VidRD checkpoint folder.
3. ``vidrd train fit --config examples/shapes.yaml --model.init_args.pretrained BASE``: the trainer
   under test (DDP on every visible GPU).
4. ``report``: sample one video per caption from the exported checkpoint, measure in each video
   which colour the moving object has and where its centroid goes, plot the loss curve, save frame
   strips. A trained model shows the caption's colour and direction; the numbers are in report.json.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from curation.shard_writer import Sample, ShardWriter, finalize
from curation.video_io import encode_mp4
from training.model.loading import EPSILON, SDComponents, save_vidrd
from training.model.sampling_defaults import sd_scheduler_config
from training.model.text_encoder import FrozenTextEncoder
from training.model.tiny import TINY_TEXT, TINY_VAE, write_char_tokenizer
from training.model.unet import VidRDUNet
from training.model.vae import TemporalVAE
from vidrd.synthetic import COLOURS, DIRECTIONS, moving_square

SIZE, FRAMES, FPS = 64, 16, 8.0
SMALL_UNET = dict(
    sample_size=SIZE // 2,
    block_out_channels=(64, 128, 256),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=(2, 4, 8),
    cross_attention_dim=TINY_TEXT["hidden_size"],
    temp_head_dim=32,
)


def caption(colour: str, direction: str) -> str:
    return f"a {colour} square moving {direction}"


def make_shards(out: Path, per_combo: int) -> None:
    seed = 0
    with ShardWriter(str(out), "shapes", max_samples=128) as w:
        for c in COLOURS:
            for d in DIRECTIONS:
                for k in range(per_combo):
                    seed += 1
                    frames = moving_square(c, d, frames=FRAMES, width=SIZE, height=SIZE, seed=seed)
                    meta = {"source": "shapes", "source_id": f"{c}-{d}-{k}", "stage": "example", "frames": FRAMES,
                            "fps": FPS, "width": SIZE, "height": SIZE}  # fmt: skip
                    w.write(Sample(f"shapes-{c}-{d}-{k}", encode_mp4(frames, FPS), caption(c, d), meta))
    finalize(str(out))


def fit_vae(vae: TemporalVAE, frames: torch.Tensor, steps: int, device: str) -> list[float]:
    """Plain autoencoder fit (L1 + small KL) of every VAE weight on ``frames [N, 3, H, W]`` in [-1, 1]."""
    vae.to(device).train().requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        x = frames[torch.randint(len(frames), (64,), generator=g)].to(device)
        post = vae.vae.encode(x).latent_dist
        rec = vae.vae.decode(post.sample()).sample
        loss = (rec - x).abs().mean() + 1e-6 * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def make_base(out: Path, vae_steps: int, device: str) -> None:
    torch.manual_seed(0)
    tok = write_char_tokenizer(out / "_tok")
    from transformers import CLIPTextConfig, CLIPTextModel

    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), **TINY_TEXT))
    vae = TemporalVAE(**TINY_VAE)
    clips = [moving_square(c, d, frames=FRAMES, width=SIZE, height=SIZE, seed=s)
             for c in COLOURS for d in DIRECTIONS for s in range(4)]  # fmt: skip
    frames = torch.from_numpy(np.concatenate(clips)).permute(0, 3, 1, 2).float() / 127.5 - 1
    losses = fit_vae(vae, frames, vae_steps, device)
    print(f"VAE autoencoder fit: L1 {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f} in {vae_steps} steps")
    vae.cpu().eval()
    with torch.no_grad():  # SD's recipe: scale latents to unit variance (SD 2.1's VAE uses 0.18215)
        std = float(vae.vae.encode(frames[:256]).latent_dist.mode().std())
    vae.register_to_config(scaling_factor=1.0 / std)
    print(f"latent std {std:.3f} -> scaling_factor {1.0 / std:.4f}")
    unet = VidRDUNet(**SMALL_UNET)
    comps = SDComponents(unet, vae, FrozenTextEncoder(tok, text), sd_scheduler_config(EPSILON), EPSILON)
    save_vidrd(str(out), comps)


def object_track(video: np.ndarray, colour: str) -> tuple[float, np.ndarray]:
    """Share of frames' pixels near ``colour`` and the per-frame centroid (x, y) of those pixels."""
    target = np.array(COLOURS[colour], dtype=np.float32)
    dist = np.linalg.norm(video.astype(np.float32) - target, axis=-1)  # [F, H, W]
    mask = dist < 60
    share = float(mask.mean())
    ys, xs = np.mgrid[0 : video.shape[1], 0 : video.shape[2]]
    cents = []
    for m in mask:
        n = m.sum()
        cents.append((float((xs * m).sum() / n), float((ys * m).sum() / n)) if n else (np.nan, np.nan))
    return share, np.array(cents)


def moves_as_told(motion: list[float], expected: tuple[int, int], min_pixels: float = 4.0) -> bool:
    """The object travels at least ``min_pixels`` and within 45 degrees of the caption's direction."""
    m = np.asarray(motion, dtype=np.float64)
    size = float(np.linalg.norm(m))
    if not np.isfinite(size) or size < min_pixels:
        return False
    return bool(float(np.dot(m, expected)) / size >= np.cos(np.pi / 4))


def report(checkpoint: Path, run_dir: Path, out: Path, device: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from inference.pipeline import GenerationSettings, VidRDPipeline
    from inference.prompts import VideoRequest

    out.mkdir(parents=True, exist_ok=True)
    pipe = VidRDPipeline.from_checkpoint(str(checkpoint), device)
    settings = GenerationSettings(frames=FRAMES, steps=50, guidance=4.0, seed=1, height=SIZE, width=SIZE)
    prompts = [caption(c, d) for c, d in (("red", "right"), ("blue", "left"), ("green", "down"), ("yellow", "up"))]
    rows = []
    for p in prompts:
        (_, video), = list(pipe.generate([VideoRequest([p])], settings, progress=False))  # fmt: skip
        video = video[0]
        colour, direction = p.split()[1], p.split()[-1]
        shares = {c: object_track(video, c)[0] for c in COLOURS}
        _, track = object_track(video, colour)
        ok = ~np.isnan(track).any(axis=1)
        motion = (track[ok][-1] - track[ok][0]).tolist() if ok.sum() >= 2 else [float("nan")] * 2
        expected = DIRECTIONS[direction]
        rows.append({
            "prompt": p, "colour_share": shares, "dominant_colour": max(shares, key=shares.get),
            "centroid_motion_xy": motion, "expected_direction_xy": expected,
            "moves_as_told": moves_as_told(motion, expected),
        })  # fmt: skip
        strip = np.concatenate(list(video[::2]), axis=1)
        Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(
            out / f"{colour}-{direction}.png"
        )
    # Backgrounds are textured, so absolute shares are small and one colour can dominate every video;
    # what shows caption following is how much more of its colour a prompt's video has than the others.
    for r in rows:
        colour = r["prompt"].split()[1]
        others = [o["colour_share"][colour] for o in rows if o is not r]
        r["colour_lift"] = r["colour_share"][colour] / max(float(np.mean(others)), 1e-6)
    steps, losses = [], []
    for f in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        for r in csv.DictReader(f.open()):
            if r.get("train/loss"):
                steps.append(int(r["step"]))
                losses.append(float(r["train/loss"]))
    if losses:
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        plt.figure(figsize=(6, 3.5))
        plt.plot(steps, losses, alpha=0.3, label="loss (rank 0, per step)")
        plt.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
        plt.xlabel("step")
        plt.ylabel("denoising MSE")
        plt.yscale("log")
        plt.legend()
        plt.tight_layout()
        plt.savefig(out / "loss.png", dpi=120)
        first, last = float(np.mean(losses[: 5 * k])), float(np.mean(losses[-5 * k :]))
    else:
        first = last = float("nan")
    result = {"loss_first": first, "loss_last": last, "steps": steps[-1] + 1 if steps else 0, "videos": rows}
    (out / "report.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shards", help="write the synthetic shards")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--per-combo", type=int, default=32, help="clips per (colour, direction)")
    b = sub.add_parser("base", help="small random VidRD with an autoencoder-fitted VAE")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--vae-steps", type=int, default=1500)
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r = sub.add_parser("report", help="sample, measure, plot")
    r.add_argument("--checkpoint", type=Path, required=True)
    r.add_argument("--run-dir", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    if a.cmd == "shards":
        make_shards(a.out, a.per_combo)
    elif a.cmd == "base":
        make_base(a.out, a.vae_steps, a.device)
    else:
        print(json.dumps(report(a.checkpoint, a.run_dir, a.out, a.device), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
