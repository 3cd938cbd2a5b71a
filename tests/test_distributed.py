"""Process start-up: a dead peer ends the others with one clear line (never a hang), and a
missing peer at start-up fails within the connection timeout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from f2jax.distributed import PEER_FAILURE_EXIT

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import sys, time
    import jax, jax.numpy as jnp
    from jax.experimental import multihost_utils
    from f2jax import distributed
    distributed.initialize(heartbeat_timeout_s=int(sys.argv[1]), init_timeout_s=int(sys.argv[2]))
    print("joined", jax.process_index(), jax.process_count(), flush=True)
    try:
        for i in range(100000):
            multihost_utils.process_allgather(jnp.ones(2) * jax.process_index())
            if i == 3:
                print("running", flush=True)
            time.sleep(0.02)
    except Exception as err:
        if distributed.is_peer_failure(err):
            distributed.peer_failure(f"a collective failed ({distributed.first_line(err)})")
        raise
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(pid: int, n: int, port: int, heartbeat: int, init_timeout: int) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "F2JAX_COORDINATOR": f"127.0.0.1:{port}", "F2JAX_NUM_PROCESSES": str(n), "F2JAX_PROCESS_ID": str(pid)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(heartbeat), str(init_timeout)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, word: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    raise AssertionError(f"no {word!r} within {timeout} s")


@pytest.mark.parametrize("victim", [1, 0])  # a worker, and the coordinator itself
def test_killed_peer_ends_the_other_with_one_clear_line(victim):
    port, heartbeat = _free_port(), 5
    procs = [_spawn(i, 2, port, heartbeat, 60) for i in range(2)]
    try:
        for p in procs:
            _wait_for(p, "running", 120)
        killed_at = time.monotonic()
        procs[victim].send_signal(signal.SIGKILL)
        survivor = procs[1 - victim]
        _, err = survivor.communicate(timeout=4 * heartbeat + 30)
        detected_s = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert survivor.returncode == PEER_FAILURE_EXIT, err[-3000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("f2jax: distributed run failed"))
    assert f"coordinator 127.0.0.1:{port}" in line and "2 processes expected" in line
    assert f"heartbeat timeout {heartbeat} s" in line
    assert detected_s < 4 * heartbeat + 30
    print(f"victim {victim}: survivor exited {detected_s:.2f} s after the kill")  # -s shows it


def test_missing_peer_at_start_fails_within_the_timeout():
    start = time.monotonic()
    proc = _spawn(0, 2, _free_port(), 5, 8)  # process 1 never comes
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PEER_FAILURE_EXIT, err[-2000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("f2jax: distributed run failed"))
    assert "2 processes did not all connect within 8 s" in line and "coordinator 127.0.0.1:" in line
    assert time.monotonic() - start < 60
