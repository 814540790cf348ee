"""Zero-shot UCF-101 evaluation (paper 5.1, table 1): generate N videos from the paper's 101 prompts
following the training-split class distribution, then FVD (I3D), IS (C3D) and CLIPSIM.

Generated videos are saved (``WORK/videos/{index:05d}_{Class}.mp4``, H.264 crf 10) so metrics can be
recomputed; generation skips videos already on disk (resumable) and video i always uses seed
``seed + i`` whatever the split across devices. Real-video I3D statistics are cached in ``WORK``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from devices import resolve_device
from inference.choices import PAPER_GUIDANCE, PAPER_SIZE, PAPER_STEPS
from inference.eval.metrics import FeatureStats, frechet_distance, inception_score
from inference.eval.ucf101 import allocate, class_distribution, prompts, real_videos
from media.video import VideoDecodeError, decode_frames, encode_mp4

EVAL_FRAMES = 16
PAPER_TABLE_1 = [  # (method, FVD, IS) as the paper reports them (zero-shot UCF-101)
    ("CogVideo", 701.59, 25.27),
    ("Make-A-Video", 367.23, 33.00),
    ("Video LDM", 550.61, 33.45),
    ("VidRD (paper)", 363.19, 39.37),
]


@dataclass
class EvalSettings:
    num_videos: int = 10000
    frames: int = EVAL_FRAMES
    height: int = PAPER_SIZE
    width: int = PAPER_SIZE
    steps: int = PAPER_STEPS
    guidance: float = PAPER_GUIDANCE
    seed: int = 0
    batch: int = 4
    fps: float = 8.0
    negative_prompt: str = ""  # the authors' evaluation: "watermark"
    temporal_decode: bool = True  # False: each frame decoded on its own (the release's pipeline)


@dataclass
class VideoJob:
    index: int
    cls: str
    prompt: str
    path: Path


@dataclass
class Report:
    settings: dict
    class_distribution: str
    generated: int
    real_videos: int
    real_rejected: dict[str, str] = field(default_factory=dict)
    fvd: float | None = None
    is_mean: float | None = None
    is_std: float | None = None
    clipsim: float | None = None


def plan(counts: dict[str, int], settings: EvalSettings, work: Path) -> list[VideoJob]:
    """Which class each of the N videos shows and where it goes (deterministic in the seed)."""
    text = prompts()
    classes = allocate(counts, settings.num_videos, settings.seed)
    return [VideoJob(i, c, text[c], work / "videos" / f"{i:05d}_{c}.mp4") for i, c in enumerate(classes)]


def generate(
    checkpoint: str,
    jobs: Sequence[VideoJob],
    settings: EvalSettings,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
) -> int:
    """Generate this rank's share (``index % world == rank``) of the videos not yet on disk; returns how many."""
    from inference.long_video import LongVideoConfig
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from inference.prompts import VideoRequest

    todo = [j for j in jobs if j.index % world == rank and not j.path.exists()]
    if not todo:
        return 0
    pipe = VidRDPipeline.from_checkpoint(checkpoint, device, dtype)
    gen = GenerationSettings(
        frames=settings.frames, steps=settings.steps, guidance=settings.guidance, height=settings.height,
        width=settings.width, long=LongVideoConfig(clip_frames=settings.frames, prompt_frames=1),
        negative_prompt=settings.negative_prompt, temporal_decode=settings.temporal_decode,
    )  # fmt: skip
    bar = tqdm(total=len(todo), desc=f"generating (rank {rank})", unit="video", disable=not progress)
    for k in range(0, len(todo), settings.batch):
        chunk = todo[k : k + settings.batch]
        reqs = [VideoRequest([j.prompt], seed=settings.seed + j.index) for j in chunk]
        for _, frames in pipe.generate(reqs, gen, progress=False):
            for j, video in zip(chunk, frames, strict=True):
                j.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = j.path.with_suffix(".tmp")
                tmp.write_bytes(encode_mp4(video, settings.fps, crf=10))
                os.replace(tmp, j.path)  # complete files only: a killed run resumes cleanly
        bar.update(len(chunk))
    bar.close()
    return len(todo)


def _device_worker(rank: int, devices: list[str], checkpoint: str, jobs, settings, dtype) -> None:
    generate(checkpoint, jobs, settings, devices[rank], dtype, rank, len(devices), progress=rank == 0)


