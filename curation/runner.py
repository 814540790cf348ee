"""Run a curation stage over a source manifest on Ray Data, resumably and without losing a row.

* The manifest is sorted by id and cut into fixed partitions of ``rows_per_partition`` rows, so the
  same manifest always gives the same partitions.
* Each partition is one Ray task (``Dataset.map`` over partition descriptors, streamed, retried by
  Ray when a worker dies). It writes its own shards (``{source}-{NNNNNN}.tar``, numbers
  ``1000 p .. 1000 p + 999``) and, last, its part files (``_parts/<part>.index/rejects.parquet``).
* A re-run skips partitions whose part files exist and redoes the rest from scratch (stale shards
  and temporary files of an unfinished partition are removed first), so a killed run resumes with
  no duplicate and no missing sample. ``_run.json`` pins the manifest and configuration an output
  folder was made with; a re-run with different ones is refused rather than mixed.
* Every input row ends as samples or as a reject row; an unexpected error in a stage becomes an
  ``internal_error`` reject with the exception, never a crashed job. The summary checks
  ``inputs == inputs with samples + rejects``. A library that does not import in a worker is no input's fault
  (``curation.stage.BrokenEnvironmentError``): the task runs again in a new process, and where every retry
  fails the same way the run stops with that error, the partitions not done left for the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.model_stage import ModelStage, ModelUnavailableError
from curation.output_lock import exclusive_output
from curation.partition import (
    Faults,
    Partition,
    RunnerConfig,
    ShardLimits,
    StageSpec,
    build_stage,
    clean_partition,
    ends_process_when_unusable,
    process_row,
    shard_writer,
    stage_for,
    write_partition,
)
from curation.stage import BrokenEnvironmentError, Rejected, broken_environment, internal_error
from manifests.io import join, read_table, url_to_fs, write_atomic
from manifests.schema import INDEX_SCHEMA, REJECTS_SCHEMA, SOURCE_SCHEMA, RejectReason
from shards.writer import PARTS_DIR, complete_parts, damaged_parts, finalize, forget_part

logger = logging.getLogger(__name__)

__all__ = ["Faults", "RunMismatchError", "RunSummary", "RunnerConfig", "build_stage", "run_stage"]

RUN_FILE = "_run.json"


class RunMismatchError(RuntimeError):
    """The output folder was started with another manifest or configuration."""


@dataclass
class RunSummary:
    """Counts of one run; ``ok`` when inputs == inputs that produced samples + rejects."""

    stage: str
    out: str
    inputs: int
    produced: int
    samples: int
    rejects: int
    partitions: int
    skipped: int
    seconds: float
    repaired: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    # events samples reported in this run (e.g. caption fallbacks), not counted again for resumed parts
    events: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.inputs == self.produced + self.rejects

    def line(self) -> str:
        rate = self.inputs / self.seconds if self.seconds > 0 else 0.0
        why = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        check = "OK" if self.ok else "MISMATCH"
        events = "".join(f"; {k}: {v}" for k, v in sorted(self.events.items()))
        return (
            f"{self.stage}: {self.inputs} inputs = {self.produced} with samples + {self.rejects} rejects [{check}]; "
            f"{self.samples} samples in {self.out}; rejects: {why}; {self.partitions} partitions "
            f"({self.skipped} already complete, {self.repaired} damaged and redone); {self.seconds:.1f} s, "
            f"{rate:.2f} inputs/s{events}"
        )


def partition_name(source: str, stage: str, index: int) -> str:
    return f"{source}-{stage}-p{index:05d}"


def _source_of(table: pa.Table) -> str:
    sources = sorted(set(table.column("source").to_pylist()))
    return sources[0] if len(sources) == 1 else "mixed"


@ends_process_when_unusable
def process_partition(item: dict[str, Any]) -> dict[str, Any]:
    """Ray task body: run the stage over one partition's rows and write its shards and part files."""
    p: Partition = item["partition"]
    stage = stage_for(p.stage)
    return write_partition(p, lambda row, _k: process_row(stage, row, p.faults))


@ends_process_when_unusable
def _row_task(
    p: Partition, row: dict[str, Any]
) -> tuple[list, Rejected | ModelUnavailableError | BrokenEnvironmentError | None]:
    """One row alone (the isolation fallback): samples, or the stage's reject."""
    try:
        return process_row(stage_for(p.stage), row, p.faults), None
    except Rejected as r:
        return [], r
    except ModelUnavailableError as e:  # no property of this row: handed back, never a reject
        return [], e
    except Exception as e:
        return [], broken_environment(e) or internal_error(e)


