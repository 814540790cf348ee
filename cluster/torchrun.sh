#!/bin/bash
# Multi-node `vidrd train fit` with torchrun: run this on every node (same HEAD and NNODES on each).
#   HEAD=10.0.0.1 NNODES=4 cluster/torchrun.sh [extra vidrd train fit arguments]
set -euo pipefail
: "${HEAD:?set HEAD to the address of the first node}" "${NNODES:?set NNODES}"
GPUS=${GPUS:-8}
exec torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS" --rdzv_backend c10d --rdzv_endpoint "$HEAD:29500" \
  -m vidrd.cli train fit --config "${CONFIG:-sd21-256-8gpu}" --config multinode \
  --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" --ckpt_path last "$@"