def generate_everywhere(
    checkpoint: str, jobs: Sequence[VideoJob], settings: EvalSettings, spread: str, dtype: torch.dtype,
    ray_workers: int | None = None, ray_gpus: float = 1.0, devices: Sequence[str] | None = None,
) -> None:  # fmt: skip
    """``spread``: ``local`` (one device: cuda if present), ``gpus`` (a process per device in ``devices``,
    default every visible GPU) or ``ray`` (``ray_workers`` tasks, each with ``ray_gpus`` GPUs, on the Ray
    cluster ``ray.init()`` connects to)."""
    if spread == "gpus":
        devices = list(devices or [f"cuda:{i}" for i in range(torch.cuda.device_count())])
    if spread == "gpus" and len(devices) > 1:
        torch.multiprocessing.spawn(
            _device_worker, args=(devices, checkpoint, list(jobs), settings, dtype), nprocs=len(devices)
        )
    elif spread == "ray":
        import ray

        if not ray.is_initialized():
            ray.init()
        world = ray_workers or max(1, int(ray.cluster_resources().get("GPU", 1)))
        task = ray.remote(num_gpus=ray_gpus)(generate)
        dev = "cuda" if ray_gpus > 0 else "cpu"
        ray.get([task.remote(checkpoint, list(jobs), settings, dev, dtype, r, world, False) for r in range(world)])
    else:
        generate(checkpoint, jobs, settings, resolve_device(), dtype)


def load_video(path: Path, frames: int = EVAL_FRAMES, start: int | None = None) -> np.ndarray:
    """``frames`` consecutive frames (from ``start``, default 0) of a video; ValueError if it has fewer."""
    video, info = decode_frames(str(path))
    if info.frames < frames:
        raise ValueError(f"{info.frames} frames < {frames}")
    s = 0 if start is None else min(start, info.frames - frames)
    return video[s : s + frames]


def real_stats(ucf_root: str, i3d, num_real: int, seed: int, cache_dir: Path, i3d_name: str) -> tuple:
    """I3D statistics of ``num_real`` real clips (16 consecutive frames from a seeded random start),
    cached; returns (stats, rejected {path: reason})."""
    vids = sorted(p for v in real_videos(ucf_root).values() for p in v)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(vids), size=min(num_real, len(vids)), replace=False).tolist())
    key = hashlib.sha1(json.dumps([str(Path(ucf_root).resolve()), pick, i3d_name, EVAL_FRAMES]).encode()).hexdigest()
    cache = cache_dir / f"real_i3d_{key[:12]}.npz"
    rejected_file = cache.with_suffix(".rejected.json")
    if cache.exists():
        try:
            rejected = json.loads(rejected_file.read_text())
            if isinstance(rejected, dict):
                return FeatureStats.load(cache), rejected
        except (OSError, ValueError, RecursionError, KeyError):  # a torn cache entry: computed again below
            pass
    feats, rejected, batch = [], {}, []
    for i in tqdm(pick, desc="real videos (I3D)", unit="video"):
        try:
            batch.append(load_video(vids[i], start=int(rng.integers(0, 1 << 30))))
        except (ValueError, VideoDecodeError) as e:
            rejected[str(vids[i])] = str(e)
        if len(batch) == 16:
            feats += score_by_shape(i3d, batch)
            batch = []
    if batch:
        feats += score_by_shape(i3d, batch)
    stats = FeatureStats.of(np.concatenate(feats))
    cache_dir.mkdir(parents=True, exist_ok=True)
    stats.save(cache)
    rejected_file.write_text(json.dumps(rejected, indent=1))
    return stats, rejected


def score_by_shape(net, videos: list[np.ndarray]) -> list[np.ndarray]:
    """``net`` on a batch of videos that may differ in size (real UCF-101 clips do): one call per run of equal
    shapes, in order (the network's preprocessing resizes each to its input size)."""
    out, run = [], [videos[0]]
    for v in videos[1:]:
        if v.shape == run[-1].shape:
            run.append(v)
        else:
            out.append(net(np.stack(run)))
            run = [v]
    out.append(net(np.stack(run)))
    return out


def _generated(job: VideoJob) -> np.ndarray:
    try:
        return load_video(job.path)
    except (ValueError, VideoDecodeError) as e:  # a damaged saved video: name it, never score around it
        raise ValueError(f"{job.path}: {e}; delete it and rerun with --checkpoint to generate it again") from e


