"""Multi-host training on CPU stand-ins: 2 processes x 4 devices train exactly like 1 process x 8
devices, only process 0 writes metrics (with global token counts), and a checkpoint written by 2
processes resumes in 1. Plus: run directories that are URLs (gs://) reach Orbax and the metrics
writer unmangled."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from f2jax.paths import as_path
from f2jax.train import checkpoint as checkpoint_mod
from f2jax.train.metrics import MetricsWriter, read_metrics
from f2jax.train.paths import checkpoint_dir, default_run_dir

from .conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]
STEPS, EVERY = 4, 2


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "jax_cache"
    return path


@pytest.fixture(scope="module")
def overrides(demo_tokenized) -> list[str]:
    return [*TINY_MODEL, f"data.path={demo_tokenized}", "data.raw=null", f"train.steps={STEPS}",
            f"checkpoint.every={EVERY}"]


def _env(cache_dir: Path, devices: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_COMPILATION_CACHE_DIR": str(cache_dir), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", **extra}


def _command(run_dir: Path, overrides: list[str], *flags: str) -> list[str]:
    return [sys.executable, "-m", "f2jax.cli", "train", *flags, "--config", "configs/demo.yaml",
            "--run-dir", str(run_dir), "--export", str(run_dir / "export"), *overrides]


def _train_one_process(run_dir: Path, overrides: list[str], cache_dir: Path) -> str:
    """1 process x 8 devices, through the CLI: a fresh process sizes XLA:CPU's thread pools for
    8 devices (`ensure_cpu_collective_threads`), which this test process cannot any more."""
    done = subprocess.run(_command(run_dir, overrides), cwd=REPO, env=_env(cache_dir, 8), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "export" / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, overrides, cache_dir):
    """1 process x 8 devices, uninterrupted: metrics and exported weights."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    _train_one_process(run_dir, overrides, cache_dir)
    return _records(run_dir), _weights(run_dir)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, overrides, cache_dir):
    """2 processes x 4 devices, as `f2jax train --distributed` with the F2JAX_* variables."""
    run_dir = tmp_path_factory.mktemp("multi") / "run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = _command(run_dir, overrides, "--distributed")
    procs = []
    for i in range(2):
        env = _env(cache_dir, 4, F2JAX_COORDINATOR=f"127.0.0.1:{port}", F2JAX_NUM_PROCESSES="2",
                   F2JAX_PROCESS_ID=str(i), F2JAX_HEARTBEAT_TIMEOUT="10")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"process {i}: {err[-3000:]}"
    return run_dir, [err for _, err in outs]


def _records(run_dir: Path) -> dict[int, dict]:
    records = [r for r in read_metrics(run_dir) if r.get("split") is None]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicate step records (written twice?): {steps}"
    return {r["step"]: r for r in records}


def test_two_processes_train_like_one_and_only_process_0_writes_metrics(reference, two_processes):
    ref, ref_weights = reference
    run_dir, logs = two_processes
    got = _records(run_dir)
    assert sorted(got) == sorted(ref) == list(range(1, STEPS + 1))
    for step in ref:
        assert abs(got[step]["loss"] - ref[step]["loss"]) <= 1e-5 * max(1.0, abs(ref[step]["loss"])), step
        # token throughput counts the tokens of both processes, not twice process 0's
        for key in ("tokens_per_s", "padded_tokens_per_s"):
            tokens, want = got[step][key] * got[step]["step_time_s"], ref[step][key] * ref[step]["step_time_s"]
            assert tokens == pytest.approx(want, rel=1e-6), (step, key)
    assert len(list((run_dir / "tensorboard").iterdir())) == 1  # one event file: process 0's
    assert "resumed" not in logs[0] and "run " in logs[0]  # process 0 logs INFO...
    assert " INFO " not in logs[1] and "run " not in logs[1]  # ...the others warnings and errors only
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    weights = _weights(run_dir)  # exported by both processes: same numbers as one process
    assert max(float(np.abs(weights[k] - ref_weights[k]).max()) for k in ref_weights) <= 1e-5


def test_checkpoint_of_two_processes_resumes_in_one(tmp_path, reference, two_processes, overrides, cache_dir):
    ref, ref_weights = reference
    src, _ = two_processes
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("export", "tensorboard"))
    shutil.rmtree(run_dir / "checkpoints" / str(STEPS))  # as if killed after the step-2 checkpoint
    log = _train_one_process(run_dir, overrides, cache_dir)  # 1 process x 8 devices
    assert f"resumed from checkpoint step {EVERY}" in log
    got = _records(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in ref:
        assert abs(got[step]["loss"] - ref[step]["loss"]) <= 1e-5 * max(1.0, abs(ref[step]["loss"])), step
    weights = _weights(run_dir)
    assert sorted(weights) == sorted(ref_weights)
    assert max(float(np.abs(weights[k] - ref_weights[k]).max()) for k in weights) <= 1e-5
    meta = checkpoint_mod.Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        assert meta.restore(None, step=EVERY).meta["process_count"] == 2
    finally:
        meta.manager.close()


def test_url_run_dirs_reach_orbax_and_metrics_unmangled(tmp_path, monkeypatch):
    url = "gs://bucket/run"
    assert os.fspath(checkpoint_dir(url)) == "gs://bucket/run/checkpoints"
    assert os.fspath(default_run_dir(url, "configs/demo.yaml")) == url
    assert os.fspath(default_run_dir(None, "configs/demo.yaml")) == "runs/demo"
    assert os.fspath(checkpoint_dir(tmp_path / "run")) == str(tmp_path / "run" / "checkpoints")
    rel = os.fspath(checkpoint_dir("rel/run"))
    assert os.path.isabs(rel) and rel.endswith("rel/run/checkpoints")

    seen = []

    class FakeManager:  # what Orbax would be handed, without touching the network
        def __init__(self, directory, options=None):
            seen.append(directory)

    monkeypatch.setattr(checkpoint_mod.ocp, "CheckpointManager", FakeManager)
    checkpoint_mod.Checkpointer(checkpoint_dir(url))
    checkpoint_mod.Checkpointer(f"{url}/checkpoints")
    assert [os.fspath(d) for d in seen] == ["gs://bucket/run/checkpoints"] * 2

    writer = MetricsWriter(url, enabled=False)  # the writer of processes > 0: no I/O at all
    assert os.fspath(writer.path) == "gs://bucket/run/metrics.jsonl"
    assert writer.tensorboard_dir == "gs://bucket/run/tensorboard"
    local = MetricsWriter(tmp_path, enabled=True)
    local.write({"step": 1, "loss": 0.5})
    local.close()
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.5}]
    assert os.fspath(as_path(url) / "config.yaml") == "gs://bucket/run/config.yaml"
