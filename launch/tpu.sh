#!/usr/bin/env bash
# Run `f2jax train` on every worker of a Cloud TPU VM slice (v4/v5e/v5p), one process per host.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a launch/tpu.sh configs/recipes/stage1_0.6b.yaml runs/stage1_0.6b [key=value ...]
#
# The run directory must be on storage every host sees (a GCS bucket path such as
# gs://bucket/runs/x works for checkpoints; metrics are written by process 0). Re-running the
# same command resumes from the newest complete checkpoint (e.g. after a preemption).
set -euo pipefail
CONFIG=${1:?usage: launch/tpu.sh CONFIG RUN_DIR [key=value ...]}
RUN_DIR=${2:?usage: launch/tpu.sh CONFIG RUN_DIR [key=value ...]}
shift 2
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO=${REPO:-https://github.com/f2jax/f2jax.git}
BRANCH=${BRANCH:-main}
OVERRIDES=$(printf ' %q' "$@")

SETUP="set -e; if [ ! -d f2jax ]; then git clone -q --branch $BRANCH $REPO f2jax; fi; cd f2jax; git pull -q;
python3 -m venv .venv; .venv/bin/pip install -q -U pip; .venv/bin/pip install -q -e . 'jax[tpu]'"
RUN="cd f2jax && .venv/bin/f2jax train --distributed --config $CONFIG --run-dir $RUN_DIR$OVERRIDES"

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$SETUP"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$RUN"
