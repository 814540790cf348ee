"""The Ray Data shape of a model stage: CPU prepare -> model actor pool -> CPU write.

Each element flowing through the pipeline is one partition (the runner's unit of resumption), so a
partition's part files are still written by one task, last, exactly as for CPU-only stages:

1. ``prepare_partition`` (CPU task): ``stage.prepare`` on every row; a row that cannot be used carries
   its ``Rejected`` onwards instead of prepared inputs.
2. ``InferActor`` (actor pool, ``num_gpus`` each): the models are loaded once per actor; one call
   takes ``partitions_per_model_call`` partitions and runs ``stage.infer`` over all their rows, so a
   model batch spans many videos. Ray Data streams: while an actor runs the model, CPU tasks decode the
   next partitions and write the previous ones.
3. ``write_model_partition`` (CPU task): ``stage.finish`` per row and the shard writer.

A model call that fails (after ``run_batched`` has already halved the batch on out-of-memory) marks
each of its rows ``model_failed`` with the error, so nothing is dropped silently. Models that cannot be loaded
at all are no property of the rows: the actor passes the partitions on marked, their writer writes nothing and
returns the error, and the runner stops with it (:class:`~curation.model_stage.ModelUnavailableError`), so
a rerun once the weights or the environment are fixed does those partitions.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from curation.model_stage import ModelUnavailableError
from curation.partition import (
    Partition,
    RunnerConfig,
    StageSpec,
    ends_process_when_unusable,
    stage_for,
    write_partition,
)
from curation.stage import Rejected, describe_error, internal_error
from manifests.schema import RejectReason

PAYLOAD = "payload"


@ends_process_when_unusable
def prepare_partition(item: dict[str, Any]) -> dict[str, Any]:
    """Ray task body: ``stage.prepare`` each row of one partition (rejects travel with the rows)."""
    p: Partition = item["partition"]
    stage = stage_for(p.stage)
    prepared: list[Any] = []
    for row in p.rows:
        try:
            prepared.append(stage.prepare(row))
        except Rejected as r:
            prepared.append(r)
        except Exception as e:  # nobody foresaw it: a reject, never a lost row (a broken environment fails the task)
            prepared.append(internal_error(e))
    return {"partition": p, PAYLOAD: pickle.dumps({"prepared": prepared, "results": None})}


class InferActor:
    """Holds a stage's models on one device and runs ``stage.infer`` over batches of partitions."""

    def __init__(self, spec: StageSpec):
        self.stage = stage_for(spec)
        self.unavailable = ""
        try:
            self.models = self.stage.models()
        except ModelUnavailableError as e:  # said once per partition, not as a reject per row (see module doc)
            self.unavailable = str(e)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = [pickle.loads(p) for p in batch[PAYLOAD]]
        if self.unavailable:
            for pay in payloads:
                pay["unavailable"] = self.unavailable
            return {**batch, PAYLOAD: np.array([pickle.dumps(p) for p in payloads], dtype=object)}
        items, where = [], []
        for pi, (part, pay) in enumerate(zip(batch["partition"], payloads, strict=True)):
            for ri, (row, prep) in enumerate(zip(part.rows, pay["prepared"], strict=True)):
                if not isinstance(prep, Rejected):
                    items.append((row, prep))
                    where.append((pi, ri))
            pay["results"] = [None] * len(pay["prepared"])
        if items:
            try:
                results = self.stage.infer(self.models, items)
            except Exception as e:  # out-of-memory was already retried with smaller batches
                failed = Rejected(RejectReason.MODEL_FAILED, describe_error(e))
                results = [failed] * len(items)
            for (pi, ri), res in zip(where, results, strict=True):
                payloads[pi]["results"][ri] = res
        out = dict(batch)
        out[PAYLOAD] = np.array([pickle.dumps(p) for p in payloads], dtype=object)
        return out


@ends_process_when_unusable
def write_model_partition(item: dict[str, Any]) -> dict[str, Any]:
    """Ray task body: ``stage.finish`` each row and write the partition's shards and part files."""
    p: Partition = item["partition"]
    stage = stage_for(p.stage)
    pay = pickle.loads(item[PAYLOAD])
    if pay.get("unavailable"):  # nothing written: the partition stays undone for the next run
        return {"part": p.part, "inputs": len(p.rows), "samples": 0, "rejects": 0, "counters_json": "{}",
                "error": pay["unavailable"]}  # fmt: skip

    def produce(row: dict[str, Any], k: int) -> list:
        for got in (pay["prepared"][k], pay["results"][k]):
            if isinstance(got, Rejected):
                raise got
        return stage.finish(row, pay["prepared"][k], pay["results"][k])

    return write_partition(p, produce)


def model_resources(runner: RunnerConfig) -> tuple[float, int]:
    """(GPUs per model actor, number of actors): as configured, else one actor per GPU of the cluster, or
    one CPU actor where the cluster has no GPU."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_actor = runner.gpus_per_actor if runner.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    if runner.model_actors:
        return per_actor, runner.model_actors
    return per_actor, max(1, int(gpus // per_actor)) if per_actor else 1


def build_model_pipeline(ds: Any, spec: StageSpec, runner: RunnerConfig, remote_args: Any) -> Any:
    """Chain the three steps onto a Ray Dataset of ``{"partition": Partition}`` rows."""
    import ray

    per_actor, actors = model_resources(runner)
    tasks = ray.data.TaskPoolStrategy(size=runner.concurrency)
    ds = ds.map(prepare_partition, num_cpus=runner.num_cpus_per_task, num_gpus=runner.num_gpus_per_task,
                compute=tasks, ray_remote_args_fn=remote_args)  # fmt: skip
    ds = ds.map_batches(
        InferActor, fn_constructor_kwargs={"spec": spec},
        batch_size=runner.partitions_per_model_call, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=per_actor, num_cpus=runner.num_cpus_per_actor,
    )  # fmt: skip
    return ds.map(write_model_partition, num_cpus=runner.num_cpus_per_task, compute=tasks,
                  ray_remote_args_fn=remote_args)  # fmt: skip
