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
each of its rows ``model_failed`` with the error, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np

from curation.runner import RunnerConfig, build_stage, write_partition
from curation.stage import Rejected
from manifests.schema import RejectReason

PAYLOAD = "payload"


def prepare_partition(item: dict[str, Any]) -> dict[str, Any]:
    """Ray task body: ``stage.prepare`` each row of one partition (rejects travel with the rows)."""
    stage = build_stage(item["stage"], json.loads(item["stage_config"]), item["seed"])
    prepared: list[Any] = []
    for row in json.loads(item["rows_json"]):
        try:
            prepared.append(stage.prepare(row))
        except Rejected as r:
            prepared.append(r)
        except Exception as e:  # decoded nothing nobody foresaw: a reject, never a lost row
            prepared.append(Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"))
    return {**item, PAYLOAD: pickle.dumps({"prepared": prepared, "results": None})}


class InferActor:
    """Holds a stage's models on one device and runs ``stage.infer`` over batches of partitions."""

    def __init__(self, stage: str, stage_config: str, seed: int):
        self.stage = build_stage(stage, json.loads(stage_config), seed)
        self.models = self.stage.models()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = [pickle.loads(p) for p in batch[PAYLOAD]]
        items, where = [], []
        for pi, (rows_json, pay) in enumerate(zip(batch["rows_json"], payloads, strict=True)):
            for ri, (row, prep) in enumerate(zip(json.loads(rows_json), pay["prepared"], strict=True)):
                if not isinstance(prep, Rejected):
                    items.append((row, prep))
                    where.append((pi, ri))
            pay["results"] = [None] * len(pay["prepared"])
        if items:
            try:
                results = self.stage.infer(self.models, items)
            except Exception as e:  # out-of-memory was already retried with smaller batches
                failed = Rejected(RejectReason.MODEL_FAILED, f"{type(e).__name__}: {e}"[:2000])
                results = [failed] * len(items)
            for (pi, ri), res in zip(where, results, strict=True):
                payloads[pi]["results"][ri] = res
        out = dict(batch)
        out[PAYLOAD] = np.array([pickle.dumps(p) for p in payloads], dtype=object)
        return out


def write_model_partition(item: dict[str, Any]) -> dict[str, Any]:
    """Ray task body: ``stage.finish`` each row and write the partition's shards and part files."""
    stage = build_stage(item["stage"], json.loads(item["stage_config"]), item["seed"])
    pay = pickle.loads(item[PAYLOAD])

    def produce(row: dict[str, Any], k: int) -> list:
        for got in (pay["prepared"][k], pay["results"][k]):
            if isinstance(got, Rejected):
                raise got
        return stage.finish(row, pay["prepared"][k], pay["results"][k])

    return write_partition(item, json.loads(item["rows_json"]), stage.name, produce)


def model_resources(runner: RunnerConfig) -> tuple[float, int]:
    """(GPUs per model actor, number of actors): as configured, else one actor per GPU of the cluster, or
    one CPU actor where the cluster has no GPU."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    per_actor = runner.gpus_per_actor if runner.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    if runner.model_actors:
        return per_actor, runner.model_actors
    return per_actor, max(1, int(gpus // per_actor)) if per_actor else 1


def build_model_pipeline(ds: Any, item0: dict[str, Any], runner: RunnerConfig, remote_args: Any, env: Any) -> Any:
    """Chain the three steps onto a Ray Dataset of partition items."""
    import ray

    per_actor, actors = model_resources(runner)
    tasks = ray.data.TaskPoolStrategy(size=runner.concurrency)
    ds = ds.map(prepare_partition, num_cpus=runner.num_cpus_per_task, compute=tasks,
                ray_remote_args_fn=remote_args, runtime_env=env)  # fmt: skip
    ds = ds.map_batches(
        InferActor,
        fn_constructor_kwargs={"stage": item0["stage"], "stage_config": item0["stage_config"], "seed": item0["seed"]},
        batch_size=runner.partitions_per_model_call, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=per_actor, num_cpus=runner.num_cpus_per_actor,
    )  # fmt: skip
    return ds.map(write_model_partition, num_cpus=runner.num_cpus_per_task, compute=tasks,
                  ray_remote_args_fn=remote_args, runtime_env=env)  # fmt: skip
