"""Where a training run's time goes: the loader alone, the step on one fixed in-memory batch, and the two
together (the real loop), for the model, data and trainer settings of a training YAML.

* ``loader``: the config's ``ShardDataModule`` train loader, iterated with nothing else running (samples/s);
* ``step``: ``VidRDModule``'s Lightning step (VAE encode unless the config reads precomputed latents, text
  encode, UNet forward and backward, clipping, AdamW, EMA) replaying one batch the loader made, so no data work;
* ``loop``: the same step fed by the loader, as ``vidrd train fit`` runs it.

The slower of the first two bounds the third; a loop far below both means they compete (for CPU cores).

    python -m benchmarks.bench_train_split --config examples/learn_video.yaml --pretrained runs/lv/base \\
        --shards runs/lv/shards [--steps 150] [--fast] [--parts loader] [--workers N] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader, IterableDataset

from benchmarks.common import emit, write_results
from training.data import ClipConfig, ShardSet
from training.datamodule import ShardDataModule
from training.unet_module import VidRDModule


class StepTimes(L.Callback):
    """Wall-clock time at the end of every training batch (after the GPU finished it)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def steady_seconds(self) -> float:
        """Mean seconds per step over the last two thirds (compiling and warm-up left out)."""
        k = len(self.times) // 3
        return (self.times[-1] - self.times[k]) / (len(self.times) - 1 - k)


class Repeat(IterableDataset):
    def __init__(self, batch: dict[str, Any]):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def datamodule(cfg: dict[str, Any], shards: str | None) -> ShardDataModule:
    data = dict(cfg["data"])
    train = [ShardSet(**t) for t in data.pop("train")]
    if shards:
        train = [ShardSet(path=shards)]
    return ShardDataModule(train, clip=ClipConfig(**data.pop("clip", {})), **data)


def module(cfg: dict[str, Any], pretrained: str | None, fast: bool) -> VidRDModule:
    args = dict(cfg["model"]["init_args"], fast=fast, export_dir=None)
    if pretrained:
        args["pretrained"] = pretrained
    return VidRDModule(**args)


def fit(model: VidRDModule, cfg: dict[str, Any], steps: int, **where: Any) -> float:
    """Seconds per steady step of ``steps`` Lightning steps on ``where`` (a loader or a datamodule)."""
    t = cfg.get("trainer", {})
    timer = StepTimes()
    trainer = L.Trainer(
        accelerator="gpu" if torch.cuda.is_available() else "cpu", devices=1,
        precision=t.get("precision", "32") if torch.cuda.is_available() else "32",
        gradient_clip_val=t.get("gradient_clip_val"), max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[timer],
    )  # fmt: skip
    trainer.fit(model, **where)
    return timer.steady_seconds()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a `vidrd train fit` YAML (model, data, trainer)")
    ap.add_argument("--pretrained", help="override model.init_args.pretrained")
    ap.add_argument("--shards", help="override data.train with this one shard set")
    ap.add_argument("--steps", type=int, default=150, help="steps per measured run (the first third is warm-up)")
    ap.add_argument("--loader-batches", type=int, default=40)
    ap.add_argument("--fast", action="store_true", help="the fast paths (compiled); default: the config's off")
    ap.add_argument("--parts", default="loader,step,loop", help="which of loader, step, loop to measure "
                    "(default: all three; the loader alone needs no GPU)")  # fmt: skip
    ap.add_argument("--workers", type=int, help="override data.num_workers")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - {"loader", "step", "loop"})
    if unknown or not parts:
        ap.error(f"--parts takes loader, step and loop, got {a.parts!r}")
    cfg = yaml.safe_load(Path(a.config).read_text())
    if a.workers is not None:
        cfg["data"]["num_workers"] = a.workers
    dm = datamodule(cfg, a.shards)
    batch = dm.batch_size
    rows: list[dict[str, Any]] = []
    it = iter(dm.train_dataloader())
    first = next(it)  # the step's fixed batch
    if "loader" in parts:
        t0 = time.perf_counter()
        for _ in range(a.loader_batches):
            next(it)
        rows.append({"part": "loader", "samples_per_s": round(a.loader_batches * batch / (time.perf_counter() - t0), 1),
                     "workers": dm.num_workers, "batch": batch})  # fmt: skip
        emit(rows[-1])
    del it
    step = None
    if "step" in parts:
        fixed = {k: first[k] for k in ("video", "latents") if k in first} | {"caption": list(first["caption"])}
        replay = DataLoader(Repeat(fixed), batch_size=None)
        step = fit(module(cfg, a.pretrained, a.fast), cfg, a.steps, train_dataloaders=replay)
        rows.append({"part": "step", "ms": round(1000 * step, 1), "samples_per_s": round(batch / step, 1),
                     "fast": a.fast})  # fmt: skip
        emit(rows[-1])
    if "loop" in parts:
        loop = fit(module(cfg, a.pretrained, a.fast), cfg, a.steps, datamodule=dm)
        rows.append({"part": "loop", "ms": round(1000 * loop, 1), "samples_per_s": round(batch / loop, 1),
                     "of_step": None if step is None else round(step / loop, 3), "fast": a.fast})  # fmt: skip
        emit(rows[-1])
    write_results(a.json, rows, config=a.config)
    return rows


if __name__ == "__main__":
    main()
