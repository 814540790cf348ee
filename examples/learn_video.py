"""Proof that VidRD learns video: motion that follows the caption, held-out combinations. Everything goes
through the product's own commands; this module only makes the synthetic dataset, the small base model, and the
measured report of short videos (long videos: ``examples.learn_long_video``). ``run_learn_video.sh`` chains it all:

1. ``data``: 4 colours x 4 directions x 2 shapes at 2 speeds on flat or textured backgrounds, 64x64, captioned
   "a red circle moving left", written in WebVid's published layout. Each source video is one steady crossing of
   the whole frame (:func:`vidrd.synthetic.travelling_shape`: 69 or 103 frames, four to six training clips long),
   and the trainer cuts 16-frame clips from random starts, as the paper's loader does, so a clip can begin
   anywhere along the motion and no position belongs to a frame index. The :data:`HELD_OUT` combinations are
   never written (each of their words appears in other combinations).
2. ``vidrd manifest webvid`` and ``vidrd curate captioned`` turn them into shards.
3. ``base``: a small random VidRD (official layout; v-prediction on the zero-terminal-SNR schedule, see
   :func:`make_base`). Its VAE is random too, so it is first fitted as a plain autoencoder on the clips' frames:
   the stand-in for SD's pretrained VAE, which latent diffusion assumes. ``vidrd latents`` then stores that VAE's
   latents beside the clips, so training neither decodes video nor runs the VAE per step.
4. ``vidrd train fit --config examples/learn_video.yaml`` trains the UNet and the text encoder (a random text
   encoder cannot tell "left" from "right"; the authors' release fine-tuned theirs too); ``vidrd train fit
   --config examples/learn_video_vae.yaml`` fine-tunes the temporal VAE decoder.
5. ``report``: >= 16 seeds per prompt for every training and held-out combination through ``vidrd generate``'s
   pipeline, each video measured from its saved mp4 (``examples.video_measures``); the loss curve; small videos and
   frame strips.

    python -m examples.learn_video report --checkpoint runs/lv/export --run-dir runs/lv/train \\
        --out benchmarks/results/learn_video
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from examples.video_measures import measure
from vidrd.synthetic import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, travelling_shape, write_webvid

SIZE, FPS = 64, 8.0
# Pixels per frame. A long video of four 16-frame clips moves the object 24-46 px; the frame leaves it 51 px.
SPEEDS = (0.5, 0.75)
CLIP = 16  # frames the model makes per clip (training reads 16 consecutive frames from a random start)
# Never in the training data; each word still appears in other combinations.
HELD_OUT = (
    ("red", "left", "circle"),
    ("green", "up", "square"),
    ("blue", "right", "circle"),
    ("yellow", "down", "square"),
)
TARGETS = {"direction_train": 0.90, "direction_held_out": 0.75, "colour": 0.95, "present": 0.95}
# What the fitted VAE's round trip must keep (colour, direction, presence): the report can never beat it.
AUTOENCODER_MIN = 0.95
CHECKPOINT_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SCHEDULE_KEYS = ("prediction_type", "rescale_betas_zero_snr", "timestep_spacing")


class ReportError(ValueError):
    """A report that cannot be made as asked (missing checkpoint part, no prompts, another run's report)."""


def caption(colour: str, direction: str, shape: str) -> str:
    return f"a {colour} {shape} moving {direction}"


def parse_caption(text: str) -> tuple[str, str, str]:
    """(colour, direction, shape) of ``a {colour} {shape} moving {direction}``."""
    words = text.split()
    if len(words) != 5 or words[0] != "a" or words[3] != "moving" or words[1] not in COLOURS:
        raise ReportError(f"prompt {text!r} is not 'a <colour> <shape> moving <direction>'")
    if words[2] not in SHAPES or words[4] not in DIRECTIONS:
        raise ReportError(f"prompt {text!r}: unknown shape or direction")
    return words[1], words[4], words[2]


def read_prompts(path: Path) -> list[str]:
    """The non-blank lines of a prompts file, stripped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def all_combos() -> list[tuple[str, str, str]]:
    return list(itertools.product(COLOURS, DIRECTIONS, SHAPES))


def training_combos() -> list[tuple[str, str, str]]:
    return [c for c in all_combos() if c not in HELD_OUT]


# -- 1. data ------------------------------------------------------------------------------------------------


def source_video(colour: str, direction: str, shape: str, k: int, seed: int, size: int = SIZE) -> np.ndarray:
    """The ``k``-th source video of a combination: speeds and backgrounds alternate with ``k``."""
    speed, bg = SPEEDS[k % len(SPEEDS)], BACKGROUNDS[(k // len(SPEEDS)) % len(BACKGROUNDS)]
    return travelling_shape(colour, direction, shape, size, speed, bg, seed)


def make_data(root: Path, per_combo: int = 16, size: int = SIZE) -> int:
    """The training combinations in WebVid's layout under ``root``; returns how many source videos."""
    clips = []
    for n, (c, d, s) in enumerate(training_combos()):
        for k in range(per_combo):
            clips.append((f"{n:02d}{k:04d}", source_video(c, d, s, k, 1000 * n + k, size), caption(c, d, s)))
    write_webvid(root, clips, FPS)
    meta = {"held_out": [caption(*c) for c in HELD_OUT], "per_combo": per_combo, "speeds": SPEEDS,
            "frames": sorted({len(v) for _, v, _ in clips})}  # fmt: skip
    (root / "learn_video.json").write_text(json.dumps(meta, indent=1))
    return len(clips)


def random_window(video: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``frames`` consecutive frames from a random start (what the trainer cuts)."""
    start = int(rng.integers(0, len(video) - frames + 1))
    return video[start : start + frames]


# -- 3. base model ------------------------------------------------------------------------------------------

SMALL_UNET = dict(
    sample_size=SIZE // 4,
    block_out_channels=(64, 128, 256),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=(2, 4, 8),
    cross_attention_dim=128,
)
# SD's VAE shrinks 8x; at 64x64 that would leave the object 1.5 latent pixels wide, so this one shrinks 4x
# (16x16x4 latents: 12x fewer numbers than pixels) and the UNet's work per clip stays small.
SMALL_VAE = dict(
    block_out_channels=(32, 64, 64),
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    layers_per_block=1,
    norm_num_groups=32,
    sample_size=SIZE,
)
# A larger tower than the tests' tiny one: it is trained here (train_text_encoder), and word order matters.
TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=77, projection_dim=128, hidden_act="gelu", bos_token_id=0, eos_token_id=1,
            pad_token_id=1)  # fmt: skip


def fit_vae(vae, frames: torch.Tensor, steps: int, device: str) -> list[float]:
    """Plain autoencoder fit (L1 + small KL) of every VAE weight on ``frames [N, 3, H, W]`` in [-1, 1] (bf16 autocast
    on CUDA)."""
    vae.to(device).train().requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    cuda = torch.device(device).type == "cuda"
    for _ in range(steps):
        x = frames[torch.randint(len(frames), (64,), generator=g)].to(device)
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            post = vae.vae.encode(x).latent_dist
            rec = vae.vae.decode(post.sample()).sample
        loss = (rec.float() - x).abs().mean() + 1e-6 * post.kl().float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def as_tensor(video: np.ndarray, device: str) -> torch.Tensor:
    """``[F, H, W, 3]`` uint8 -> ``[1, 3, F, H, W]`` in [-1, 1] on ``device`` (what the VAE encodes)."""
    return torch.from_numpy(video).permute(3, 0, 1, 2)[None].float().to(device) / 127.5 - 1


def autoencoder_check(vae, device: str, clips: int = 32, size: int = SIZE) -> dict:
    """The fitted VAE's round trip measured like generated videos: the ceiling of what the report can find.

    Clips from seeds the training data never uses; each decoded frame by frame (what the frozen 2D decoder does)."""
    from examples.video_measures import measure
    from inference.pipeline import to_uint8

    combos = all_combos()
    rows = []
    rng = np.random.default_rng(0)
    vae.to(device).eval()
    for k in range(clips):
        c, d, s = combos[(5 * k) % len(combos)]
        truth = random_window(source_video(c, d, s, k, 90_000 + k, size), CLIP, rng)
        x = as_tensor(truth, device)
        with torch.no_grad():
            y = vae.decode(vae.encode(x, sample=False), temporal=False).float().clamp(-1, 1)
        m = measure(to_uint8(y)[0], c, d)
        rows.append((m["colour_ok"], m["direction_ok"], m["present"], (y - x).abs().mean().item()))
    a = np.array(rows, dtype=np.float64)
    return {"clips": clips, "colour_ok": float(a[:, 0].mean()), "direction_ok": float(a[:, 1].mean()),
            "present": float(a[:, 2].mean()), "l1": round(float(a[:, 3].mean()), 4)}  # fmt: skip


def make_base(
    out: Path,
    vae_steps: int,
    device: str,
    unet: dict | None = None,
    text: dict | None = None,
    vae: dict | None = None,
    check_clips: int = 32,
    zero_terminal_snr: bool = True,
    vae_from: Path | None = None,
) -> dict:
    """A small random VidRD checkpoint folder with an autoencoder-fitted VAE; returns the VAE's round-trip check
    (also written to ``out/autoencoder_check.json``).

    ``vae_from``: a VAE folder fitted by an earlier ``base`` (``BASE/vae``), used as it is: its latents
    (``vidrd latents``) and a model trained on them stay valid, and the fit's minutes are saved.

    ``zero_terminal_snr`` (default): v-prediction on the zero-terminal-SNR schedule. With SD's own schedule
    (epsilon, False) runs 1 and 2 learned colour and shape but moved the object wherever the seed's noise
    pointed: the noisiest training input still showed the clip's path (``training.model.sampling_defaults``)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from training.model.loading import EPSILON, V_PREDICTION, SDComponents, save_vidrd
    from training.model.sampling_defaults import sd_scheduler_config
    from training.model.text_encoder import FrozenTextEncoder
    from training.model.tiny import write_char_tokenizer
    from training.model.unet import VidRDUNet
    from training.model.vae import TemporalVAE

    torch.manual_seed(0)
    tok = write_char_tokenizer(out / "_tok")
    text_model = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), **(text or TEXT)))
    if vae_from is not None:
        autoencoder = TemporalVAE.from_pretrained(str(vae_from)).to(device)
        std = 1.0 / float(autoencoder.config.scaling_factor)
        print(f"VAE: {vae_from} as fitted earlier")
    else:
        autoencoder = TemporalVAE(**(vae or SMALL_VAE))
        # Every third frame of 4 source videos per combination: all positions, both speeds and backgrounds.
        clips = [source_video(c, d, s, k, 70_000 + 8 * n + k)[::3] for n, (c, d, s) in enumerate(all_combos())
                 for k in range(4)]  # fmt: skip
        frames = torch.from_numpy(np.concatenate(clips)).permute(0, 3, 1, 2).float() / 127.5 - 1
        losses = fit_vae(autoencoder, frames, vae_steps, device)
        print(f"VAE autoencoder fit: L1 {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f} in {vae_steps} steps")
        autoencoder.eval()
        with torch.no_grad():  # SD's recipe: latents scaled to unit variance (SD 2.1's VAE uses 0.18215)
            std = float(autoencoder.vae.encode(frames[:256].to(device)).latent_dist.mode().std())
        autoencoder.register_to_config(scaling_factor=1.0 / std)
    check = autoencoder_check(autoencoder, device, check_clips)
    print(f"VAE round trip on unseen clips: {json.dumps(check)}")
    autoencoder.cpu()
    pred = V_PREDICTION if zero_terminal_snr else EPSILON
    comps = SDComponents(VidRDUNet(**(unet or SMALL_UNET)), autoencoder, FrozenTextEncoder(tok, text_model),
                         sd_scheduler_config(pred, zero_terminal_snr), pred)  # fmt: skip
    save_vidrd(str(out), comps)
    (out / "autoencoder_check.json").write_text(json.dumps(check, indent=1))
    print(f"base checkpoint: {out} (latent std {std:.3f}; UNet {comps.unet.parameter_counts()['total']:,} parameters)")
    return check


