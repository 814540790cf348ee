"""Long videos from a model that learned motion: FNR, PNS and DSG (the paper's section 4.3) measured at the seams,
the paper's figure 6 swept, and the temporal VAE decoder's flicker. Everything is generated through
``vidrd generate``'s pipeline and measured from the saved mp4 with the product's measure
(:func:`examples.video_measures.long_video_figures`).

Loops (:data:`LOOPS`), each with its own defaults of M, alpha and beta:

* ``paper``: the paper's equations 6-8 as written (reversed reuse, DSG on the previous clip's trajectory);
* ``official``: the authors' released loop (``--schedule official``: all N frames of every clip kept);
* ``shifted``: the same three mechanisms with the prompt frames in their own order, DSG holding all of them to the
  previous clip's finished latents at every step, and each such step resampled three times (``--reuse shifted``;
  ``inference.long_video``); and its variants (one change each, ``all`` only: three undo one of its changes,
  ``shifted_resample10`` resamples ten times).

Settings (:data:`SETTINGS`): ``all`` (FNR + PNS + DSG at the loop's defaults), ``no_fnr`` (every clip from fresh
noise, DSG kept), ``no_pns`` (FNR alone: no new noise), ``no_dsg`` (beta 0) and ``independent`` (fresh noise, no
DSG: the baseline a long video must beat). Every long video has at least 4 clips and 48 frames.

    python -m examples.learn_long_video --checkpoint runs/lv/export --vae runs/lv/vae-export/vae \\
        --out benchmarks/results/learn_long_video

writes one mp4 per long video, ``report.json`` (``long_videos``: one entry per video; ``summary``; ``sweep``;
``vae_flicker``), ``long_video_tracks.png`` and ``figure6.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from examples.learn_video import CLIP, FPS, SIZE, as_tensor, fast_paths, random_window, read_prompts, source_video
from examples.video_measures import AFTER, colour_labels, grow, long_video_figures, measure
from vidrd.synthetic import COLOURS, DIRECTIONS, SHAPES

MIN_CLIPS, MIN_FRAMES = 4, 48
# Each loop is a schedule and a reuse with their defaults (inference.long_video.LOOP_DEFAULTS) and any changes; the
# variants show what each of the shifted loop's changes does, on the `all` setting only.
LOOPS = {
    "paper": {"schedule": "paper", "reuse": "reversed"},
    "official": {"schedule": "official"},
    "shifted": {"schedule": "paper", "reuse": "shifted"},
    "shifted_no_resample": {"schedule": "paper", "reuse": "shifted", "resample": 1},
    # RePaint (Lugmayr et al. 2022) harmonises the generated part with the given one over ~10 passes; the model of run
    # 1 left the held frames in the new clip's first frames (`jumps_after_seams`), which more passes may cure.
    "shifted_resample10": {"schedule": "paper", "reuse": "shifted", "resample": 10},
    "shifted_trajectory": {"schedule": "paper", "reuse": "shifted", "hold": "trajectory", "staged": True},
    "reversed_finished": {"schedule": "paper", "reuse": "reversed", "hold": "finished", "staged": False,
                          "resample": 3},
}  # fmt: skip
MAIN_LOOPS = ("paper", "official", "shifted")
SETTINGS = {
    "all": {},
    "no_fnr": {"fnr": False},
    "no_pns": {"pns": False},
    "no_dsg": {"beta": 0.0},
    "independent": {"fnr": False, "beta": 0.0},
}
PROMPTS = ("a red square moving right", "a blue circle moving left", "a yellow circle moving up",
           "a green circle moving down")  # fmt: skip
# Figure 6: one parameter at a time around the loop's defaults.
SWEEP = {"prompt_frames": (2, 4, 8, 12), "alpha": (0.0, 0.5, 1.0, 2.0, 4.0), "beta": (0.0, 0.25, 0.5, 0.75, 1.0)}
SWEEP_NAMES = {"prompt_frames": "M", "alpha": "alpha", "beta": "beta"}
CLIP_QUALITY = ("direction_ok", "colour_ok", "present", "flicker_frames", "background_error")


class ReportError(ValueError):
    """A long-video report that cannot be made as asked (the message names the value)."""


def parse_prompt(text: str) -> tuple[str, str, str]:
    """(colour, direction, shape) named in ``text``: each must appear as a word."""
    words = text.lower().replace(",", " ").split()
    found = {}
    for kind, names in (("direction", DIRECTIONS), ("colour", COLOURS), ("shape", SHAPES)):
        hits = [w for w in words if w in names]
        if not hits:
            raise ReportError(f"prompt {text!r} has no {kind} word (one of {', '.join(names)})")
        found[kind] = hits[0]
    return found["colour"], found["direction"], found["shape"]


def check_settings(names: Iterable[str]) -> list[str]:
    """The setting names, or :class:`ReportError` naming one that is not in :data:`SETTINGS`."""
    names = list(names)
    for name in names:
        if name not in SETTINGS:
            raise ReportError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
    return names


@dataclass(frozen=True)
class Run:
    """One group of long videos: a loop, a setting, and (for the sweep) one changed parameter."""

    loop: str
    setting: str = "all"
    param: str | None = None
    value: float | None = None

    def config(self, clip_frames: int = CLIP):
        """The :class:`LongVideoConfig` of this run."""
        from inference.long_video import LongVideoConfig

        cfg = LongVideoConfig.for_schedule(clip_frames=clip_frames, **LOOPS[self.loop])
        if self.param is not None:
            cfg = replace(cfg, **{self.param: int(self.value) if self.param == "prompt_frames" else self.value})
        return replace(cfg, **SETTINGS[self.setting])

    @property
    def name(self) -> str:
        if self.param is None:
            return f"{self.loop}_{self.setting}"
        return f"{self.loop}_{SWEEP_NAMES[self.param]}{self.value:g}"


def video_frames(cfg, frames: int | None = None) -> int:
    """Frames of a long video: at least :data:`MIN_CLIPS` clips and :data:`MIN_FRAMES` frames, in whole clips."""
    if frames is None:
        need = cfg.num_clips(MIN_FRAMES)
        clips = max(MIN_CLIPS, need)
        return cfg.clip_frames + (clips - 1) * cfg.new_frames
    if cfg.num_clips(frames) < 2:
        raise ReportError(
            f"a long video of {frames} frames is one clip of {cfg.clip_frames}; it needs at least 2 clips"
        )
    return frames


def clip_quality(video: np.ndarray, seams: list[int], colour: str, direction: str, labels: np.ndarray) -> dict:
    """Each clip's short-video figures (``examples.video_measures.measure``), averaged over the clips."""
    bounds = [0, *[s + 1 for s in seams], len(video)]
    rows = [measure(video[a:b], colour, direction, labels[a:b]) for a, b in itertools.pairwise(bounds)]
    return {f"clip_{k}": round(float(np.mean([r[k] for r in rows])), 4) for k in CLIP_QUALITY}


