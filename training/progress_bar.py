"""Step values on the progress bar without making every training step wait for the GPU.

Lightning turns every value logged with ``prog_bar=True`` into a Python number after each step (``.item()`` in its
logger connector), whether or not a bar is shown or refreshed. For a GPU tensor that is a wait for the GPU every
step: the host cannot queue the next step's launches while the GPU works, and on an H200 the full-size loop idled
the GPU for it (a full-size profile).
So the modules log their step losses for the logger only (read at its every-N-steps
writes) and put host copies on the bar at those same steps, where the GPU drains anyway; Lightning reads a host
tensor for free, and the bar shows it until the next write.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch import LightningModule


def log_steps_due(module: LightningModule, step: int) -> bool:
    """Whether ``step`` (counted from 1 after the step) is one of the logger's every-N-steps writes."""
    every = module.trainer.log_every_n_steps
    return bool(every) and step % every == 0


def show_on_progress_bar(module: LightningModule, values: Mapping[str, torch.Tensor | None]) -> None:
    """Put host copies of ``values`` on the progress bar (not the logger); call it at the logger's steps, since the
    copy waits for the GPU. ``None`` values are left out."""
    for name, value in values.items():
        if value is not None:
            host = value.detach().float().cpu()
            module.log(name, host, on_step=True, on_epoch=False, prog_bar=True, logger=False)