# -- 5. report ----------------------------------------------------------------------------------------------


def check_inputs(checkpoint: Path, prompts: list[str], out: Path, force: bool) -> None:
    """Refuse a checkpoint folder without one of its parts, no prompts, or another run's report in ``out``."""
    for part in CHECKPOINT_PARTS:
        if not (checkpoint / part).is_dir():
            raise ReportError(f"{checkpoint}: no {part}/ (a VidRD checkpoint folder has {', '.join(CHECKPOINT_PARTS)})")
    if not prompts:
        raise ReportError("the prompt list is empty")
    for text in prompts:
        parse_caption(text)
    existing = out / "report.json"
    if existing.exists() and not force:
        raise ReportError(f"{existing} exists (another run's report); pass --force to replace it")


def fast_paths(device: str):
    """CUDA graphs alone on GPU: no compile wait for a small model; nothing on CPU."""
    from training.model.fast_paths import FastPaths

    if torch.device(device).type != "cuda":
        return FastPaths.off()
    return FastPaths(channels_last=False, compile=False, fuse_projections=False)


def summarise(rows: list[dict]) -> dict:
    """Shares over videos (direction, sign, colour), means over videos of the rest."""
    if not rows:
        return {}
    return {
        "videos": len(rows),
        "direction_ok": round(float(np.mean([r["direction_ok"] for r in rows])), 4),
        "sign_ok": round(float(np.mean([r["sign_ok"] for r in rows])), 4),
        "colour_ok": round(float(np.mean([r["colour_ok"] for r in rows])), 4),
        "present": round(float(np.mean([r["present"] for r in rows])), 4),
        "flicker_frames": round(float(np.mean([r["flicker_frames"] for r in rows])), 3),
        "speed": round(float(np.nanmean([r["speed"] for r in rows])), 3),
        "angle_error": round(float(np.nanmean([r["angle_error"] for r in rows])), 1) if rows else None,
        "background_error": round(float(np.nanmean([r["background_error"] for r in rows])), 4),
    }