def isolate_partition(p: Partition, max_retries: int, num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
    """Redo a partition whose task kept killing its worker: each row in its own task, so the input
    that crashes the process is found and recorded as ``worker_crashed``; the driver writes the rest."""
    import ray

    opts = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": max_retries}
    remote = ray.remote(**opts)(_row_task)
    refs = [remote.remote(p, row) for row in p.rows]
    clean_partition(p.out, p.source, p.index)
    with shard_writer(p) as w:
        for row, ref in zip(p.rows, refs, strict=True):
            try:
                samples, rej = ray.get(ref)
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError, ray.exceptions.RayError) as e:
                samples, rej = [], Rejected(RejectReason.WORKER_CRASHED, f"the worker died on this input: {e}"[:2000])
            if isinstance(rej, ModelUnavailableError | BrokenEnvironmentError):
                raise rej  # the writer aborts: the partition stays undone for the next run
            for s in samples:
                w.write(s)
            if rej is not None:
                w.reject(row["id"], p.stage.name, rej.reason, rej.message, row["source"], row["uri"])


def _fingerprint(table: pa.Table, stage: str, stage_config: dict, runner: RunnerConfig) -> dict[str, Any]:
    ids = "\n".join(sorted(table.column("id").to_pylist()))
    spec = {k: v for k, v in asdict(runner).items() if k in ("rows_per_partition", "max_shard_bytes",
                                                             "max_shard_samples", "seed")}  # fmt: skip
    return {
        "stage": stage,
        "manifest_rows": table.num_rows,
        "manifest_ids_sha256": hashlib.sha256(ids.encode("utf-8")).hexdigest(),
        "stage_config": stage_config,
        "runner": spec,
    }


def _check_run_file(out: str, fp: dict[str, Any], source: str) -> None:
    fs, root = url_to_fs(out)
    path = posixpath.join(root, RUN_FILE)
    runs: dict[str, Any] = {}
    if fs.exists(path):
        try:
            with fs.open(path, "r") as f:
                runs = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunMismatchError(f"{out}/{RUN_FILE} is not this command's run record ({e}); "
                                   "use a new --out, or delete the folder to start over") from e  # fmt: skip
        if not isinstance(runs, dict):
            raise RunMismatchError(f"{out}/{RUN_FILE} is not this command's run record (not a JSON object); "
                                   "use a new --out, or delete the folder to start over")  # fmt: skip
    key = f"{source}/{fp['stage']}"
    if key in runs and runs[key] != fp:
        raise RunMismatchError(
            f"{out} holds a {key} run made with another manifest or configuration ({RUN_FILE}); "
            "use a new --out, or delete the folder to start over"
        )
    runs[key] = fp
    record = json.dumps(runs, indent=2, sort_keys=True).encode()
    write_atomic(join(out, RUN_FILE), lambda f: f.write(record))


def check_protocols(manifest: str, uris: list[str | None]) -> None:
    """Every storage protocol the manifest's URIs use is one fsspec can open: an unknown one is one clear error
    at start, not an ``internal_error`` reject per row."""
    import fsspec

    seen: dict[str, str] = {}
    for uri in uris:
        if uri and "://" in uri:
            seen.setdefault(uri.split("://", 1)[0], uri)
    for proto, example in sorted(seen.items()):
        try:
            fsspec.get_filesystem_class(proto)
        except (ValueError, ImportError) as e:
            raise ValueError(
                f"{manifest}: URIs use the storage protocol {proto!r} (e.g. {example}), which fsspec cannot open "
                f"here ({e}); install its package (s3fs, gcsfs, adlfs, ...) or fix the manifest"
            ) from e


def run_stage(
    stage: str,
    manifest: str,
    out: str,
    stage_config: dict[str, Any] | None = None,
    runner: RunnerConfig | None = None,
    progress: bool = True,
    faults: Faults | None = None,
) -> RunSummary:
    """Run ``stage`` over ``manifest`` into ``out`` on the current Ray cluster (``ray.init`` first), holding
    ``out``'s lock (:class:`~curation.output_lock.OutputBusyError` while another run writes there).
    ``faults``: for tests only (:class:`curation.partition.Faults`)."""
    fs, root = url_to_fs(out)
    if fs.exists(root) and not fs.isdir(root):
        raise RunMismatchError(f"--out {out} is a file; give a folder (new or made by this command)")
    with exclusive_output(out):
        return _run_stage(stage, manifest, out, stage_config or {}, runner or RunnerConfig(), progress, faults)


