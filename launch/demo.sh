#!/usr/bin/env bash
# The demo: set up, train a tiny Qwen3 from scratch on the bundled demo data, then encode a
# few texts with the exported model. Extra arguments are config overrides (key=value).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh core
RUN_DIR=${RUN_DIR:-runs/demo}
.venv/bin/f2jax train --config configs/demo.yaml --run-dir "$RUN_DIR" "$@"
.venv/bin/python - "$RUN_DIR" <<'PY'
import sys

import numpy as np

import f2jax

encoder = f2jax.load(sys.argv[1] + "/export")
prompt = "Instruct: Given a description of a Python function, retrieve its code.\nQuery: "
queries = ["Return a normalized absolutized version of the pathname.", "Remove a directory tree."]
docs = [
    'def abspath(path):\n    """Return a normalized absolutized version of the pathname."""\n'
    "    return normpath(join(os.getcwd(), path))",
    'def rmtree(path):\n    """Remove a directory tree, ignoring errors if asked."""\n    _rmtree_unsafe(path)',
    'def sleep(seconds):\n    """Delay execution for a given number of seconds."""\n    time.sleep(seconds)',
]
from f2jax.train.metrics import read_metrics

print("held-out code search during training (7 hard negatives per query: chance top-1 = 0.125)")
for r in read_metrics(sys.argv[1]):
    if r.get("split") == "validation" and r["source"] == "code_search_python":
        print(f"  step {r['step']:4d}  loss {r['loss']:.3f}  top-1 {r['acc_hard']:.3f}  nDCG@10 {r['ndcg_at_10']:.3f}")
similarity = encoder.encode(queries, prompt=prompt) @ encoder.encode(docs).T
print("cosine similarity (rows: queries, columns: documents)")
for text, row in zip(queries, similarity):
    print(f"  {text[:48]:48s}", np.array2string(row, precision=3))
PY
