"""``vidrd curate STAGE --manifest M.parquet --out DIR [--config C.yaml]``: one stage on Ray.

Locally ``ray.init()`` starts a Ray of this machine; under ``ray job submit`` (RAY_ADDRESS set) or
with ``--address`` it joins that cluster. Re-running the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import TYPE_CHECKING, Any

# The stage names from the registry's table, without importing the stages (their codecs and models): `--help`
# answers at once.
from curation.stage_registry import STAGE_NAMES

if TYPE_CHECKING:
    from curation.runner import RunnerConfig

# Not stages over a manifest: jobs over finished shard sets (curation.dedup, curation.scores).
DEDUP, SCORES = "dedup", "scores"


def load_config(path: str | None) -> tuple[dict[str, Any], RunnerConfig]:
    """``stage:`` and ``runner:`` sections of a YAML config; unknown keys are errors."""
    import yaml

    from curation.runner import RunnerConfig

    if not path:
        return {}, RunnerConfig()
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'stage:' and/or 'runner:'")
    unknown = set(data) - {"stage", "runner"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)} (allowed: stage, runner)")
    runner = data.get("runner") or {}
    names = {f.name for f in fields(RunnerConfig)}
    bad = set(runner) - names
    if bad:
        raise ValueError(f"{path}: unknown runner keys {sorted(bad)} (allowed: {sorted(names)})")
    return data.get("stage") or {}, RunnerConfig(**runner)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd curate``."""
    p = sub.add_parser(
        "curate",
        help="run one curation stage on Ray (" + ", ".join(STAGE_NAMES) + "), or dedup finished shard sets",
        description="Turn a source manifest into WebDataset shards + _index.parquet + _rejects.parquet. "
        "Resumable: re-run the same command after an interruption. On a cluster: "
        "ray job submit --working-dir . -- vidrd curate STAGE --manifest M --out DIR. "
        "`vidrd curate dedup --shards DIR [DIR ...]` finds exact and near duplicates across shard sets and writes "
        'each set\'s _dups.parquet (train with `where: "not is_dup"`); tars are never rewritten.',
    )
    p.add_argument("stage", choices=(*STAGE_NAMES, DEDUP, SCORES))
    p.add_argument("--manifest", help="source manifest (vidrd manifest ...); every stage but dedup")
    p.add_argument("--out", help="output folder for shards (local path or fsspec URL); every stage but dedup")
    p.add_argument("--shards", nargs="+", help="dedup, scores: the shard sets (dedup compares all against all)")
    p.add_argument("--threshold", type=int, default=8, help="dedup: mean perceptual-hash bits apart for a near "
                   "duplicate (of 64; default 8)")  # fmt: skip
    p.add_argument("--clip", help="scores (required), dedup (optional: also semantic duplicates): CLIP "
                   "(open_clip:NAME:FILE, open_clip:local-dir:FOLDER, a transformers folder, or tiny)")  # fmt: skip
    p.add_argument("--similarity", type=float, default=0.95, help="dedup with --clip: cosine of the mean keyframe "
                   "embeddings for a semantic duplicate (default 0.95)")  # fmt: skip
    p.add_argument("--aesthetic", help="scores: the LAION aesthetic predictor file (.pth) for that CLIP")
    p.add_argument("--device", default="auto", help="scores, dedup with --clip: cuda, cpu or auto (default)")
    p.add_argument("--config", help="YAML with 'stage:' (stage settings) and 'runner:' (partitions, shard sizes)")
    p.add_argument("--address", help="Ray address to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument(
        "--num-cpus",
        type=int,
        help="start a local Ray of this many CPUs (default: join RAY_ADDRESS or a "
        "running local cluster, else start one with all CPUs)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    p.set_defaults(func=run)


def announce_models(stage: Any) -> None:
    """Name, on the driver and before any worker starts, the models a stage will load; a random tiny one loudly
    (workers' output does not reach this console)."""
    from curation.model_stage import ModelStage, is_tiny

    specs = stage.model_specs() if isinstance(stage, ModelStage) else {}
    for role, spec in specs.items():
        note = "  <- TINY RANDOM model: its output is noise (tests and the demo only)" if is_tiny(spec) else ""
        print(f"{stage.name}: {role} = {spec}{note}", file=sys.stderr if note else sys.stdout)


def run(args: argparse.Namespace) -> int:
    import ray
    import yaml

    from curation.model_stage import ModelUnavailableError
    from curation.output_lock import OutputBusyError
    from curation.runner import RunMismatchError, build_stage, run_stage
    from curation.stage import BrokenEnvironmentError

    if args.stage in (DEDUP, SCORES):
        return run_shard_job(args)
    if not args.manifest or not args.out:
        print(f"error: vidrd curate {args.stage} needs --manifest and --out", file=sys.stderr)
        return 2
    try:
        stage_cfg, runner = load_config(args.config)
        stage = build_stage(args.stage, stage_cfg, runner.seed)  # every setting checked before Ray starts
    except (OSError, ValueError, TypeError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    announce_models(stage)
    ray.init(**ray_init_args(args))
    try:
        summary = run_stage(args.stage, args.manifest, args.out, stage_cfg, runner, progress=not args.no_progress)
    except (RunMismatchError, OutputBusyError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ModelUnavailableError, BrokenEnvironmentError) as e:  # partitions not done stay undone: a rerun resumes
        print(f"error: {e}\nnothing was written for the partitions it did not reach; fix that and run the same "
              "command again", file=sys.stderr)  # fmt: skip
        return 1
    print(summary.line())
    return 0 if summary.ok else 1


def ray_init_args(args: argparse.Namespace) -> dict[str, Any]:
    init: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
    if args.address:
        init["address"] = args.address
    elif args.num_cpus:  # a Ray of this command's own, of that size (never an already running one)
        init.update(address="local", num_cpus=args.num_cpus)
    return init


def run_shard_job(args: argparse.Namespace) -> int:
    """``vidrd curate dedup`` / ``scores``: settings checked, then the job on Ray; its summary as JSON."""
    import json

    import ray

    try:
        if not args.shards or (args.stage == SCORES and not args.clip):
            need = "--shards DIR [DIR ...]" + (" and --clip SPEC" if args.stage == SCORES else "")
            raise ValueError(f"vidrd curate {args.stage} needs {need}")
        if args.stage == DEDUP:
            from curation.dedup import DedupConfig, dedup

            cfg = DedupConfig(threshold=args.threshold, clip=args.clip, similarity=args.similarity, device=args.device)
            ray.init(**ray_init_args(args))
            summary = dedup(list(args.shards), cfg)
        else:
            from curation.scores import scores

            ray.init(**ray_init_args(args))
            summary = scores(list(args.shards), args.clip, args.aesthetic, args.device)
    except (OSError, ValueError) as e:  # OSError: a result table that cannot be written, named by the error
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
