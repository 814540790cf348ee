"""A partition, the runner's unit of work and resumption, as one typed value built once on the driver; the one
place a stage object is built; and the writing of a partition's shards and part files, shared by CPU stages
(``curation.runner``) and model stages (``curation.model_pipeline``)."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from curation.stage import BrokenEnvironmentError, Rejected, internal_error
from curation.stage_registry import build_stage
from manifests.io import url_to_fs
from shards.writer import ShardWriter

SHARDS_PER_PARTITION = 1000

logger = logging.getLogger(__name__)


@dataclass
class RunnerConfig:
    """Partitioning, shard sizes and Ray resources of a stage run."""

    rows_per_partition: int = 64
    max_shard_bytes: int = 512 * 1024**2
    max_shard_samples: int = 1000
    seed: int = 0
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0  # a GPU share for each decode task (cut_detector: transnetv2 on cut_device: cuda)
    concurrency: int | None = None
    max_retries: int = 3
    # On a re-run, read and hash every finished shard against its record (finds flipped bytes); False checks
    # existence and size only (no reading).
    check_checksums: bool = True
    # model stages only (curation.model_pipeline)
    model_actors: int = 0  # 0: one per GPU of the cluster (one CPU actor where there is none)
    gpus_per_actor: float | None = None  # None: 1 where the cluster has GPUs, else 0
    num_cpus_per_actor: float = 1.0
    partitions_per_model_call: int = 1

    def __post_init__(self) -> None:
        at_least = {"rows_per_partition": 1, "max_shard_bytes": 1024, "max_shard_samples": 1, "max_retries": 0,
                    "model_actors": 0, "partitions_per_model_call": 1}  # fmt: skip
        for name, low in at_least.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"runner.{name} must be an integer >= {low}, got {v!r}")
        if self.concurrency is not None and (not isinstance(self.concurrency, int) or self.concurrency < 1):
            raise ValueError(f"runner.concurrency must be an integer >= 1 or null, got {self.concurrency!r}")
        for name in ("num_cpus_per_task", "num_cpus_per_actor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"runner.{name} must be a number > 0, got {v!r}")
        if not isinstance(self.num_gpus_per_task, (int, float)) or not 0 <= self.num_gpus_per_task <= 1:
            raise ValueError(f"runner.num_gpus_per_task must be a number in [0, 1], got {self.num_gpus_per_task!r}")
        if self.gpus_per_actor is not None and (
            not isinstance(self.gpus_per_actor, (int, float)) or self.gpus_per_actor < 0
        ):
            raise ValueError(f"runner.gpus_per_actor must be a number >= 0 or null, got {self.gpus_per_actor!r}")


@dataclass(frozen=True)
class Faults:
    """Faults a test injects to show that nothing is lost when workers die (never set in production):
    ``crash_once_dir``: a task whose partition has no marker file there writes one and kills its process halfway
    through the partition (Ray retries it); ``crash_on_id``: the input with this id kills its process every time
    (a "poison" input); ``missing_library``: every input meets a library that does not import (a broken worker
    environment); ``missing_library_once_dir``: only the first task of the run does (one broken process)."""

    crash_once_dir: str | None = None
    crash_on_id: str | None = None
    missing_library: bool = False
    missing_library_once_dir: str | None = None


@dataclass(frozen=True)
class StageSpec:
    """Which stage, with which settings (as given, a JSON object) and run seed: hashable, so each process builds
    the stage once (:func:`stage_for`)."""

    name: str
    config_json: str = "{}"
    seed: int = 0

    @classmethod
    def of(cls, name: str, config: dict[str, Any] | None, seed: int) -> StageSpec:
        return cls(name, json.dumps(config or {}, sort_keys=True), seed)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)


@dataclass(frozen=True)
class ShardLimits:
    """When a partition's writer starts a new shard (``RunnerConfig.max_shard_bytes`` / ``max_shard_samples``)."""

    max_bytes: int = 512 * 1024**2
    max_samples: int = 1000

    @classmethod
    def of(cls, runner: RunnerConfig) -> ShardLimits:
        return cls(runner.max_shard_bytes, runner.max_shard_samples)


@dataclass
class Partition:
    """One partition's work: its rows, the stage (with the run seed, stored only there), where its shards go and
    how they are cut. Built once on the driver; Ray ships it to the task as it is."""

    index: int
    part: str
    source: str
    out: str
    rows: list[dict[str, Any]]
    stage: StageSpec
    limits: ShardLimits = field(default_factory=ShardLimits)
    faults: Faults = field(default_factory=Faults)


