"""Starting the processes of a multi-host run, in one place, and failing loudly when one dies.

`initialize()` calls `jax.distributed.initialize` with:
- automatic detection on Cloud TPU and under SLURM (no arguments needed);
- otherwise the coordinator / process count / process id from arguments or the environment
  (`F2JAX_COORDINATOR`, `F2JAX_NUM_PROCESSES`, `F2JAX_PROCESS_ID`, as `launch/local.sh` and
  `launch/gpu.sh` set them);
- timeouts fit for cold pod starts: 1800 s to connect (JAX's 300 s default is too short after
  a preemption), 100 s heartbeat (`F2JAX_INIT_TIMEOUT`, `F2JAX_HEARTBEAT_TIMEOUT` override).

A dead peer must never leave the others hanging in a collective: a watchdog thread asks the
coordination service which processes are alive, and a collective that fails because its peer
went away (CPU/gloo) is recognised; either way this process prints one line naming the
coordinator, the expected and seen process counts and the timeout, and exits with
`PEER_FAILURE_EXIT` (without JAX's shutdown barrier, which would wait for the dead peer).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time

import jax

from f2jax.errors import F2JaxError

log = logging.getLogger(__name__)

ENV_COORDINATOR = "F2JAX_COORDINATOR"
ENV_NUM_PROCESSES = "F2JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "F2JAX_PROCESS_ID"
ENV_INIT_TIMEOUT = "F2JAX_INIT_TIMEOUT"
ENV_HEARTBEAT_TIMEOUT = "F2JAX_HEARTBEAT_TIMEOUT"
DEFAULT_INIT_TIMEOUT_S = 1800
DEFAULT_HEARTBEAT_TIMEOUT_S = 100
_JAX_GRACE_S = 30  # JAX's own connect timeout runs this much longer than ours
PEER_FAILURE_EXIT = 75  # EX_TEMPFAIL: a launcher may recreate the slice and rerun (the run resumes)
_PEER_FAILURE_MARKERS = ("Connection closed by peer", "Connection reset by peer", "heartbeat timeout",
                         "tasks are unhealthy", "another task died", "Broken pipe")


class DistributedError(F2JaxError):
    """The processes of a run could not be started together."""

    kind = "distributed start-up failed"


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits in the run, and how the others are watched."""

    coordinator: str
    num_processes: int
    process_id: int
    heartbeat_timeout_s: int

    def describe(self, alive: int | None = None) -> str:
        seen = "unknown" if alive is None else str(alive)
        return (f"coordinator {self.coordinator}: {self.num_processes} processes expected, {seen} alive "
                f"(heartbeat timeout {self.heartbeat_timeout_s} s)")


_GROUP: ProcessGroup | None = None


def _env_int(name: str, value: int | None) -> int | None:
    if value is not None or not os.environ.get(name):
        return value
    try:
        return int(os.environ[name])
    except ValueError:
        raise DistributedError(f"{name}={os.environ[name]!r} is not an integer") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, init_timeout_s: int | None = None, heartbeat_timeout_s: int | None = None,
               watch: bool = True) -> ProcessGroup:
    """Join the run's processes (see the module docstring); idempotent."""
    global _GROUP
    if _GROUP is not None:
        return _GROUP
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    num_processes = _env_int(ENV_NUM_PROCESSES, num_processes)
    process_id = _env_int(ENV_PROCESS_ID, process_id)
    init_timeout = _env_int(ENV_INIT_TIMEOUT, init_timeout_s) or DEFAULT_INIT_TIMEOUT_S
    heartbeat = _env_int(ENV_HEARTBEAT_TIMEOUT, heartbeat_timeout_s) or DEFAULT_HEARTBEAT_TIMEOUT_S
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over TCP
    where = coordinator or "auto-detected (Cloud TPU / SLURM)"
    missing = (f"coordinator {where}: {num_processes or '?'} processes did not all connect within "
               f"{init_timeout} s")
    # JAX aborts the process (no Python exception) when its own connect timeout passes: our timer
    # fires first, says which coordinator and how many processes, and exits.
    timer = threading.Timer(init_timeout, _exit_with, args=(f"{missing}; process {process_id} stops",))
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=init_timeout + _JAX_GRACE_S,
                                   heartbeat_timeout_seconds=heartbeat)
    except Exception as err:  # noqa: BLE001 (JAX raises several types; all mean the same here)
        raise DistributedError(f"{missing} ({first_line(err)})") from None
    finally:
        timer.cancel()
    _GROUP = ProcessGroup(coordinator=where, num_processes=jax.process_count(), process_id=jax.process_index(),
                          heartbeat_timeout_s=heartbeat)
    log.info("process %d of %d joined (%s)", _GROUP.process_id, _GROUP.num_processes, where)
    if watch and _GROUP.num_processes > 1:
        threading.Thread(target=_watch_peers, args=(_GROUP,), name="f2jax-peer-watchdog", daemon=True).start()
    return _GROUP


