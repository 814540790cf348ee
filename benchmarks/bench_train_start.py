"""What a user waits for from ``vidrd train fit`` at full size : the first step with a
cold and with a warm compile cache, and the real loop's steady samples/s beside the bare UNet step measured in
the same run.

1. A full-size VidRD with random weights (SD 2.1 shapes, ``benchmarks.common.vidrd_components``) is saved as a
   checkpoint folder; synthetic moving-object clips (``vidrd.synthetic``) are written as a shard set with the
   curation's own ``ShardWriter``; ``vidrd latents`` adds the VAE's latents (timed, reported apart).
2. ``vidrd train fit --config training/configs/sd21-256-8gpu.yaml`` (the paper's setup: 8 frames every 4 at
   256x256, temporal layers + spatial transformers, bf16-mixed, EMA, ``fast: true``) on one GPU from the
   latents, twice, each a fresh process with ``VIDRD_CACHE`` pointing at one folder: empty for the ``cold`` row,
   filled by it for the ``warm`` row. Per row: process start to exit (``wall_s``), the first step as the trainer
   reports it (``first training step: ... s``: compiling and the loader's start included) and the median of
   the trainer's logged samples/s (each over a ``--log-every`` window of steps, clocked when the GPU has
   drained; the first window starts after step ``--log-every``, and the first third of the windows is left out)
   (loader, text encode, UNet forward/backward, clipping, AdamW, EMA).
3. In this process, with the GPU free again: ``bench_fast``'s bare step (UNet forward + backward + fused AdamW,
   the same batch, frames, size, trainable set and fast paths), the limit the loop is held to (>= 90%). It keeps
   bf16 weights, as ``bench_fast`` does; the loop keeps fp32 master weights under bf16-mixed autocast. The
   ``bare-mixed`` row is the same bare step with fp32 weights under autocast, as the loop holds them: it splits
   the loop's distance from the bare step into what mixed precision costs and what the loop around it costs.

    python -m benchmarks.bench_train_start --work /tmp/ts [--rows cold,warm,bare,bare-mixed] [--steps 60]
        [--log-every 10] [--json out.json]

A cold compile at full size takes minutes (263 s for the fit's step, 300 s for each bare step on an H200), so on a
machine with a 10-minute call limit split it on the same ``--work``: ``--rows cold``, then ``--rows warm,bare``, then
``--rows bare-mixed``.

``--tiny`` runs it all with the tests' tiny model and config on the CPU (a check of this script, not a figure).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import emit, run_vidrd, save_random_checkpoint, write_results

REPO = Path(__file__).resolve().parents[1]
FULL = dict(config="training/configs/sd21-256-8gpu.yaml", size=256, frames=32, batch=16, clip_frames=8)
TINY = dict(config="training/configs/tiny.yaml", size=32, frames=12, batch=2, clip_frames=4)
TARGET_WARM_FIRST_STEP_S, TARGET_LOOP_SHARE = 60.0, 0.90


def make_shards(folder: Path, clips: int, size: int, frames: int) -> None:
    """``clips`` captioned moving-object clips in the curation's shard format (no Ray needed on the GPU machine)."""
    from media.video import encode_mp4
    from shards.writer import Sample, ShardWriter, finalize
    from vidrd.synthetic import COLOURS, DIRECTIONS, moving_shape

    combos = [(c, d) for c in COLOURS for d in DIRECTIONS]
    with ShardWriter(str(folder), "webvid", max_samples=16) as w:
        for i in range(clips):
            c, d = combos[i % len(combos)]
            mp4 = encode_mp4(moving_shape(c, d, "square", frames, size, 1.0, "textured", seed=i), 8.0)
            meta = {"source": "webvid", "source_id": f"b{i}", "stage": "bench", "frames": frames, "fps": 8.0,
                    "width": size, "height": size}  # fmt: skip
            w.write(Sample(key=f"webvid-b{i}", mp4=mp4, caption=f"a {c} square moving {d}", meta=meta))
    finalize(str(folder))


