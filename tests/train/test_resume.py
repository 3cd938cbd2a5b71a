"""Killed at any moment, `f2jax train` rerun on the same run directory continues and produces
the numbers of a run never interrupted: SIGKILL (lose at most the steps since the last
checkpoint), SIGTERM (checkpoint now, exit 0), and resuming onto a 4-device mesh."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from f2jax.config import load_config
from f2jax.train.checkpoint import Checkpointer, abstract_like
from f2jax.train.metrics import read_metrics
from f2jax.train.trainer import Trainer

STEPS, EVERY = 12, 4


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "jax_cache"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


@pytest.fixture(scope="module")
def overrides(demo_tokenized) -> list[str]:
    return ["model.init={hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
            "num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 256}",
            "data.max_length=64", "data.buckets=[64]", "data.global_batch_size=8",
            f"data.path={demo_tokenized}", "data.raw=null", "train.eval_every=0", "train.log_every=1",
            f"train.steps={STEPS}", f"checkpoint.every={EVERY}", "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, overrides, cache_dir):
    """Run (a): 2·N steps uninterrupted, in process; per-step losses and final state."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    trainer = Trainer(load_config("configs/demo.yaml", overrides), run_dir)
    trainer.train()
    trainer.close()
    losses = _losses(run_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return trainer, losses, jax.device_get(trainer.state)


def _losses(run_dir: Path) -> dict[int, float]:
    records = [r for r in read_metrics(run_dir) if r.get("split") is None]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicate step records: {steps}"
    return {r["step"]: r["loss"] for r in records}


def _command(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "f2jax.cli", "train", "--config", "configs/demo.yaml",
            "--run-dir", str(run_dir), "--export", str(run_dir / "export"), *overrides]


def _env(cache: Path, devices: int = 8) -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _run_until(cmd: list[str], env: dict[str, str], run_dir: Path, step: int, sig: int) -> tuple[int, str]:
    """Start training, send `sig` once metrics reach `step` (and a first checkpoint exists)."""
    log = run_dir.parent / f"{run_dir.name}-{int(sig)}.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            metrics = run_dir / "metrics.jsonl"
            done = len(metrics.read_text().splitlines()) if metrics.exists() else 0
            if done >= step and (run_dir / "checkpoints" / str(EVERY)).exists():
                proc.send_signal(sig)
                break
            time.sleep(0.02)
        rc = proc.wait(timeout=300)
    return rc, log.read_text()


def _final_state(trainer: Trainer, run_dir: Path) -> dict:
    ckpt = Checkpointer(run_dir / "checkpoints", read_only=True)
    restored = ckpt.restore(abstract_like(trainer.state, trainer.state_shardings), step=STEPS)
    ckpt.manager.close()
    return jax.device_get(restored.state)


def _max_diff(a, b) -> float:
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _assert_same_run(run_dir: Path, reference, *, tol: float) -> None:
    trainer, ref_losses, ref_state = reference
    losses = _losses(run_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    worst = max(abs(losses[s] - ref_losses[s]) / max(1.0, abs(ref_losses[s])) for s in losses)
    assert worst <= tol, {s: (losses[s], ref_losses[s]) for s in losses}
    assert _max_diff(_final_state(trainer, run_dir), ref_state) <= tol


def test_sigkill_at_a_random_step_then_rerun_reproduces_the_uninterrupted_run(
        tmp_path, overrides, reference, cache_dir):
    kill_at = random.Random().randint(EVERY + 1, STEPS - 2)
    run_dir = tmp_path / "run"
    cmd, env = _command(run_dir, overrides), _env(cache_dir)
    rc, _ = _run_until(cmd, env, run_dir, kill_at, signal.SIGKILL)
    assert rc == -signal.SIGKILL, f"not killed (kill_at={kill_at})"
    lost_from = max(_losses(run_dir))
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from checkpoint step" in rerun.stderr
    resumed = int(rerun.stderr.split("resumed from checkpoint step ")[1].split()[0])
    assert EVERY <= resumed <= lost_from, (kill_at, resumed, lost_from)
    _assert_same_run(run_dir, reference, tol=1e-6)
    assert (run_dir / "export" / "model.safetensors").exists()


def test_sigterm_checkpoints_the_current_step_and_resumes_on_4_devices(
        tmp_path, overrides, reference, cache_dir):
    run_dir = tmp_path / "run"
    rc, log = _run_until(_command(run_dir, overrides), _env(cache_dir), run_dir, EVERY + 1,
                         signal.SIGTERM)
    assert rc == 0, log[-3000:]
    assert "preempted: checkpoint step" in log
    saved = Checkpointer(run_dir / "checkpoints", read_only=True).steps()
    last_logged = max(_losses(run_dir))
    assert saved[-1] == last_logged and EVERY < last_logged < STEPS  # the current step, not an old one
    assert not (run_dir / "export").exists()
    rerun = subprocess.run(_command(run_dir, [*overrides, "mesh.data=4"]), env=_env(cache_dir, 4),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from checkpoint step {last_logged}" in rerun.stderr
    assert "'data': 8" in rerun.stderr and "'data': 4" in rerun.stderr  # saved on 8, resumed on 4
    _assert_same_run(run_dir, reference, tol=1e-5)  # another mesh: float sums in another order
