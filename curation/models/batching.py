"""Run a model over items in batches; on GPU out-of-memory, retry the same items with half the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def is_oom(e: BaseException) -> bool:
    """CUDA (or other accelerator) out-of-memory, however torch raised it."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


@dataclass
class BatchStats:
    """What a run did: batches run, OOM retries, and the batch size it ended with."""

    batches: int = 0
    oom_retries: int = 0
    final_batch_size: int = 0


def run_batched(
    fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], batch_size: int, stats: BatchStats | None = None
) -> list[R]:
    """``fn`` over ``items`` in order, ``batch_size`` at a time. An out-of-memory error halves the batch
    size and retries the same items (nothing is dropped); it is raised only if one item alone does not
    fit. The smaller size is kept for the rest of the run."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stats = stats if stats is not None else BatchStats()
    out: list[R] = []
    i = 0
    while i < len(items):
        chunk = items[i : i + batch_size]
        try:
            res = fn(chunk)
        except Exception as e:
            if not is_oom(e) or batch_size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            stats.oom_retries += 1
            continue
        if len(res) != len(chunk):
            raise RuntimeError(f"model returned {len(res)} results for {len(chunk)} inputs")
        out.extend(res)
        stats.batches += 1
        i += len(chunk)
    stats.final_batch_size = batch_size
    return out