def score_generated(jobs: Sequence[VideoJob], i3d, c3d, clip=None, batch: int = 16) -> dict[str, np.ndarray]:
    """I3D features, C3D probabilities and (when ``clip`` is given) CLIPSIM of the saved videos."""
    feats, probs, sims = [], [], []
    missing = [str(j.path) for j in jobs if not j.path.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} generated videos missing, e.g. {missing[0]}: run generation first")
    for k in tqdm(range(0, len(jobs), batch), desc="generated videos (I3D, C3D)", unit="batch"):
        chunk = jobs[k : k + batch]
        videos = np.stack([_generated(j) for j in chunk])
        feats.append(i3d(videos))
        probs.append(c3d(videos))
        if clip is not None:
            sims += [clip(v, j.prompt) for v, j in zip(videos, chunk, strict=True)]
    return {"i3d": np.concatenate(feats), "c3d": np.concatenate(probs), "clipsim": np.array(sims)}


def markdown(report: Report) -> str:
    """Our numbers next to the paper's table 1."""
    lines = ["| method | FVD (lower is better) | IS (higher is better) |", "| --- | --- | --- |"]
    lines += [f"| {m} | {f:.2f} | {s:.2f} |" for m, f, s in PAPER_TABLE_1]
    is_txt = f"{report.is_mean:.2f} ± {report.is_std:.2f}" if report.is_mean is not None else "-"
    fvd_txt = f"{report.fvd:.2f}" if report.fvd is not None else "-"
    lines.append(f"| **this checkpoint** ({report.generated} videos) | **{fvd_txt}** | **{is_txt}** |")
    if report.clipsim is not None:
        lines.append(f"\nCLIPSIM (mean frame-prompt cosine similarity): {report.clipsim:.4f}")
    lines.append(f"\nClass distribution: {report.class_distribution}; real videos: {report.real_videos}"
                 f" ({len(report.real_rejected)} rejected).")  # fmt: skip
    return "\n".join(lines) + "\n"


def check_work_folder(work: Path, checkpoint: str | None, settings: EvalSettings, counts: dict[str, int]) -> None:
    """Record what the videos in ``work`` are made from; refuse to mix them with other settings (resuming
    with different ones would silently combine two evaluations)."""
    key = {k: v for k, v in asdict(settings).items() if k != "batch"}
    key["counts"] = dict(sorted(counts.items()))
    f = work / "plan.json"
    if f.exists():
        try:
            old = json.loads(f.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise ValueError(f"{f} is not this command's plan ({type(e).__name__}); use another --work") from e
        if not isinstance(old, dict):
            raise ValueError(f"{f} is not this command's plan (a JSON {type(old).__name__}); use another --work")
        if {k: v for k, v in old.items() if k != "checkpoint"} != key:
            raise ValueError(f"{work} holds videos made with other settings ({f}); use another --work")
        if checkpoint is not None and old.get("checkpoint") not in (None, str(Path(checkpoint).resolve())):
            raise ValueError(f"{work} holds videos of {old['checkpoint']}; use another --work for {checkpoint}")
        return
    work.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({**key, "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None}, indent=1))


def evaluate(
    checkpoint: str | None,
    ucf_root: str,
    i3d_path: str,
    c3d_path: str,
    work: Path,
    settings: EvalSettings,
    trainlist: str | None = None,
    clip_path: str | None = None,
    c3d_mean: str | None = None,
    num_real: int = 10000,
    spread: str = "local",
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    ray_workers: int | None = None,
    ray_gpus: float = 1.0,
) -> Report:
    """The whole evaluation; ``checkpoint=None`` recomputes metrics from videos already in ``work``."""
    from inference.eval.c3d import C3DProbabilities
    from inference.eval.i3d import I3DFeatures

    i3d, c3d = I3DFeatures(i3d_path, device), C3DProbabilities(c3d_path, device, mean_file=c3d_mean)  # fail early
    clip = None
    if clip_path:
        from inference.eval.metrics import ClipSimilarity

        clip = ClipSimilarity(clip_path, device)
    dist = class_distribution(ucf_root, trainlist)
    check_work_folder(work, checkpoint, settings, dist.counts)
    jobs = plan(dist.counts, settings, work)
    if checkpoint is not None:
        generate_everywhere(checkpoint, jobs, settings, spread, dtype, ray_workers, ray_gpus)
    real, rejected = real_stats(ucf_root, i3d, num_real, settings.seed, work, Path(i3d_path).name)
    scores = score_generated(jobs, i3d, c3d, clip)
    is_mean, is_std = inception_score(scores["c3d"], splits=min(10, len(jobs)))
    return Report(
        settings=asdict(settings), class_distribution=dist.source, generated=len(jobs), real_videos=real.count,
        real_rejected=rejected, fvd=frechet_distance(FeatureStats.of(scores["i3d"]), real),
        is_mean=is_mean, is_std=is_std, clipsim=float(scores["clipsim"].mean()) if clip is not None else None,
    )  # fmt: skip
