"""Resident-memory readings for this process, from /proc/self/status (Linux).

VmHWM is the kernel's own peak, so it cannot miss a short spike; a background sampler adds the
anonymous-vs-file split at the peak (file pages are mmap residency, anonymous pages are
NumPy/XLA buffers), which VmHWM alone cannot tell apart.
"""

from __future__ import annotations

import resource
import threading
import time

from f2jax.paths import Path

_STATUS = Path("/proc/self/status")
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def status() -> dict[str, int]:
    """The memory fields of /proc/self/status in bytes (ru_maxrss fallback off Linux)."""
    out: dict[str, int] = {}
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in FIELDS:
                out[key] = int(value.split()[0]) * 1024
    if "VmHWM" not in out:
        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler:
    """Polls status() in a thread; keeps the maxima and a (time, anon, file) timeline."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.max: dict[str, int] = {}
        self.timeline: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval_s)

    def sample(self) -> None:
        now = status()
        for key, value in now.items():
            self.max[key] = max(self.max.get(key, 0), value)
        self.timeline.append(
            (time.perf_counter() - self._t0, now.get("RssAnon", 0), now.get("RssFile", 0))
        )

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
