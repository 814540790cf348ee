"""BLIP-2 through LAVIS for ``short-videos`` (``stage.blip2: lavis:blip2_opt:pretrain_opt2.7b``): the model runs in
LAVIS's own environment (``vidrd env lavis``) as a server process (``lavis_side.py serve``) owned by the stage's
model actor, which sends it batches of (frame, prompt) and reads back captions, so batching, fallbacks and
``.json`` fields are the transformers backend's. A server that dies fails the batch it was given (its rows become
``model_failed`` rejects in the model pipeline) and is started again for the next one."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curation.models import lavis_env
from curation.models.lavis_side import read_message, write_message


class LavisBlip2:
    """``caption(images, prompts)`` like :class:`~curation.models.blip2.Blip2Captioner`, answered by LAVIS."""

    def __init__(self, spec: str, device: str = "cpu", max_new_tokens: int = 30, batch_size: int = 16):
        self.spec, self.device = spec, device
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.name = "lavis:tiny-random" if spec.startswith("tiny:") else f"lavis:{spec}"
        self.python = lavis_env.python()  # missing or broken: a LavisEnvError naming the command that makes it
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="vidrd-lavis-", suffix=".log")[1])
        self._start()

    def _start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.python), str(lavis_env.SIDE), "serve", "--model", self.spec, "--device", self.device],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
        if read_message(self.proc.stdout) is None:
            raise lavis_env.LavisEnvError(f"the LAVIS server for {self.spec} did not start: {self._log_tail()}")

    def _log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "no output"

    def caption(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]:
        """One caption per (image, prompt), greedy, at most ``max_new_tokens`` tokens."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()  # died on an earlier batch: that batch failed; this one gets a fresh server
        out: list[str] = []
        for i in range(0, len(images), self.batch_size):
            try:
                write_message(self.proc.stdin, {"images": [np.asarray(im) for im in images[i : i + self.batch_size]],
                                                "prompts": list(prompts[i : i + self.batch_size]),
                                                "max_new_tokens": self.max_new_tokens})  # fmt: skip
                reply = read_message(self.proc.stdout)
            except (BrokenPipeError, OSError):
                reply = None
            if reply is None:
                code = self.proc.wait()
                raise RuntimeError(f"the LAVIS server died mid-batch (exit {code}): {self._log_tail()}")
            out += reply["captions"]
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to do
            self.close()
