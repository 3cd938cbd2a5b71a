#!/usr/bin/env bash
# Create .venv (if absent) and install f2jax into it (editable).
#   bash launch/setup.sh          core + the test extras (what CI and the test command need)
#   bash launch/setup.sh core     the lean install: the JAX stack only, no torch
#   bash launch/setup.sh eval,tpu any extras, comma-separated
# torch, where an extra needs it, is pinned to the CPU build (test extra).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-test}
SPEC="."
[ "$EXTRAS" = core ] || SPEC=".[$EXTRAS]"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e "$SPEC"