@lru_cache(maxsize=4)
def stage_for(spec: StageSpec):
    """The stage of ``spec``, built once per process (Ray reuses worker processes across tasks)."""
    return build_stage(spec.name, spec.config, spec.seed)


def clean_partition(out: str, source: str, index: int) -> None:
    """Remove shards and temporary files an unfinished earlier attempt at partition ``index`` left."""
    fs, root = url_to_fs(out)
    lo, hi = index * SHARDS_PER_PARTITION, (index + 1) * SHARDS_PER_PARTITION
    pat = re.compile(rf"^\.?{re.escape(source)}-(\d{{6,}})\.tar(\..*\.tmp)?$")
    for p in fs.ls(root, detail=False):
        m = pat.match(posixpath.basename(p))
        if m and lo <= int(m.group(1)) < hi:
            fs.rm(p)


def shard_writer(p: Partition) -> ShardWriter:
    """The writer of ``p``'s shards and part files (its own range of shard numbers)."""
    return ShardWriter(p.out, p.source, part=p.part, first_number=p.index * SHARDS_PER_PARTITION,
                       max_bytes=p.limits.max_bytes, max_samples=p.limits.max_samples)  # fmt: skip


def ends_process_when_unusable(task: Callable) -> Callable:
    """A Ray task body that ends its worker process when the process can no longer be trusted, so that Ray runs
    the task again in a new one (``max_retries``):

    * the task is cancelled: Ray cancels a running task (Ray Data does when a run stops early) by raising
      ``KeyboardInterrupt`` wherever the task is, also inside a lazy import of a stage's libraries, and the
      half-imported module then breaks every later task of that process (seen: every input of the next run an
      ``internal_error`` from ``av`` or ``torch``);
    * the stage raised :class:`~curation.stage.BrokenEnvironmentError` (a library that does not import here).
    """

    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except KeyboardInterrupt:
            os._exit(1)
        except BrokenEnvironmentError as e:
            logger.error("%s; ending this worker process so the task runs again in a new one", e)
            logging.shutdown()
            os._exit(1)

    return run


def process_row(stage, row: dict[str, Any], faults: Faults) -> list:
    """``stage.process(row)`` (where a test's poison input kills the process instead)."""
    if faults.crash_on_id is not None and faults.crash_on_id == row["id"]:
        os._exit(1)
    once = faults.missing_library_once_dir and os.path.join(faults.missing_library_once_dir, "missing_library")
    if faults.missing_library or (once and not os.path.exists(once)):
        if once:
            open(once, "w").close()
        importlib.import_module("vidrd_fault_missing_library")
    return stage.process(row)


def write_partition(p: Partition, produce: Callable[[dict[str, Any], int], list]) -> dict[str, Any]:
    """Write one partition: ``produce(row, k)`` gives each row's samples or raises ``Rejected``; any other
    exception becomes an ``internal_error`` reject. Shards first, the part files last."""
    clean_partition(p.out, p.source, p.index)
    samples = rejects = 0
    counters: dict[str, int] = {}
    with shard_writer(p) as w:
        for k, row in enumerate(p.rows):
            try:
                for s in produce(row, k):
                    w.write(s)
                    samples += 1
                    for c in s.events:
                        counters[c] = counters.get(c, 0) + 1
            except Rejected as r:
                w.reject(row["id"], p.stage.name, r.reason, r.message, row["source"], row["uri"])
                rejects += 1
            except Exception as e:  # a bug or an input nobody foresaw: recorded (a broken environment fails the task)
                r = internal_error(e)
                w.reject(row["id"], p.stage.name, r.reason, r.message, row["source"], row["uri"])
                rejects += 1
            if p.faults.crash_once_dir and k == len(p.rows) // 2:
                marker = os.path.join(p.faults.crash_once_dir, p.part)
                if not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)
    if len(w.shards) > SHARDS_PER_PARTITION:
        raise RuntimeError(f"partition {p.part} wrote {len(w.shards)} shards; raise max_shard_bytes/samples")
    return {"part": p.part, "inputs": len(p.rows), "samples": samples, "rejects": rejects,
            "counters_json": json.dumps(counters), "error": ""}  # fmt: skip
