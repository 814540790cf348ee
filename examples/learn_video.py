"""Proof that VidRD learns video (issue 20): motion that follows the caption, held-out combinations, long
videos that keep moving. Everything goes through the product's own commands; this module only makes the
synthetic dataset, the small base model, and the measured report. ``run_learn_video.sh`` chains it all:

1. ``data``: clips of 4 colours x 4 directions x 2 shapes at 2 speeds on flat or textured backgrounds,
   32 frames at 64x64, captioned "a red circle moving left", written in WebVid's published layout. The
   :data:`HELD_OUT` combinations are never written (each of their words appears in other combinations).
2. ``vidrd manifest webvid`` and ``vidrd curate captioned`` turn them into shards.
3. ``base``: a small random VidRD (official layout; v-prediction on the zero-terminal-SNR schedule, see
   :func:`make_base`). Its VAE is random too, so it is first fitted as a plain autoencoder on the clips' frames:
   the stand-in for SD's pretrained VAE, which latent diffusion assumes. ``vidrd latents`` then stores that VAE's
   latents beside the clips, so training neither decodes video nor runs the VAE per step.
4. ``vidrd train fit --config examples/learn_video.yaml`` trains the UNet and the text encoder (a random text
   encoder cannot tell "left" from "right"; the authors' release fine-tuned theirs too); ``vidrd train fit
   --config examples/learn_video_vae.yaml`` fine-tunes the temporal VAE decoder.
5. ``report``: >= 16 seeds per prompt for every training and held-out combination through ``vidrd generate``'s
   pipeline, each video measured (``examples.video_measures``); the long-video ablation (61 frames, FNR /
   PNS / DSG each off in turn) at the clip seams; decoded flicker of the fine-tuned temporal decoder against
   the frozen 2D decoder on the same latents; the loss curve; small videos and frame strips.

    python -m examples.learn_video report --checkpoint runs/lv/export --run-dir runs/lv/train \\
        --vae runs/lv/vae-export/vae --out benchmarks/results/learn_video
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from examples.video_measures import measure, seam_figures
from vidrd.synthetic import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, moving_shape, write_webvid

SIZE, FRAMES, FPS = 64, 32, 8.0
SPEEDS = (1.0, 1.5)
CLIP = 16  # frames the model makes per clip (training reads 16 frames every 2)
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


def all_combos() -> list[tuple[str, str, str]]:
    return list(itertools.product(COLOURS, DIRECTIONS, SHAPES))


def training_combos() -> list[tuple[str, str, str]]:
    return [c for c in all_combos() if c not in HELD_OUT]


# -- 1. data ------------------------------------------------------------------------------------------------


def make_data(root: Path, per_combo: int = 40, frames: int = FRAMES, size: int = SIZE) -> int:
    """The training combinations in WebVid's layout under ``root``; returns how many clips."""
    clips = []
    for n, (c, d, s) in enumerate(training_combos()):
        for k in range(per_combo):
            speed, bg = SPEEDS[k % len(SPEEDS)], BACKGROUNDS[(k // len(SPEEDS)) % len(BACKGROUNDS)]
            seed = 1000 * n + k
            video = moving_shape(c, d, s, frames, size, speed, bg, seed)
            clips.append((f"{n:02d}{k:04d}", video, caption(c, d, s)))
    write_webvid(root, clips, FPS)
    (root / "learn_video.json").write_text(
        json.dumps({"held_out": [caption(*c) for c in HELD_OUT], "per_combo": per_combo, "frames": frames}, indent=1)
    )
    return len(clips)


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
    vae.to(device).eval()
    for k in range(clips):
        c, d, s = combos[(5 * k) % len(combos)]
        truth = moving_shape(c, d, s, CLIP, size, SPEEDS[k % 2], BACKGROUNDS[(k // 2) % 2], seed=90_000 + k)
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
) -> dict:
    """A small random VidRD checkpoint folder with an autoencoder-fitted VAE; returns the VAE's round-trip check
    (also written to ``out/autoencoder_check.json``).

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
    autoencoder = TemporalVAE(**(vae or SMALL_VAE))
    clips = [moving_shape(c, d, s, FRAMES, SIZE, SPEEDS[k % 2], BACKGROUNDS[(k // 2) % 2], seed=70_000 + 8 * n + k)
             for n, (c, d, s) in enumerate(all_combos()) for k in range(8)]  # fmt: skip
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


JUMP = 3.0  # a seam whose largest step is over 3 median steps jumped; the other seams continue, reflect or freeze
LONG_SETTINGS = {
    "FNR + PNS + DSG": {},
    "FNR off": {"fnr": False},
    "PNS off (no new noise)": {"alpha": 1e4},
    "DSG off": {"beta": 0.0},
}
LONG_PROMPTS = ("a red square moving right", "a blue circle moving left", "a yellow circle moving up",
                "a green circle moving down")  # fmt: skip


def seam_kinds(pairs: list[tuple[float, float]]) -> dict[str, float | None]:
    """Share of seams, from (jump ratio, motion after) pairs, that jump, or else continue, reflect or freeze."""

    def share(kind) -> float | None:
        return round(float(np.mean([kind(j, a) for j, a in pairs])), 3) if pairs else None

    return {
        "jumps_at_seam": share(lambda j, a: j > JUMP),
        "continues_after_seam": share(lambda j, a: j <= JUMP and a > 0.25),
        "reflects_at_seam": share(lambda j, a: j <= JUMP and a < -0.25),
        "frozen_after_seam": share(lambda j, a: j <= JUMP and abs(a) <= 0.25),
    }


def long_video_ablation(pipe, settings, seeds: int, out: Path, prompts: tuple[str, ...] = LONG_PROMPTS) -> dict:
    """61 frames (4 clips of 16, M = 8) per direction, with each of FNR, PNS, DSG off in turn."""
    from inference.ablation import seam_steps
    from inference.long_video import LongVideoConfig
    from inference.prompts import VideoRequest

    frames = 61
    seams = seam_steps(frames, CLIP)
    table, tracks, per_video = {}, {}, {}
    for name, change in LONG_SETTINGS.items():
        long = replace(LongVideoConfig(CLIP, 8, 1.0, 1.0), **change)
        s = replace(settings, frames=frames, long=long)
        rows = []
        for p in prompts:
            colour, direction, _ = parse_caption(p)
            reqs = [VideoRequest([p], seed=1000 + k) for k in range(seeds)]
            videos = np.concatenate([f for _, f in pipe.generate(reqs, s, progress=False)], axis=1)
            for k, v in enumerate(videos):
                m = measure(v, colour, direction)
                track = np.array(m["track"], dtype=np.float64)
                rows.append({"prompt": p, "seed": 1000 + k, **seam_figures(track, seams, direction),
                             "direction_ok": m["direction_ok"], "present": m["present"],
                             "track": m["track"]})  # fmt: skip
                if k == 0:
                    tracks[(name, p)] = track
                    if name == "FNR + PNS + DSG":
                        save_strip(v, out / f"long_{colour}-{direction}.png", every=3)
        pairs = [(j, a) for r in rows for j, a in zip(r["jump_ratio"], r["after_motion"], strict=False)
                 if np.isfinite(j) and np.isfinite(a)]  # fmt: skip
        jumps, after = [j for j, _ in pairs], [a for _, a in pairs]
        table[name] = {
            "videos": len(rows),
            "seam_jump_over_median_step": round(float(np.median(jumps)), 2) if jumps else None,
            "after_seam_motion": round(float(np.median(after)), 2) if after else None,
            **seam_kinds(pairs),
            "direction_ok": round(float(np.mean([r["direction_ok"] for r in rows])), 3),
            "present": round(float(np.mean([r["present"] for r in rows])), 3),
        }
        per_video[name] = rows
    plot_tracks(tracks, seams, out / "long_video_tracks.png", prompts)
    # Per video: the seam figures and the object's centroid per frame, so a later measure can be re-run on them.
    return {"frames": frames, "clip_frames": CLIP, "prompt_frames": 8, "seams": seams, "settings": table,
            "videos": per_video}  # fmt: skip


def plot_tracks(tracks: dict, seams: list[int], path: Path, prompts: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(prompts), figsize=(4 * len(prompts), 3.2), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, p in zip(axes, prompts, strict=True):
        _, direction, _ = parse_caption(p)
        e = np.array(DIRECTIONS[direction], dtype=np.float64)
        for name in LONG_SETTINGS:
            if (name, p) in tracks:
                t = tracks[(name, p)]
                ax.plot((t - t[np.isfinite(t).all(axis=1)].mean(axis=0)) @ e, label=name)
        for s in seams:
            ax.axvline(s + 0.5, color="grey", lw=0.6, ls="--")
        ax.set_title(p, fontsize=9)
        ax.set_xlabel("frame")
    axes[0].set_ylabel("position along the caption's direction (px, from the mean)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def vae_flicker(pipe, finetuned_vae: Path, device: str, clips: int = 24, size: int = SIZE) -> dict:
    """Frame-to-frame error of decoded real clips: frozen 2D decoder (each frame alone) against the fine-tuned
    temporal decoder, from the same latents (the frozen encoder's means)."""
    from training.model.vae import TemporalVAE

    tuned = TemporalVAE.from_pretrained(str(finetuned_vae)).to(device).eval()
    combos = all_combos()
    rows = {"2d": [], "temporal": []}
    for k in range(clips):
        c, d, s = combos[k % len(combos)]
        truth = moving_shape(c, d, s, CLIP, size, SPEEDS[k % 2], BACKGROUNDS[(k // 2) % 2], seed=50_000 + k)
        x = as_tensor(truth, device)
        with torch.no_grad():
            z = pipe.vae.encode(x.to(pipe.dtype), sample=False)
            outs = {
                "2d": pipe.vae.decode(z, temporal=False),
                "temporal": tuned.decode(z.to(tuned.dtype), temporal=True),
            }
        for name, y in outs.items():
            y = y.float().clamp(-1, 1)
            dy, dx = y[:, :, 1:] - y[:, :, :-1], x[:, :, 1:] - x[:, :, :-1]
            rows[name].append(((dy - dx).abs().mean().item(), (y - x).abs().mean().item()))
    return {
        name: {"frame_change_error": round(float(np.mean([r[0] for r in v])), 5),
               "reconstruction_l1": round(float(np.mean([r[1] for r in v])), 5), "clips": len(v)}
        for name, v in rows.items()
    }  # fmt: skip


def report(
    checkpoint: Path,
    out: Path,
    seeds: int = 16,
    prompts: list[str] | None = None,
    run_dir: Path | None = None,
    vae: Path | None = None,
    device: str = "cpu",
    steps: int = 30,
    guidance: float = 7.5,
    guidance_rescale: float | None = None,
    long_seeds: int = 2,
    videos_per_prompt: int = 2,
    force: bool = False,
    long_prompts: tuple[str, ...] = LONG_PROMPTS,
    vae_clips: int = 24,
    size: int = SIZE,
) -> dict:
    """Generate, measure and write ``out/report.json`` plus the pictures and small videos.

    ``guidance_rescale`` None: 0.7 for a zero-terminal-SNR checkpoint (Lin et al.'s value), else 0."""
    from inference.long_video import LongVideoConfig
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
                                  height=size, width=size, long=LongVideoConfig(CLIP, 8, 1.0, 1.0))  # fmt: skip
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
            rows.append({**row, **{k: x for k, x in m.items() if k != "track"}})
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
    if long_seeds:
        result["long_video"] = long_video_ablation(pipe, settings, long_seeds, out, long_prompts)
    if vae is not None:
        result["vae_flicker"] = vae_flicker(pipe, vae, device, vae_clips, size)
    (out / "report.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.learn_video", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write the training clips in WebVid's layout")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--per-combo", type=int, default=40, help="clips per (colour, direction, shape)")
    b = sub.add_parser("base", help="small random VidRD with an autoencoder-fitted VAE")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--vae-steps", type=int, default=3000)
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--schedule", choices=("zero-snr", "sd"), default="zero-snr",
                   help="zero-snr: v-prediction on the zero-terminal-SNR schedule (default); sd: SD 2.1 base's "
                   "epsilon schedule (runs 1 and 2: the motion followed the seed, not the caption)")  # fmt: skip
    r = sub.add_parser("report", help="generate, measure, plot (see the module docstring)")
    r.add_argument("--checkpoint", type=Path, required=True, help="the exported VidRD folder")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--run-dir", type=Path, help="the training run (its logs give the loss curve)")
    r.add_argument("--vae", type=Path, help="the fine-tuned temporal VAE folder (vae/ of the VAE run's export)")
    r.add_argument("--prompts", type=Path, help="prompts, one per line (default: all 32 combinations)")
    r.add_argument("--seeds", type=int, default=16, help="videos per prompt (default 16)")
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--guidance", type=float, default=7.5)
    r.add_argument("--guidance-rescale", type=float, help="default: 0.7 for a zero-terminal-SNR checkpoint, else 0")
    r.add_argument("--long-seeds", type=int, default=2, help="long videos per prompt and setting (0: skip)")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--force", action="store_true", help="replace an existing report in --out")
    a = ap.parse_args(argv)
    if a.cmd == "data":
        print(f"{make_data(a.out, a.per_combo)} clips in WebVid layout under {a.out}")
    elif a.cmd == "base":
        check = make_base(a.out, a.vae_steps, a.device, zero_terminal_snr=a.schedule == "zero-snr")
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
            prompts = None
            if a.prompts is not None:
                prompts = [line.strip() for line in a.prompts.read_text().splitlines() if line.strip()]
            res = report(a.checkpoint, a.out, a.seeds, prompts, a.run_dir, a.vae, a.device, a.steps, a.guidance,
                         a.guidance_rescale, a.long_seeds, force=a.force)  # fmt: skip
        except (ReportError, FileNotFoundError) as e:
            print(f"learn_video report: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"targets": res["targets"], "summary": res["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
