"""Callbacks: checkpoints at the end of fit, and an audit of what each rank read."""

from __future__ import annotations

import json
import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class SeenSamples(L.Callback):
    """Append, per rank, one JSON line per training batch (step, epoch, worker, keys) to
    ``dirpath/rank{R}.jsonl``: which samples each rank trained on, for audits and DDP checks."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        os.makedirs(self.dirpath, exist_ok=True)
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "batch_idx": batch_idx,
            "worker": batch.get("worker"),
            "keys": list(batch["key"]),
        }
        with open(os.path.join(self.dirpath, f"rank{trainer.global_rank}.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` every N steps that also writes ``last.ckpt`` at the final step (``max_steps``)
    and when ``fit`` stops otherwise (``max_time``, end of epochs), so a resumed run never repeats steps.

    The final-step save happens inside the step, like the every-N-steps ones, so resuming from it
    continues the same epoch at the next batch (a save from ``on_train_end`` would start a new epoch).
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        final = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if final and self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
