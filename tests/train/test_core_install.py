"""The core install is torch-free: with torch, sentence-transformers and mteb unimportable, the
demo config trains, exports, reloads and encodes (what a TPU host with `pip install f2jax` runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "sentence_transformers", "mteb")

SCRIPT = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # `import` fails; importlib.util.find_spec reports it absent
    import importlib.util
    assert all(importlib.util.find_spec(name) is None for name in {blocked!r})
    import numpy as np
    import f2jax
    from f2jax.cli import main
    run_dir, out = sys.argv[1], sys.argv[2]
    assert main(["train", "--config", "configs/demo.yaml", "--run-dir", run_dir, *sys.argv[3:]]) == 0
    encoder = f2jax.load(run_dir + "/export")
    np.save(out, encoder.encode(["What is JAX?", "def f(x): return x"], prompt_name="query"))
    assert not any(sys.modules.get(name) for name in {blocked!r})
""").format(blocked=BLOCKED)


def test_train_export_encode_without_torch(tmp_path, tiny_overrides):
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    argv = [str(tmp_path / "run"), str(tmp_path / "vectors.npy"), *tiny_overrides, "train.steps=3",
            "checkpoint.every=3"]
    result = subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    vectors = np.load(tmp_path / "vectors.npy")
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)
    assert (tmp_path / "run" / "export" / "modules.json").exists()
