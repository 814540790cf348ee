"""``vidrd demo --out DIR``: the whole system on the embedded default (synthetic data, local files).

Each step prints what it did and where its output is. Steps whose issue has not landed yet are
listed at the end as not run, so the demo always runs everything that exists and says what does not.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import time
from pathlib import Path

SD_FOLDER = "stable-diffusion-2-1-base"
# Source -> the stage that curates it.
CURATION = {"webvid": "captioned", "tgif": "captioned", "vatex": "captioned", "pexels": "captioned",
            "laion": "pseudo-videos", "kinetics700": "short-videos", "moments": "short-videos",
            "videolt": "long-videos"}  # fmt: skip
# Small outputs for a quick demo; the model stages run tiny random models unless --weights-dir has real ones.
STAGE_CONFIG = {
    "captioned": {"short_side": 64},
    "pseudo-videos": {"short_side": 64, "min_side": 200},
    "short-videos": {"short_side": 64, "blip2": "tiny"},
    # the tiny models' scores are noise, so the CLIP gate is open and MiniGPT-4's coin flips decide
    "long-videos": {"short_side": 64, "sample_every": 0.5, "clip_threshold": -1.0, "min_segment_seconds": 1.0,
                    "max_segment_seconds": 4.0, "min_frames": 8, "clip": "tiny", "minigpt4_blip2": "tiny",
                    "minigpt4_llm": "tiny", "minigpt4_checkpoint": "tiny"},
}  # fmt: skip
BLIP2_FOLDER, CLIP_FOLDER = "blip2-opt-2.7b", "clip-vit-large-patch14"
MINIGPT4 = {"minigpt4_blip2": "blip2-flan-t5-xxl", "minigpt4_llm": "vicuna-7b-v0",
            "minigpt4_checkpoint": "pretrained_minigpt4_7b.pth"}  # fmt: skip


def model_weights(weights_dir: str | None) -> dict[str, dict[str, str]]:
    """Stage settings that point the model stages at real weights under ``--weights-dir`` (those present)."""
    if not weights_dir:
        return {}
    root = Path(weights_dir)
    out: dict[str, dict[str, str]] = {}
    if (root / BLIP2_FOLDER).is_dir():
        out["short-videos"] = {"blip2": str(root / BLIP2_FOLDER)}
    lv: dict[str, str] = {}
    if (root / CLIP_FOLDER).is_dir():
        lv["clip"] = str(root / CLIP_FOLDER)
    if all((root / v).exists() for v in MINIGPT4.values()):
        lv.update({k: str(root / v) for k, v in MINIGPT4.items()})
    if lv:
        out["long-videos"] = lv
    return out


def weights_source(weights_dir: str | None) -> str:
    """What the trainer starts from: SD 2.1 under ``--weights-dir`` when given, else tiny random weights."""
    if not weights_dir:
        return "tiny"
    sd = Path(weights_dir) / SD_FOLDER
    if not (sd / "unet" / "config.json").exists():
        raise SystemExit(f"--weights-dir: {sd}/unet/config.json not found (expected SD 2.1 in diffusers layout there)")
    return str(sd)


def latest_metrics(root: Path) -> Path:
    return sorted((root / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))[-1]


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `vidrd --help` builds this command's parser without torch or Ray.
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from inference.prompts import VideoRequest
    from inference.video_out import FrameSink
    from manifests.build import build_manifest
    from training.cli import main as train_main
    from training.model.loading import load_vidrd
    from vidrd.synthetic import make_all

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"[1] synthetic sources in each dataset's published layout -> {out / 'sources'}")
    roots = make_all(out / "sources")
    print(f"[2] source manifests -> {out / 'manifests'}")
    totals = {}
    for source, root in roots.items():
        s = build_manifest(source, str(root), str(out / "manifests" / f"{source}.parquet"))
        totals[source] = (s.rows, s.rejects)
        print(f"    {s.line()}")
    print(f"[3] curation stages on a local Ray -> {out / 'shards'}")
    import ray

    from curation.inspect.commands import show_sample
    from curation.inspect.verify import verify
    from curation.runner import RunnerConfig, run_stage
    from shards.reader import list_shards, load_index

    # address="local": a Ray of the demo's own, even where a cluster started with `ray start` is running.
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    samples, rejects, events = {}, {}, {}
    real = model_weights(args.weights_dir)
    tiny = "TINY RANDOM models (captions and relevance are noise); for real ones see --weights-dir in the README"
    for stage in ("short-videos", "long-videos"):
        print(f"    {stage}: " + (f"weights from --weights-dir: {real[stage]}" if stage in real else tiny))
    for source, stage in CURATION.items():
        shard_out = out / "shards" / source
        cfg = {**STAGE_CONFIG[stage], **real.get(stage, {})}
        s = run_stage(stage, str(out / "manifests" / f"{source}.parquet"), str(shard_out), cfg,
                      RunnerConfig(rows_per_partition=2), progress=False)  # fmt: skip
        print(f"    {s.line()}")
        rep = verify(list_shards(str(shard_out)), str(shard_out))
        print(f"    verify {source}: {'OK' if rep.ok else rep.problems}")
        samples[source], rejects[source], events[source] = s.samples, s.rejects, s.events
    ray.shutdown()
    sheet = out / "shard_contact_sheet.png"
    first = load_index(str(out / "shards" / "webvid")).column("key")[0].as_py()
    with contextlib.redirect_stdout(io.StringIO()):  # `vidrd shards show` prints the sample's metadata
        show_sample(str(out / "shards" / "webvid"), first, 8, str(sheet))
    print(f"    contact sheet of {first}: {sheet}")
    segment_sheet = out / "long_video_segment.png"
    if samples.get("videolt"):
        seg = load_index(str(out / "shards" / "videolt")).column("key")[0].as_py()
        with contextlib.redirect_stdout(io.StringIO()):
            show_sample(str(out / "shards" / "videolt"), seg, 8, str(segment_sheet))
        print(f"    a VideoLT segment with its keep/drop timeline: {segment_sheet}")
    ckpt = out / "checkpoint"
    pretrained = weights_source(args.weights_dir)
    print(f"[4] vidrd train fit --config tiny on the shards ({args.train_steps} steps) -> {out / 'train'}")
    if pretrained == "tiny":
        print("    TINY RANDOM WEIGHTS (an untrained SD-2-shaped model, so generated frames are noise-like);")
        print("    give --weights-dir DIR with DIR/stable-diffusion-2-1-base (diffusers layout) to start from SD 2.1")
    train_args = [
        "fit", "--config", "tiny", "--model.init_args.pretrained", pretrained,
        "--model.init_args.export_dir", str(ckpt), "--trainer.default_root_dir", str(out / "train"),
        "--trainer.max_steps", str(args.train_steps), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.train", json.dumps([{"path": str(out / "shards" / s), "weight": 1.0} for s in samples if samples[s]]),
    ]  # fmt: skip
    train_main(train_args)
    with latest_metrics(out / "train").open() as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    print(f"    loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps; checkpoint (EMA weights) -> {ckpt}")
    video = out / "long_video.mp4"
    long = LongVideoConfig(clip_frames=8, prompt_frames=4, alpha=1.0, beta=1.0)
    settings = GenerationSettings(frames=36, steps=10, guidance=7.5, height=64, width=64, long=long)
    print(f"[5] a 36-frame video, clips of N=8 with M=4 prompt frames, FNR/PNS/DSG -> {video}")
    sink, strip = FrameSink(video, fps=8), FrameSink(out / "long_video_strip.png")
    pipe = VidRDPipeline(load_vidrd(str(ckpt)))
    for _, frames in pipe.generate([VideoRequest(["a red square moving right"])], settings, progress=False):
        sink.write(frames[0])
        strip.write(frames[0][::4])
    sink.close()
    strip.close()
    print(f"    {sink.count} frames written; frame strip: {out / 'long_video_strip.png'}")
    print(f"\nsummary ({time.perf_counter() - t0:.1f} s):")
    for source, (rows, rej) in totals.items():
        shard = (
            f", {samples[source]} samples / {rejects[source]} rejects in shards/{source}" if source in samples else ""
        )
        ev = "".join(f", {k} {v}" for k, v in sorted(events.get(source, {}).items()))
        print(f"    {source:12s} {rows:3d} manifest rows, {rej} manifest rejects{shard}{ev}")
    print(f"    training     {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, checkpoint {ckpt}")
    print(f"    long video   {sink.count} frames, {video}")
    print(
        f"    pictures     {sheet.name} (a curated sample), long_video_strip.png (the generated video)"
        + (f", {segment_sheet.name} (a VideoLT segment and its timeline)" if samples.get("videolt") else "")
    )
    print(f"    outputs: {out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd demo``."""
    p = sub.add_parser(
        "demo",
        help="run the whole system end to end on synthetic data (no weights, no network)",
        description="Make small synthetic datasets in each source's published layout, build their "
        "manifests, and run every part of the system that exists on them.",
    )
    p.add_argument("--out", required=True, help="folder for everything the demo makes")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs for the local Ray (default 2)")
    p.add_argument(
        "--weights-dir",
        help=f"folder with real weights: {SD_FOLDER}/ (SD 2.1 in diffusers layout) starts the trainer from SD 2.1; "
        "without it everything uses tiny random weights (see README, 'Weights')",
    )
    p.add_argument("--train-steps", type=int, default=6, help="training steps of the tiny model (default 6)")
    p.set_defaults(func=run)
