#!/usr/bin/env bash
# The demo: set up, train a tiny Qwen3 from scratch on the bundled demo data, then report
# held-out retrieval with the trained model against the same model untrained (step 0), on rows
# the training never saw (f2jax/demo_report.py), and draw the run's curves to RUN_DIR/curves.png
# (f2jax/plot.py). Extra arguments are config overrides (key=value).
# Installs the core package plus the `plot` extra (matplotlib): still no torch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh plot
RUN_DIR=${RUN_DIR:-runs/demo}
.venv/bin/f2jax train --config configs/demo.yaml --run-dir "$RUN_DIR" "$@"
.venv/bin/python -m f2jax.demo_report "$RUN_DIR"