def fit_row(
    work: Path, state: str, ckpt: Path, latents: Path, shape: dict, steps: int, workers: int, log_every: int
) -> dict:
    root = work / f"fit-{state}"
    shutil.rmtree(root, ignore_errors=True)
    args = [
        "train", "fit", "--config", shape["config"], "--model.init_args.pretrained", str(ckpt),
        "--model.init_args.export_dir", "null", "--data.train", json.dumps([{"path": str(latents)}]),
        "--data.latents", "true", "--data.val", "null", "--data.num_workers", str(workers),
        # A real shard set's epoch is millions of clips; the bench's few clips must not restart workers each epoch.
        "--data.samples_per_epoch", "1000000",
        "--trainer.devices", "1", "--trainer.max_steps", str(steps), "--trainer.log_every_n_steps", str(log_every),
        "--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]  # fmt: skip
    if not shape.get("tiny"):
        args += ["--trainer.strategy", "auto", "--trainer.num_nodes", "1", "--trainer.limit_val_batches", "0"]
    wall, out = run_vidrd(*args, env={"VIDRD_CACHE": str(work / "cache")})
    said = re.search(r"first training step: ([0-9.]+) s", out)
    rates = []
    for f in sorted((root / "logs").glob("version_*/metrics.csv")):
        rates += [float(r["train/samples_per_s"]) for r in csv.DictReader(f.open()) if r.get("train/samples_per_s")]
    steady = rates[len(rates) // 3 :]
    row = {"row": f"vidrd train fit, {state} compile cache", "wall_s": round(wall, 1),
           "first_step_s": float(said.group(1)) if said else None, "steps": steps,
           "steady_samples_per_s": round(statistics.median(steady), 2) if steady else None}  # fmt: skip
    emit(row)
    return row


def bare_row(shape: dict, tiny: bool, mixed: bool = False) -> dict:
    """``bench_fast``'s training step (GPU) at this run's batch; on the CPU (``--tiny``) the same step, plain.
    ``mixed``: fp32 weights under bf16 autocast with its weight-cast cache off, as Lightning's bf16-mixed runs."""
    from benchmarks.bench_fast import bare_step
    from benchmarks.common import cuda_mean, once
    from training.model.fast_paths import FastPaths, apply_fast_paths

    device = "cpu" if tiny else "cuda"
    if tiny:
        from training.model.tiny import TINY_TEXT, TINY_UNET
        from training.model.unet import VidRDUNet

        torch.manual_seed(0)
        m, ctx_dim = VidRDUNet(**TINY_UNET).train(), TINY_TEXT["hidden_size"]
    else:
        from benchmarks.bench_fast import fresh_vidrd

        m, ctx_dim = fresh_vidrd(torch.float32 if mixed else torch.bfloat16).train(), 1024
    m.set_trainable(spatial_transformers=True)
    apply_fast_paths(m, FastPaths.for_training(device))
    b, f = shape["batch"], shape["clip_frames"]

    def fwd(*args: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device, torch.bfloat16, enabled=mixed, cache_enabled=False):
            return m(*args)

    step = bare_step(m, fwd, b, f, shape["size"] // 8, ctx_dim, device)
    first = once(step, cuda=not tiny)
    sec = cuda_mean(step, warmup=2, iters=5, repeats=2) if not tiny else min(once(step) for _ in range(3))
    name = "bare UNet step (bench_fast), fp32 weights, bf16 autocast" if mixed else "bare UNet step (bench_fast)"
    row = {"row": name, "first_step_s": round(first, 1), "ms": round(sec * 1e3, 1),
           "steady_samples_per_s": round(b / sec, 2), "batch": b, "frames": f}  # fmt: skip
    emit(row)
    return row


def verdict(done: dict[str, dict]) -> dict[str, Any]:
    cold, warm, bare, mixed = done["cold"], done["warm"], done["bare"], done.get("bare-mixed")
    loop = warm["steady_samples_per_s"]
    share = loop / bare["steady_samples_per_s"] if loop else None
    out = {
        "first_step_cold_s": cold["first_step_s"],
        "first_step_warm_s": warm["first_step_s"],
        "loop_share_of_bare_step": round(share, 3) if share is not None else None,
    }
    if mixed:  # where the distance is: mixed precision itself, and the loop around the same step
        out["mixed_step_share_of_bare_step"] = round(mixed["steady_samples_per_s"] / bare["steady_samples_per_s"], 3)
        out["loop_share_of_mixed_step"] = round(loop / mixed["steady_samples_per_s"], 3) if loop else None
    out |= {
        "targets": {
            f"warm first step <= {TARGET_WARM_FIRST_STEP_S:g} s": warm["first_step_s"] is not None
            and warm["first_step_s"] <= TARGET_WARM_FIRST_STEP_S,
            f"loop >= {TARGET_LOOP_SHARE:.0%} of the bare step": share is not None and share >= TARGET_LOOP_SHARE,
        },
    }
    emit(out)
    return out


ROWS = ("cold", "warm", "bare", "bare-mixed")
VERDICT_ROWS = ("cold", "warm", "bare")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_train_start", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (checkpoint, shards, cache, runs)")
    ap.add_argument("--rows", default=",".join(ROWS),
                    help="which rows, of cold,warm,bare,bare-mixed (default all); rows measured by earlier calls "
                    "on the same --work are kept in WORK/rows.json, so a run can be split across calls (cold first)",
                    )  # fmt: skip
    ap.add_argument("--steps", type=int, default=60, help="steps per fit")
    ap.add_argument("--log-every", type=int, default=10,
                    help="the fits' log_every_n_steps: one samples/s figure per window of this many steps (the "
                    "GPU drains only at a window's end, as in a real run; training/configs use 50)")  # fmt: skip
    ap.add_argument("--clips", type=int, default=64, help="synthetic clips in the shard set")
    ap.add_argument("--workers", type=int, default=8, help="loader workers per fit")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--tiny", action="store_true", help="tiny model on the CPU: checks the script, measures nothing")
    a = ap.parse_args(argv)
    if not a.tiny and not torch.cuda.is_available():
        ap.error("needs a CUDA GPU (or --tiny for a CPU check of the script)")
    if a.log_every < 1 or a.steps < 2 * a.log_every:
        ap.error(f"--steps must span two --log-every windows at least (a rate needs both ends); got --steps "
                 f"{a.steps} --log-every {a.log_every}")  # fmt: skip
    wanted = [r.strip() for r in a.rows.split(",") if r.strip()]
    if not wanted or any(r not in ROWS for r in wanted):
        ap.error(f"--rows: a comma list of {', '.join(ROWS)}; got {a.rows!r}")
    shape = {**(TINY if a.tiny else FULL), "tiny": a.tiny}
    work = a.work.resolve()
    ckpt, shards, latents, cache = work / "ckpt", work / "shards", work / "latents", work / "cache"
    store = work / "rows.json"
    done: dict[str, dict] = json.loads(store.read_text()) if store.exists() else {}
    if "warm" in wanted and "cold" not in wanted and "cold" not in done:
        ap.error(f"--rows warm needs the cache the cold row fills; no cold row in {store}: run it first")
    if not (ckpt / "unet").is_dir():
        save_random_checkpoint(ckpt, a.tiny)
    if not shards.is_dir():
        make_shards(shards, a.clips, shape["size"], shape["frames"])
    if not (latents / "_latents.json").exists():
        lat_s, _ = run_vidrd("latents", "--pretrained", str(ckpt), "--shards", str(shards), "--out", str(latents),
                         "--size", str(shape["size"]))  # fmt: skip
        done["latents"] = {"row": "vidrd latents", "wall_s": round(lat_s, 1), "clips": a.clips}
        emit(done["latents"])
    workers = 0 if a.tiny else a.workers
    for name in wanted:
        if name == "cold":
            shutil.rmtree(cache, ignore_errors=True)  # the cold row starts from nothing
        if name.startswith("bare"):
            os.environ["VIDRD_CACHE"] = str(cache)  # whatever the fits compiled that the bare step shares
            done[name] = bare_row(shape, a.tiny, mixed=name == "bare-mixed")
        else:
            done[name] = fit_row(work, name, ckpt, latents, shape, a.steps, workers, a.log_every)
        store.write_text(json.dumps(done, indent=1))
    rows = [done[r] for r in ROWS if r in done]
    summary = verdict(done) if all(r in done for r in VERDICT_ROWS) else None
    write_results(a.json, rows, shape={k: v for k, v in shape.items() if k != "tiny"}, latents=done.get("latents"),
                  summary=summary)  # fmt: skip
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
