"""A clean start is quiet: the third-party lines f2jax provokes (f2jax/logs.py) do not appear,
while f2jax's own INFO records still do. Runs as the torch-free core install would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import logging, sys
    sys.modules["torch"] = None  # the core install: transformers finds no torch
    from f2jax.logs import setup_logging
    setup_logging()
    import transformers  # would advise "PyTorch was not found"
    import jax
    jax.devices()  # probes the TPU platform: "Unable to initialize backend 'tpu'" at INFO
    import pandas as pd
    from f2jax.data import tokenize_sources
    rows = {"query": [f"q{i}" for i in range(8)], "passage": [f"p{i}" for i in range(8)],
            "negative_1": [f"n{i}" for i in range(8)]}
    raw, out = sys.argv[1], sys.argv[2]
    pd.DataFrame(rows).to_parquet(raw + "/tiny.parquet")
    open(raw + "/manifest.yaml", "w").write("tiny: classification\\n")
    tokenize_sources(raw, out, max_length=16, workers=1)  # TFDS: "Downloading and preparing dataset"
    absl = logging.getLogger("absl")  # what orbax logs when f2jax opens checkpoints read-only
    absl.warning("Given directory is read only=%s", out)
    absl.warning("CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.")
    absl.warning("a real orbax warning")
""")

SILENCED = ("PyTorch was not found", "Unable to initialize backend", "Downloading and preparing",
            "downloaded and prepared", "Generating", "read only")


def test_clean_start_prints_only_f2jax_lines(tmp_path):
    (tmp_path / "raw").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "TRANSFORMERS_NO_ADVISORY_WARNINGS")}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "raw"), str(tmp_path / "out")],
                            capture_output=True, text=True, env={**env, "XLA_FLAGS": ""}, cwd=REPO, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for phrase in SILENCED:
        assert phrase not in output, (phrase, output[-3000:])
    assert "INFO f2jax.data.tokenize: tokenised 1 sources" in output  # f2jax's own records stay
    assert "WARNING absl: a real orbax warning" in output  # other warnings stay too
