"""No compile storms: `f2jax train` keeps JAX's persistent compilation cache in the run directory,
so a rerun on the same directory (a restart) loads its steps instead of compiling them, and
metrics.jsonl counts the compiles, their seconds and the cache hits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax

from f2jax.train.compile_cache import compile_counts, compile_record, count_compiles, setup_compile_cache
from f2jax.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]


def _train(run_dir: Path, overrides: list[str], steps: int) -> list[dict]:
    env = {**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "PYTHONPATH": str(REPO),
           "XLA_FLAGS": ""}  # one CPU device: the fastest tiny run
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cmd = [sys.executable, "-m", "f2jax.cli", "train", "--config", "configs/demo.yaml", "--run-dir", str(run_dir),
           *overrides, f"train.steps={steps}", "--export", str(run_dir / f"export{steps}")]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return [r for r in read_metrics(run_dir) if r.get("split") is None]


def test_a_rerun_loads_its_step_from_the_run_dir_cache(tmp_path, tiny_overrides):
    """Run 1 fills RUN_DIR/compile_cache (the default); run 2, a fresh start of the same step on
    another directory pointed at that cache, compiles its step from it. (A resumed run would
    reach new step shapes after one step of this tiny config: one step each keeps the test short.)"""
    cold = _train(tmp_path / "a", tiny_overrides, 1)[-1]
    assert cold["compiles"] >= 1 and cold["compile_s"] > 0 and cold["compile_cache_hits"] == 0
    cache = tmp_path / "a" / "compile_cache"
    assert any(cache.iterdir())
    warm = _train(tmp_path / "b", [*tiny_overrides, f"checkpoint.compile_cache={cache}"], 1)[-1]
    assert warm["compile_cache_hits"] >= 1 and warm["compile_cache_saved_s"] > 0
    assert not (tmp_path / "b" / "compile_cache").exists()


def test_an_existing_jax_cache_setting_is_kept(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    try:
        assert setup_compile_cache("run_dir", tmp_path / "run") == str(tmp_path / "mine")
        assert setup_compile_cache(None, tmp_path / "run") == str(tmp_path / "mine")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    if before is None:
        assert setup_compile_cache(None, tmp_path / "run") is None  # off: nothing set


def test_counts_are_per_run():
    count_compiles()
    count_compiles()  # idempotent: one listener
    start = compile_counts()
    jax.jit(lambda x: x * 3 + 1)(jax.numpy.arange(5.0)).block_until_ready()
    rec = compile_record(start)
    assert rec["compiles"] >= 1 and rec["compile_s"] >= 0 and rec["compile_cache_hits"] == 0
