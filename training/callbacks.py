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


def close_finished_epoch(checkpoint: dict[str, Any]) -> bool:
    """Make a checkpoint saved inside an epoch's last training batch resume as "that epoch is done".

    Saved from ``on_train_batch_end`` (``StepCheckpoint``, or any every-N-steps save landing on the last
    batch), Lightning's loop state says the last batch was processed but not completed; on resume Lightning
    then closes that epoch *and* starts counting the next one from it, so every later step runs (and logs, and
    draws its data) one epoch too far. Marking the batch and the epoch completed gives the state an epoch-end
    save would have: the run continues at epoch + 1, batch 0. Returns whether it changed anything.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if not fit:
        return False
    batches, epochs = fit.get("epoch_loop.batch_progress"), fit.get("epoch_progress")
    if not batches or not epochs or not batches.get("is_last_batch"):
        return False
    cur = batches["current"]
    if cur["completed"] != cur["ready"] - 1:
        return False
    batches["total"]["completed"] = batches["total"]["ready"]
    # Lightning counts the interrupted batch as stepped only when it resumes mid-batch; here it was finished.
    state = fit.setdefault("epoch_loop.state_dict", {})
    state["_batches_that_stepped"] = state.get("_batches_that_stepped", 0) + 1
    batches["current"] = {k: 0 for k in batches["current"]}  # the next epoch starts at its first batch
    batches["is_last_batch"] = False
    for part in ("current", "total"):
        epochs[part]["processed"] = epochs[part]["completed"] = epochs[part]["started"]
    return True
