#!/usr/bin/env bash
# The learning proof end to end on a GPU machine (all visible GPUs, DDP). Usage: examples/run_learn_shapes.sh [OUT]
set -euo pipefail
OUT=${1:-runs/shapes}
[ -f "$OUT/shards/_index.parquet" ] || python examples/learn_shapes.py shards --out "$OUT/shards"
python examples/learn_shapes.py base --out "$OUT/base"
start=$(date +%s)
vidrd train fit --config examples/shapes.yaml --model.init_args.pretrained "$OUT/base" \
  --model.init_args.export_dir "$OUT/export" --data.train "[{path: $OUT/shards}]" --trainer.default_root_dir "$OUT/train" \
  "${@:2}"
echo "fit wall seconds: $(( $(date +%s) - start ))"
python examples/learn_shapes.py report --checkpoint "$OUT/export" --run-dir "$OUT/train" --out "$OUT/report"