CPU_COLLECTIVE_THREADS = 256  # XLA:CPU's cap on its intra-op pool


def ensure_cpu_collective_threads(env: dict[str, str] | None = None) -> int | None:
    """Give XLA:CPU enough worker threads for collectives over M simulated devices; call before
    JAX starts its backends. Returns the thread count set, or None when nothing was changed.

    XLA:CPU runs the M devices' shares of a program on one intra-op pool of max(cores, M)
    threads. A collective blocks its pool thread until all M devices reach it, and a device
    may launch its next collectives while earlier ones wait, so M - 1 devices running ahead
    can hold every thread in collectives the last device never reaches (XLA aborts after 40 s;
    docs/performance.md has the measured pool sizes). XLA's cap, 256 threads, cannot deadlock
    and idle threads cost nothing. GPUs and TPUs run collectives on streams and are unaffected.
    `PJRT_NPROC` (or `NPROC`) set by you is left alone."""
    env = os.environ if env is None else env
    flags = env.get("XLA_FLAGS", "")
    devices = max((int(f.split("=", 1)[1]) for f in flags.split()
                   if f.startswith("--xla_force_host_platform_device_count=") and f.split("=", 1)[1].isdigit()),
                  default=1)
    if devices < 2 or env.get("PJRT_NPROC") or env.get("NPROC"):
        return None
    threads = max(os.cpu_count() or 1, devices, CPU_COLLECTIVE_THREADS)
    env["PJRT_NPROC"] = str(threads)
    return threads


def group() -> ProcessGroup | None:
    """The process group this process joined, or None for a single-process run."""
    return _GROUP


def _client() -> object | None:
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


def _live_count(client: object, n: int) -> int:
    return len(client.get_live_nodes(list(range(n))))  # type: ignore[attr-defined]


def _watch_peers(pg: ProcessGroup) -> None:
    interval = max(1.0, pg.heartbeat_timeout_s / 4)
    while True:
        time.sleep(interval)
        client = _client()
        if client is None:  # shut down normally
            return
        try:
            alive = _live_count(client, pg.num_processes)
        except Exception as err:  # noqa: BLE001 (the coordinator itself is gone)
            peer_failure(f"coordinator unreachable ({first_line(err)})")
        if alive < pg.num_processes:
            peer_failure("a peer process stopped", alive)


def barrier(name: str, timeout_s: float = 24 * 3600) -> None:
    """Wait until every process of the run reaches barrier `name` (each name used once); a no-op
    in a single-process run. It goes through the coordination service, not a device collective,
    so it never competes with a step for the devices. A peer that dies meanwhile is reported by
    the watchdog (heartbeat), so the generous default timeout never turns into a hang."""
    if jax.process_count() == 1:
        return
    client = _client()
    if client is None:
        raise DistributedError(f"barrier {name!r}: {jax.process_count()} processes but no distributed client")
    try:
        client.wait_at_barrier(name, int(timeout_s * 1000))  # type: ignore[attr-defined]
    except Exception as err:  # noqa: BLE001 (JaxRuntimeError: DEADLINE_EXCEEDED, peer gone, ...)
        if is_peer_failure(err):
            peer_failure(f"barrier {name!r} failed ({first_line(err)})")
        raise DistributedError(f"barrier {name!r}: not all {jax.process_count()} processes arrived within "
                               f"{timeout_s:.0f} s ({first_line(err)})") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_peer_failure(err: BaseException) -> bool:
    """A collective that failed because another process of the run went away."""
    return _GROUP is not None and any(marker in str(err) for marker in _PEER_FAILURE_MARKERS)


def peer_failure(what: str, alive: int | None = None) -> None:
    """Print one line and leave now: JAX's exit-time shutdown barrier would wait for the dead peer."""
    pg = _GROUP
    where = pg.describe(alive) if pg is not None else "no process group"
    _exit_with(f"{what}; {where}; process {pg.process_id if pg else '?'} stops")


def _exit_with(message: str) -> None:
    print(f"f2jax: distributed run failed: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(PEER_FAILURE_EXIT)