def measure_saved(args: tuple[bytes, str, str, str, list[int]]) -> dict:
    """Figures of one saved long video (mp4 bytes), as its report entry holds them (run in worker processes)."""
    from media.video import decode_frames

    mp4, colour, direction, shape, seams = args
    video, _ = decode_frames(mp4)
    labels = colour_labels(video)  # the slow part of every figure below, done once
    figures = long_video_figures(video, colour, direction, shape, seams, labels)
    return {**figures, **clip_quality(video, seams, colour, direction, labels)}


def generate_run(pipe, run: Run, prompts: list[str], seeds: int, settings, frames: int | None = None):
    """(config, videos [B, F, H, W, 3], clip latents) of one run: every prompt with seeds 0..seeds-1."""
    from inference.prompts import VideoRequest

    cfg = run.config()
    s = replace(settings, frames=video_frames(cfg, frames), long=cfg)
    reqs = [VideoRequest([p], seed=k) for p in prompts for k in range(seeds)]
    latents, chunks = [], []
    for i, z0 in enumerate(pipe.latent_clips(reqs, s, progress=False)):
        latents.append(z0)
        chunks.append(pipe.clip_frames(i, z0, s))
    return cfg, np.concatenate(chunks, axis=1)[:, : s.frames], latents


@dataclass
class RunVideos:
    """What one run made, as the report keeps it: its config, each video as mp4 bytes, and the first clips' latents
    (the temporal decoder's flicker check decodes them; kept for that run only)."""

    cfg: object
    mp4s: list[bytes]
    frames: list[int]
    latents: list[torch.Tensor]


