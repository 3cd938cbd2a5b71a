#!/usr/bin/env bash
# The demo: set up, train a tiny Qwen3 from scratch on the bundled demo data, then encode a
# few texts with the exported model. Extra arguments are config overrides (key=value).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
RUN_DIR=${RUN_DIR:-runs/demo}
.venv/bin/f2jax train --config configs/demo.yaml --run-dir "$RUN_DIR" "$@"
.venv/bin/python - "$RUN_DIR/export" <<'PY'
import sys

import numpy as np

import f2jax

encoder = f2jax.load(sys.argv[1])
queries = ["Return the absolute path of a file.", "Germany"]
docs = ["def abspath(path):\n    return os.path.normpath(os.path.join(os.getcwd(), path))",
        "Deutschland", "def sleep(seconds):\n    time.sleep(seconds)", "Frankreich"]
q = encoder.encode(queries, prompt_name="query")
d = encoder.encode(docs)
print("cosine similarity (rows: queries, columns: documents)")
for text, row in zip(queries, q @ d.T):
    print(f"  {text[:40]:40s}", np.array2string(row, precision=3))
PY
