"""``vidrd train fit|validate|test --config C.yaml``: LightningCLI over the VidRD modules and the shard
data module. Configs live in ``training/configs/`` (``tiny.yaml`` for CPU checks, ``sd21-256-8gpu.yaml``
for the paper's setup on one node, ``multinode.yaml`` layered on it); ``--print_config`` shows the
resolved one. ``--ckpt_path last`` resumes (see :mod:`training.datamodule` for what resuming keeps)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from manifests.io import SchemaError
from shards.reader import ShardPathError
from training.data import UnusableDataError
from training.datamodule import ShardDataModule
from training.model.loading import WeightLoadError

CONFIG_DIR = Path(__file__).parent / "configs"


def config_path(name: str) -> str:
    """A shipped config by name (``tiny``, ``sd21-256-8gpu``, ...), or ``name`` itself if it is a path."""
    p = CONFIG_DIR / f"{name}.yaml"
    return str(p) if not os.path.exists(name) and p.exists() else name


class VidRDCLI(LightningCLI):
    """LightningCLI that roots logs and checkpoints at ``trainer.default_root_dir``: metrics in
    ``ROOT/logs/version_N/metrics.csv`` (CSV unless the config names a logger) and checkpoints in
    ``ROOT/checkpoints`` (one folder across runs, so ``--ckpt_path last`` finds the previous run's)."""

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        root = trainer_cfg.get("default_root_dir") or os.getcwd()
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = CSVLogger(root, name="logs")
        for cb in trainer_cfg.get("callbacks") or []:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = os.path.realpath(os.path.join(root, "checkpoints"))
        return super().instantiate_trainer(**kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run LightningCLI with ``argv`` (default: ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # `--config tiny` is short for the shipped training/configs/tiny.yaml
    args = [config_path(a) if i and args[i - 1] == "--config" else a for i, a in enumerate(args)]
    with warnings.catch_warnings():
        # `vidrd train` hands LightningCLI its own argv slice on purpose
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            VidRDCLI(
                L.LightningModule,
                ShardDataModule,
                subclass_mode_model=True,
                args=args,
                seed_everything_default=0,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "vidrd train", "description": __doc__},
            )
        except USER_ERRORS as e:
            if os.environ.get("VIDRD_DEBUG"):
                raise
            print(f"vidrd train: error: {last_line(e)} (VIDRD_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 2
    return 0


# What a wrong setting or wrong data raises: one line naming it, exit 2 (not a traceback).
# Lightning's MisconfigurationException covers trainer settings; an ImportError, an accelerator whose package is
# not installed (e.g. --trainer.accelerator tpu without torch_xla).
USER_ERRORS = (UnusableDataError, ShardPathError, SchemaError, WeightLoadError, FileNotFoundError, ValueError,
               MisconfigurationException, ImportError)  # fmt: skip


def last_line(exc: BaseException) -> str:
    """The message itself, on one line: an error re-raised from a DataLoader worker carries the worker's traceback
    before it (its last line is the message); jsonargparse lists why each type of a setting failed (the useful
    ones are its "Errors:" bullets, not the None alternative)."""
    text = str(exc).strip()
    lines = text.splitlines() or [type(exc).__name__]
    if "Original Traceback" in text:
        return lines[-1].split(f"{type(exc).__name__}: ", 1)[-1]
    if "Errors:" in text:
        bullets = [ln.strip()[2:] for ln in lines if ln.strip().startswith("- ")]
        useful = [b for b in bullets if not b.startswith("Expected a <class 'NoneType'>")]
        if useful:
            return "; ".join(useful)
    return lines[0]


if __name__ == "__main__":
    sys.exit(main())