def make_run(pipe, run: Run, prompts: list[str], seeds: int, settings, frames: int | None, keep: bool) -> RunVideos:
    """Generate ``run``'s videos and encode them (in the report's process or in a job process)."""
    from media.video import encode_mp4

    cfg, videos, latents = generate_run(pipe, run, prompts, seeds, settings, frames)
    kept = [z.cpu() for z in latents[:2]] if keep else []
    return RunVideos(cfg, [encode_mp4(v, FPS) for v in videos], [int(v.shape[0]) for v in videos], kept)


_JOB_PIPE = None  # a job process's own pipeline, loaded once by _job_start


def _job_start(checkpoint: str, device: str) -> None:
    from inference.pipeline import VidRDPipeline

    global _JOB_PIPE
    _JOB_PIPE = VidRDPipeline.from_checkpoint(checkpoint, device, fast=fast_paths(device))


def _job_run(args: tuple) -> RunVideos:
    return make_run(_JOB_PIPE, *args)


def done(value: RunVideos) -> Future:
    """``value`` as a finished future: the one-process path reads results like the job path."""
    fut: Future = Future()
    fut.set_result(value)
    return fut


def summarise(entries: list[dict]) -> dict:
    """Shares (coherent, no jump, continues, keeps the object) and means over a group of long videos."""
    if not entries:
        return {}

    def share(key: str) -> float:
        return round(float(np.mean([bool(e[key]) for e in entries])), 3)

    after = [a for e in entries for a in e["after_seam"] if a is not None]
    # Where the jumps are: within AFTER steps from a seam (the new clip's first frames) or inside clips.
    near = [any(0 <= v - s < AFTER for s in e["seams"]) for e in entries for v in e["jump_steps"]]
    out = {
        "videos": len(entries),
        "coherent": share("coherent"),
        "no_jump": share("no_jump"),
        "continues": share("continues"),
        "keeps_object": share("keeps_object"),
        "backward_jump_median": round(float(np.median([e["backward_jump"] for e in entries])), 2),
        "backward_jump_max": round(float(np.max([e["backward_jump"] for e in entries])), 2),
        "sideways_jump_max": round(float(np.max([e["sideways_jump"] for e in entries])), 2),
        "after_seam_median": round(float(np.median(after)), 2) if after else None,
        "seams_at_edge": round(float(np.mean([x for e in entries for x in e["at_edge"]])), 3),
        "jumps_per_video": round(len(near) / len(entries), 2),
        "jumps_after_seams": round(float(np.mean(near)), 3) if near else None,
    }
    for k in CLIP_QUALITY:
        out[f"clip_{k}"] = round(float(np.mean([e[f"clip_{k}"] for e in entries])), 4)
    return out


