#!/usr/bin/env bash
# Multi-node GPU: run this on every node (e.g. from SLURM: srun launch/gpu.sh CONFIG RUN_DIR).
# One process per node drives all its local GPUs. Under SLURM, jax.distributed finds the
# coordinator itself; otherwise set COORDINATOR=host:port NUM_PROCESSES=N PROCESS_ID=i.
set -euo pipefail
CONFIG=${1:?usage: launch/gpu.sh CONFIG RUN_DIR [key=value ...]}
RUN_DIR=${2:?usage: launch/gpu.sh CONFIG RUN_DIR [key=value ...]}
shift 2
cd "$(dirname "$0")/.."
ARGS=(--distributed)
if [ -n "${COORDINATOR:-}" ]; then
  ARGS+=(--coordinator "$COORDINATOR" --num-processes "${NUM_PROCESSES:?}" --process-id "${PROCESS_ID:?}")
fi
exec .venv/bin/f2jax train "${ARGS[@]}" --config "$CONFIG" --run-dir "$RUN_DIR" "$@"