def _run_stage(
    stage: str,
    manifest: str,
    out: str,
    stage_config: dict[str, Any],
    runner: RunnerConfig,
    progress: bool,
    faults: Faults | None,
) -> RunSummary:
    import ray

    t0 = time.perf_counter()
    stage_obj = build_stage(stage, stage_config, runner.seed)  # fail fast on a bad stage name or config
    table = read_table(manifest, SOURCE_SCHEMA).sort_by("id")
    check_protocols(manifest, table.column("uri").to_pylist())
    source = _source_of(table) if table.num_rows else "empty"
    _check_run_file(out, _fingerprint(table, stage, stage_config, runner), source)
    rows = table.to_pylist()
    n = runner.rows_per_partition
    names = [partition_name(source, stage, i) for i in range((len(rows) + n - 1) // n)]
    done = complete_parts(out)
    damaged = damaged_parts(out, done & set(names), runner.check_checksums)
    for part, why in damaged.items():
        logger.warning("%s: partition %s is damaged (%s); redoing it", out, part, why)
        forget_part(out, part)
    done -= set(damaged)
    spec = StageSpec.of(stage, stage_config, runner.seed)
    parts = [
        Partition(i, name, source, out, rows[i * n : (i + 1) * n], spec, ShardLimits.of(runner), faults or Faults())
        for i, name in enumerate(names) if name not in done
    ]  # fmt: skip
    events: dict[str, int] = {}
    if parts:
        retries = runner.max_retries

        def remote_args() -> dict[str, Any]:
            # Bounded: Ray Data's default retries a task whose worker dies forever, which would loop
            # on an input that crashes the decoder every time.
            return {"max_retries": retries}

        ds = ray.data.from_items([{"partition": p} for p in parts], override_num_blocks=len(parts))
        gpus = runner.num_gpus_per_task  # the isolation fallback asks for what the tasks had
        if isinstance(stage_obj, ModelStage):
            from curation.model_pipeline import build_model_pipeline, model_resources

            gpus = model_resources(runner)[0]
            ds = build_model_pipeline(ds, spec, runner, remote_args)
        else:
            ds = ds.map(process_partition, num_cpus=runner.num_cpus_per_task, num_gpus=runner.num_gpus_per_task,
                        compute=ray.data.TaskPoolStrategy(size=runner.concurrency),
                        ray_remote_args_fn=remote_args)  # fmt: skip
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        unavailable = ""
        try:
            for r in ds.iter_rows():
                unavailable = unavailable or r["error"]
                for k, v in json.loads(r["counters_json"]).items():
                    events[k] = events.get(k, 0) + v
            if unavailable:
                raise ModelUnavailableError(unavailable)
            failed = []
        except ModelUnavailableError:
            finalize(out)  # the index matches the partitions done
            raise
        except Exception as e:  # a partition whose task failed every retry (e.g. an input that kills FFmpeg)
            finished = complete_parts(out)
            failed = [p for p in parts if p.part not in finished]
            logger.warning("%d partition(s) failed (%s); redoing them one row per task", len(failed), type(e).__name__)
        try:
            for p in failed:
                isolate_partition(p, max_retries=0, num_cpus=runner.num_cpus_per_task, num_gpus=gpus)
        except BrokenEnvironmentError:  # on every retry, so not one process's: said once, the rest resumes later
            finalize(out)
            raise
    finalize(out)
    ours = [p for p in names if p in complete_parts(out)]
    missing = sorted(set(names) - set(ours))
    if missing:
        raise RuntimeError(f"partitions did not complete: {missing[:5]}")
    pdir = join(out, PARTS_DIR)
    idx = [pq.read_table(join(pdir, f"{p}.index.parquet")) for p in ours]
    rej = [pq.read_table(join(pdir, f"{p}.rejects.parquet")) for p in ours]
    index = pa.concat_tables(idx) if idx else INDEX_SCHEMA.empty_table()
    rejects = pa.concat_tables(rej) if rej else REJECTS_SCHEMA.empty_table()
    reasons: dict[str, int] = {}
    for r in rejects.column("reason").to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    return RunSummary(
        stage=stage, out=out, inputs=table.num_rows, produced=len(set(index.column("source_id").to_pylist())),
        samples=index.num_rows, rejects=rejects.num_rows, partitions=len(names), skipped=len(names) - len(parts),
        seconds=time.perf_counter() - t0, reasons=reasons, events=events, repaired=len(damaged),
    )  # fmt: skip