def summaries(entries: list[dict], points: list[tuple]) -> tuple[dict[str, list[dict]], dict, list[dict]]:
    """``(groups, summary, sweep)`` of measured entries: the settings table's groups (``loop/setting``) and their
    summaries, and figure 6's points ``(loop, param, value)``, each summarised from its own videos or, at the loop's
    default value, from the loop's ``all`` group (left out when that group did not run)."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        if e["sweep"] is None:
            groups.setdefault(f"{e['loop']}/{e['setting']}", []).append(e)
    summary = {k: summarise(v) for k, v in groups.items()}
    sweep = []
    for loop, param, value in points:
        key = {"param": SWEEP_NAMES[param], "value": value}
        rows = [e for e in entries if e["loop"] == loop and e["sweep"] == key]
        if rows or f"{loop}/all" in summary:
            figures = summarise(rows) if rows else summary[f"{loop}/all"]
            sweep.append({"loop": loop, "param": param, "value": value, "summary": figures})
    return groups, summary, sweep


def remeasure(folder: Path, workers: int = 1) -> dict:
    """Measure a report's saved videos again with today's measure and rewrite its figures (``report.json``, the
    plots): for a report made before the measure gained a figure. Generates nothing, so it needs no GPU."""
    path = folder / "report.json"
    if not path.is_file():
        raise ReportError(f"{path}: no long-video report to measure again")
    try:
        result = json.loads(path.read_text())
        entries = result["long_videos"]
        jobs = [(e["file"], *parse_prompt(e["prompt"]), e["seams"]) for e in entries]
        points = [(x["loop"], x["param"], x["value"]) for x in result["sweep"]]
        prompts = result["settings"]["prompts"]
    except (ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: not a long-video report ({type(e).__name__}: {e})") from None
    for name, *_ in jobs:
        if not (folder / name).is_file():
            raise ReportError(f"{folder / name}: a video the report lists is missing")
    jobs = [((folder / name).read_bytes(), *rest) for name, *rest in jobs]
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    futures = [pool.submit(measure_saved, job) for job in jobs] if pool else []
    # Nothing is written until every video is measured: a video that does not decode leaves the report as it was.
    for k, e in enumerate(entries):
        try:
            e.update(futures[k].result() if pool else measure_saved(jobs[k]))
        except Exception as err:
            if pool:
                pool.shutdown(cancel_futures=True)
            raise ReportError(f"{folder / e['file']}: cannot be measured ({type(err).__name__}: {err})") from None
    if pool:
        pool.shutdown()
    groups, result["summary"], result["sweep"] = summaries(entries, points)
    if result["sweep"]:
        plot_figure6(result["sweep"], folder / "figure6.png")
    plot_tracks(groups, folder / "long_video_tracks.png", prompts)
    path.write_text(json.dumps(result, indent=1))
    return result


def static_background_flicker(video: torch.Tensor) -> float:
    """Mean absolute frame-to-frame change (0..1) of ``[B, 3, F, H, W]`` pixels in [-1, 1] where no object is near in
    either frame: the backgrounds never move, so any change there is flicker."""
    from inference.pipeline import to_uint8

    frames = to_uint8(video)  # [B, F, H, W, 3]
    x = frames.astype(np.float32) / 255.0
    out = []
    for v, xv in zip(frames, x, strict=True):
        grown = grow(colour_labels(v) >= 0)
        still = ~(grown[1:] | grown[:-1])
        change = np.abs(np.diff(xv, axis=0)).mean(axis=-1)
        out.append(float(change[still].mean()) if still.any() else float("nan"))
    return float(np.nanmean(out))


def vae_flicker(pipe, latents: list[torch.Tensor], finetuned: Path, device: str, clips: int = 24) -> dict:
    """Static-background flicker of the frozen 2D decoder (each frame alone) against the fine-tuned temporal decoder,
    each decoding the same latents: the generated clips' (``latents``), and real clips' encoder samples and means."""
    from training.model.vae import TemporalVAE

    tuned = TemporalVAE.from_pretrained(str(finetuned)).to(device, pipe.dtype).eval()
    sources: dict[str, list[torch.Tensor]] = {"generated": latents, "real_sampled": [], "real_mean": []}
    rng = np.random.default_rng(1)
    combos = [parse_prompt(p) for p in PROMPTS]
    for k in range(clips):
        c, d, s = combos[k % len(combos)]
        x = as_tensor(random_window(source_video(c, d, s, k, 50_000 + k), CLIP, rng), device).to(pipe.dtype)
        with torch.no_grad():
            sources["real_sampled"].append(pipe.vae.encode(x, sample=True))
            sources["real_mean"].append(pipe.vae.encode(x, sample=False))
    out = {}
    for name, zs in sources.items():
        with torch.no_grad():
            flat = [static_background_flicker(pipe.vae.decode(z, temporal=False)) for z in zs]
            temporal = [static_background_flicker(tuned.decode(z, temporal=True)) for z in zs]
        f2, ft = float(np.mean(flat)), float(np.mean(temporal))
        out[name] = {"clips": sum(int(z.shape[0]) for z in zs), "frozen_2d": round(f2, 5), "temporal": round(ft, 5),
                     "reduction": round(1 - ft / f2, 3) if f2 > 0 else None}  # fmt: skip
    return out


def plot_tracks(groups: dict[str, list[dict]], path: Path, prompts: list[str]) -> None:
    """Seed 0's position along the caption's direction per frame, one panel per prompt and loop, a line per
    setting, seams dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = list(dict.fromkeys(e["loop"] for rows in groups.values() for e in rows))
    fig, axes = plt.subplots(len(loops), len(prompts), figsize=(3.6 * len(prompts), 2.8 * len(loops)), squeeze=False)
    for r, loop in enumerate(loops):
        for c, prompt in enumerate(prompts):
            ax = axes[r][c]
            _, direction, _ = parse_prompt(prompt)
            e_dir = np.array(DIRECTIONS[direction], dtype=np.float64)
            seams: list[int] = []
            for rows in groups.values():
                hit = [e for e in rows if e["loop"] == loop and e["prompt"] == prompt and e["seed"] == 0]
                if hit:
                    t = np.array([p if p is not None else (np.nan, np.nan) for p in hit[0]["track"]], dtype=np.float64)
                    ax.plot(t @ e_dir, label=hit[0]["setting"], lw=1)
                    seams = hit[0]["seams"]
            for s in seams:
                ax.axvline(s + 0.5, color="grey", lw=0.5, ls="--")
            ax.set_title(f"{loop}: {prompt}", fontsize=8)
            ax.set_xlabel("frame", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[r][0].set_ylabel("position along the direction (px)", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_figure6(sweep: list[dict], path: Path) -> None:
    """Seam coherence and in-clip quality against M, alpha and beta, a line per loop (the shape of figure 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = list(SWEEP)
    rows = [
        ("coherent", "coherent (share of videos)"),
        ("continues", "motion continues after every seam"),
        ("backward_jump_median", "backward jump (median steps)"),
        ("clip_direction_ok", "in-clip direction correct"),
        ("clip_background_error", "in-clip background error"),
    ]
    fig, axes = plt.subplots(len(rows), len(params), figsize=(4.2 * len(params), 2.3 * len(rows)), squeeze=False)
    loops = list(dict.fromkeys(r["loop"] for r in sweep))
    for c, param in enumerate(params):
        for r, (key, label) in enumerate(rows):
            ax = axes[r][c]
            for loop in loops:
                at = [x for x in sweep if x["loop"] == loop and x["param"] == param]
                pts = sorted((x["value"], x["summary"][key]) for x in at)
                if pts:
                    ax.plot(*zip(*pts, strict=True), "o-", label=loop, ms=3)
            ax.set_ylabel(label, fontsize=7)
            ax.tick_params(labelsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel(SWEEP_NAMES[param])
        axes[0][c].set_title(f"vary {SWEEP_NAMES[param]}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Figure 6 on the moving-object model (paper: more M and reused noise -> more consistency; "
                 "more beta -> better quality)", fontsize=8)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def loop_defaults(loop: str) -> dict[str, float]:
    """The loop's M, alpha and beta (what the sweep varies)."""
    cfg = Run(loop).config()
    return {"prompt_frames": cfg.prompt_frames, "alpha": cfg.alpha, "beta": cfg.beta}


def sweep_order(values: Iterable[float], default: float) -> list[float]:
    """``values`` without ``default``, the lowest and the highest first, then the rest furthest from the default
    first: a curve cut short by the time budget still spans its range."""
    rest = sorted((v for v in values if v != default), key=lambda v: -abs(v - default))
    ends = list(dict.fromkeys([min(rest), max(rest)])) if rest else []
    return ends + [v for v in rest if v not in ends]


def plan(loops: list[str], settings: list[str], sweep_loops: list[str]) -> list[Run]:
    """The runs of a report: every setting of the main loops, ``all`` of the variants, then figure 6's sweep for
    ``sweep_loops``, its curves (loop x parameter) taking turns so that a budget cut leaves each of them its ends."""
    runs = [Run(loop, s) for loop in loops for s in (settings if loop in MAIN_LOOPS else ["all"])]
    curves = [[Run(loop, "all", param, v) for v in sweep_order(values, loop_defaults(loop)[param])]
              for loop in sweep_loops for param, values in SWEEP.items()]  # fmt: skip
    runs += [run for turn in itertools.zip_longest(*curves) for run in turn if run is not None]
    return runs


def report(
    checkpoint: Path,
    out: Path,
    vae: Path | None = None,
    prompts: list[str] | None = None,
    seeds: int = 4,
    loops: list[str] | None = None,
    settings_names: list[str] | None = None,
    sweep_loops: list[str] | None = None,
    sweep_seeds: int | None = None,
    device: str = "cpu",
    steps: int = 30,
    guidance: float = 7.5,
    frames: int | None = None,
    workers: int = 1,
    force: bool = False,
    size: int = SIZE,
    vae_clips: int = 24,
    budget_minutes: float | None = None,
    jobs: int = 1,
) -> dict:
    """Generate every run's long videos, save them as mp4, measure them from the files, write ``out/report.json`` and
    the plots. Runs go in :func:`plan`'s order (the settings table, the variants, then the sweeps); once
    ``budget_minutes`` of generating have passed, the remaining runs are skipped and listed in the report.

    ``jobs`` > 1 generates that many runs at once, each job process with its own pipeline on ``device``: a small
    model leaves the GPU idle while one process runs the loop's host side. Every video depends only on its run,
    prompt and seed, so the report is the same for any ``jobs``."""
    from inference.pipeline import GenerationSettings, VidRDPipeline
    from training.model.sampling_defaults import has_zero_terminal_snr

    prompts = list(PROMPTS if prompts is None else prompts)
    if not prompts:
        raise ReportError("the prompt list is empty")
    for name, n in (("seeds", seeds), ("sweep seeds", seeds if sweep_seeds is None else sweep_seeds)):
        if n < 1:
            raise ReportError(f"{name} must be >= 1, got {n}")
    if jobs < 1:
        raise ReportError(f"jobs must be >= 1, got {jobs}")
    if budget_minutes is not None and not budget_minutes > 0:
        raise ReportError(f"the budget must be a number of minutes > 0, got {budget_minutes}")
    parsed = {p: parse_prompt(p) for p in prompts}
    settings_names = check_settings(settings_names or list(SETTINGS))
    loops = list(LOOPS) if loops is None else loops
    sweep_loops = ["paper", "shifted"] if sweep_loops is None else sweep_loops
    for loop in [*loops, *sweep_loops]:
        if loop not in LOOPS:
            raise ReportError(f"unknown loop {loop!r}; known: {', '.join(LOOPS)}")
    runs = plan(loops, settings_names, sweep_loops)
    for run in runs:
        video_frames(run.config(), frames)  # refuses a video shorter than two clips before any work
    if (out / "report.json").exists() and not force:
        raise ReportError(f"{out / 'report.json'} exists (another run's report); pass --force to replace it")
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (checkpoint / part).is_dir():
            raise ReportError(f"{checkpoint}: no {part}/ (not a VidRD checkpoint folder)")
    out.mkdir(parents=True, exist_ok=True)
    pipe = VidRDPipeline.from_checkpoint(str(checkpoint), device, fast=fast_paths(device))
    rescale = 0.7 if has_zero_terminal_snr(pipe.scheduler_config) else 0.0
    base = GenerationSettings(frames=CLIP, steps=steps, guidance=guidance, guidance_rescale=rescale, height=size,
                              width=size)  # fmt: skip
    entries: list[dict] = []
    # The VAE check decodes the first two clips of the first loop's `all` videos (the shifted loop's when it runs).
    flicker_run = Run("shifted" if "shifted" in loops else loops[0], "all")
    flicker_latents: list[torch.Tensor] = []
    # Spawned, not forked: the parent holds a CUDA context, which a forked child must not inherit.
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 else None
    job_pool = None
    if jobs > 1:
        job_pool = ProcessPoolExecutor(jobs, mp_context=spawn, initializer=_job_start,
                                       initargs=(str(checkpoint), device))  # fmt: skip
    pending, skipped = [], []
    started = time.monotonic()
    todo, in_flight = list(runs), deque()
    while todo or in_flight:
        while todo and len(in_flight) < jobs:  # start runs (in plan order) while the budget lasts
            run = todo.pop(0)
            if budget_minutes is not None and time.monotonic() - started > 60 * budget_minutes:
                skipped.append(run.name)
                continue
            n_seeds = seeds if run.param is None or sweep_seeds is None else sweep_seeds
            args = (run, prompts, n_seeds, base, frames, run == flicker_run)
            fut = job_pool.submit(_job_run, args) if job_pool else done(make_run(pipe, *args))
            in_flight.append((run, n_seeds, fut))
        if not in_flight:
            break
        run, n_seeds, fut = in_flight.popleft()
        made = fut.result()
        cfg = made.cfg
        if run == flicker_run:
            flicker_latents = made.latents
        seams = cfg.seam_steps(made.frames[0])
        for b, mp4 in enumerate(made.mp4s):
            prompt, seed = prompts[b // n_seeds], b % n_seeds
            colour, direction, shape = parsed[prompt]
            name = f"{run.name}_{colour}-{shape}-{direction}_s{seed}.mp4"
            (out / name).write_bytes(mp4)
            entry = {"file": name, "prompt": prompt, "seed": seed, "setting": run.setting, "schedule": cfg.schedule,
                     "loop": run.loop, "reuse": cfg.reuse, "hold": cfg.hold, "staged": cfg.staged,
                     "frames": made.frames[b],
                     "clip_frames": cfg.clip_frames, "prompt_frames": cfg.prompt_frames, "alpha": cfg.alpha,
                     "beta": cfg.beta, "fnr": cfg.fnr, "pns": cfg.pns, "resample": cfg.resample,
                     "clips": cfg.num_clips(made.frames[b]),
                     "seams": seams, "sweep": None if run.param is None else {"param": SWEEP_NAMES[run.param],
                                                                               "value": run.value}}  # fmt: skip
            job = (mp4, colour, direction, shape, seams)
            pending.append((entry, pool.submit(measure_saved, job) if pool else measure_saved(job)))
        print(f"{run.name}: {len(made.mp4s)} long videos of {made.frames[0]} frames "
              f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    for entry, fut in pending:
        entry.update(fut.result() if pool else fut)
        entries.append(entry)
    for p in (pool, job_pool):
        if p:
            p.shutdown()
    points = [(r.loop, r.param, r.value) for r in runs if r.param is not None and r.name not in skipped]
    points += [(loop, param, value) for loop in sweep_loops for param, value in loop_defaults(loop).items()]
    groups, summary, sweep = summaries(entries, points)
    loop_info = {k: {**LOOPS[k], **loop_defaults(k)} for k in loops}
    result = {
        "checkpoint": str(checkpoint),
        "settings": {
            "steps": steps, "guidance": guidance, "guidance_rescale": rescale, "size": size, "seeds": seeds,
            "prompts": prompts, "loops": loop_info, "min_clips": MIN_CLIPS, "min_frames": MIN_FRAMES,
        },
        "summary": summary,
        "sweep": sweep,
        "skipped_runs": skipped,
        "long_videos": entries,
    }
    if sweep:
        plot_figure6(sweep, out / "figure6.png")
    plot_tracks(groups, out / "long_video_tracks.png", prompts)
    if vae is not None and flicker_latents:
        result["vae_flicker"] = vae_flicker(pipe, [z.to(pipe.device) for z in flicker_latents], vae, device,
                                            vae_clips)  # fmt: skip
    (out / "report.json").write_text(json.dumps(result, indent=1))
    return result


def names(text: str) -> list[str]:
    """A comma-separated list of names (empty: none)."""
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.learn_long_video", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--checkpoint", type=Path, help="the exported VidRD folder (required unless --remeasure)")
    ap.add_argument("--out", type=Path, help="the report's folder (required unless --remeasure)")
    ap.add_argument("--remeasure", type=Path, metavar="FOLDER", help="measure an existing report's saved videos "
                    "again with today's measure and rewrite its figures; generates nothing")  # fmt: skip
    ap.add_argument("--vae", type=Path, help="the fine-tuned temporal VAE folder (its flicker against the 2D decoder)")
    ap.add_argument("--prompts", type=Path, help="prompts, one per line, each naming a colour, shape and direction")
    ap.add_argument("--seeds", type=int, default=4, help="long videos per prompt and setting (default 4)")
    ap.add_argument("--sweep-seeds", type=int, help="per prompt and swept value (default: --seeds)")
    ap.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated, of {', '.join(LOOPS)}")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--sweep", default="paper,shifted", help="loops whose M, alpha and beta are swept ('' for none)")
    ap.add_argument("--frames", type=int, help=f"frames per long video (default: {MIN_CLIPS} clips, >= {MIN_FRAMES})")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--workers", type=int, default=1, help="processes that measure the saved videos")
    ap.add_argument("--jobs", type=int, default=1, help="runs generated at once, each in its own process on the "
                    "device (the report is the same for any number)")  # fmt: skip
    ap.add_argument("--budget-minutes", type=float, help="stop starting new runs after this long (the rest is listed)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--force", action="store_true", help="replace an existing report in --out")
    a = ap.parse_args(argv)
    if a.remeasure is None and (a.checkpoint is None or a.out is None):
        ap.error("--checkpoint and --out are required (or --remeasure FOLDER)")
    try:
        if a.remeasure is not None:
            res = remeasure(a.remeasure, a.workers)
            print(json.dumps({"summary": res["summary"]}, indent=1))
            return 0
        prompts = None if a.prompts is None else read_prompts(a.prompts)
        res = report(a.checkpoint, a.out, a.vae, prompts, a.seeds, names(a.loops), names(a.settings),
                     names(a.sweep), a.sweep_seeds, a.device, a.steps, a.guidance, a.frames, a.workers,
                     a.force, budget_minutes=a.budget_minutes, jobs=a.jobs)  # fmt: skip
    except (ReportError, FileNotFoundError) as e:
        print(f"learn_long_video: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"summary": res["summary"], "vae_flicker": res.get("vae_flicker")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