def save_strip(video: np.ndarray, path: Path, every: int = 2) -> None:
    """Every ``every``-th frame side by side at full size (``vidrd shards``'s strip)."""
    from curation.inspect.render import strip

    strip(video[::every], height=video.shape[1]).save(path)


def loss_plot(run_dir: Path, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = [], []
    for f in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        for r in csv.DictReader(f.open()):
            if r.get("train/loss"):
                steps.append(int(r["step"]))
                losses.append(float(r["train/loss"]))
    if not losses:
        return {}
    k = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    plt.figure(figsize=(6, 3.5))
    plt.plot(steps, losses, alpha=0.3, label="loss (per logged step)")
    plt.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
    plt.xlabel("step")
    plt.ylabel("denoising MSE")
    plt.yscale("log")
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=100)
    plt.close()
    return {
        "steps": steps[-1] + 1,
        "loss_first": float(np.mean(losses[: 5 * k])),
        "loss_last": float(np.mean(losses[-5 * k :])),
    }


PER_FRAME = ("track", "frame_colours", "frame_shapes")  # per-frame lists the short-video rows leave out


def report(
    checkpoint: Path,
    out: Path,
    seeds: int = 16,
    prompts: list[str] | None = None,
    run_dir: Path | None = None,
    device: str = "cpu",
    steps: int = 30,
    guidance: float = 7.5,
    guidance_rescale: float | None = None,
    videos_per_prompt: int = 2,
    force: bool = False,
    size: int = SIZE,
) -> dict:
    """Generate, measure and write ``out/report.json`` plus the pictures and small videos.

    ``guidance_rescale`` None: 0.7 for a zero-terminal-SNR checkpoint (Lin et al.'s value), else 0."""
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from inference.prompts import VideoRequest
    from media.video import decode_frames, encode_mp4
    from training.model.sampling_defaults import has_zero_terminal_snr

    prompts = [caption(*c) for c in all_combos()] if prompts is None else prompts
    check_inputs(checkpoint, prompts, out, force)
    out.mkdir(parents=True, exist_ok=True)
    held = {caption(*c) for c in HELD_OUT}
    pipe = VidRDPipeline.from_checkpoint(str(checkpoint), device, fast=fast_paths(device))
    if guidance_rescale is None:
        guidance_rescale = 0.7 if has_zero_terminal_snr(pipe.scheduler_config) else 0.0
    settings = GenerationSettings(frames=CLIP, steps=steps, guidance=guidance, guidance_rescale=guidance_rescale,
                                  height=size, width=size)  # fmt: skip
    rows = []
    for p in prompts:
        colour, direction, shape = parse_caption(p)
        reqs = [VideoRequest([p], seed=s) for s in range(seeds)]
        videos = np.concatenate([f for _, f in pipe.generate(reqs, settings, progress=False)], axis=1)
        name = f"{colour}-{shape}-{direction}"
        for s, v in enumerate(videos):
            # Measured as saved: the mp4's decoded frames, so a saved video is exactly what its row describes.
            mp4 = encode_mp4(v, FPS)
            saved, _ = decode_frames(mp4)
            m = measure(saved, colour, direction)
            row = {"prompt": p, "seed": s, "held_out": p in held}
            if s < videos_per_prompt:
                row["file"] = f"{name}_s{s}.mp4"
                (out / row["file"]).write_bytes(mp4)
            rows.append({**row, **{k: x for k, x in m.items() if k not in PER_FRAME}})
        save_strip(videos[0], out / f"{name}.png")
        print(json.dumps(summarise([r for r in rows if r["prompt"] == p]) | {"prompt": p}), flush=True)
    train_rows = [r for r in rows if not r["held_out"]]
    held_rows = [r for r in rows if r["held_out"]]
    summary = {"training": summarise(train_rows), "held_out": summarise(held_rows), "all": summarise(rows)}
    measured = {
        "direction_train": summary["training"].get("direction_ok"),
        "direction_held_out": summary["held_out"].get("direction_ok"),
        "colour": summary["all"]["colour_ok"],
        "present": summary["all"]["present"],
    }
    targets = {k: {"target": t, "measured": measured[k], "met": measured[k] is not None and measured[k] >= t}
               for k, t in TARGETS.items()}  # fmt: skip
    result = {
        "checkpoint": str(checkpoint),
        "settings": {
            "seeds": seeds,
            "steps": steps,
            "guidance": guidance,
            "guidance_rescale": guidance_rescale,
            "frames": CLIP,
            "size": size,
            "schedule": {k: pipe.scheduler_config.get(k) for k in SCHEDULE_KEYS},
        },
        "held_out_prompts": sorted(held & set(prompts)),
        "targets": targets,
        "summary": summary,
        "videos": rows,
    }
    if run_dir is not None:
        result["training"] = loss_plot(run_dir, out / "loss.png")
    (out / "report.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.learn_video", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write the training clips in WebVid's layout")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--per-combo", type=int, default=16, help="source videos per (colour, direction, shape)")
    b = sub.add_parser("base", help="small random VidRD with an autoencoder-fitted VAE")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--vae-steps", type=int, default=3000)
    b.add_argument("--vae-from", type=Path, help="an earlier base's fitted VAE folder (BASE/vae), used instead of "
                   "fitting one: latents made with it stay valid")  # fmt: skip
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--schedule", choices=("zero-snr", "sd"), default="zero-snr",
                   help="zero-snr: v-prediction on the zero-terminal-SNR schedule (default); sd: SD 2.1 base's "
                   "epsilon schedule (runs 1 and 2: the motion followed the seed, not the caption)")  # fmt: skip
    r = sub.add_parser("report", help="generate, measure, plot (see the module docstring)")
    r.add_argument("--checkpoint", type=Path, required=True, help="the exported VidRD folder")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--run-dir", type=Path, help="the training run (its logs give the loss curve)")
    r.add_argument("--prompts", type=Path, help="prompts, one per line (default: all 32 combinations)")
    r.add_argument("--seeds", type=int, default=16, help="videos per prompt (default 16)")
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--guidance", type=float, default=7.5)
    r.add_argument("--guidance-rescale", type=float, help="default: 0.7 for a zero-terminal-SNR checkpoint, else 0")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--force", action="store_true", help="replace an existing report in --out")
    a = ap.parse_args(argv)
    if a.cmd == "data":
        print(f"{make_data(a.out, a.per_combo)} clips in WebVid layout under {a.out}")
    elif a.cmd == "base":
        if a.vae_from is not None and not (a.vae_from / "config.json").is_file():
            print(f"learn_video base: {a.vae_from} is not a VAE folder (no config.json)", file=sys.stderr)
            return 2
        check = make_base(a.out, a.vae_steps, a.device, zero_terminal_snr=a.schedule == "zero-snr",
                          vae_from=a.vae_from)  # fmt: skip
        short = {k: check[k] for k in ("colour_ok", "direction_ok", "present") if check[k] < AUTOENCODER_MIN}
        if short:  # the report could never exceed what the autoencoder itself preserves
            print(
                f"learn_video base: the VAE round trip is short of {AUTOENCODER_MIN:.0%} on {short}; "
                "fit longer (--vae-steps)",
                file=sys.stderr,
            )
            return 3
    else:
        try:
            prompts = None if a.prompts is None else read_prompts(a.prompts)
            res = report(a.checkpoint, a.out, a.seeds, prompts, a.run_dir, a.device, a.steps, a.guidance,
                         a.guidance_rescale, force=a.force)  # fmt: skip
        except (ReportError, FileNotFoundError) as e:
            print(f"learn_video report: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"targets": res["targets"], "summary": res["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
