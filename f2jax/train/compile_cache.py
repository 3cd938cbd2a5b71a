"""No compile storms: JAX's persistent compilation cache for `f2jax train`, and compile counters.

Packed rows compile one step per (task kind, row bucket, texts-per-row bucket): 16–32 s each at
0.6B on an H200, ~90 s of a 30-step run (issue 26). With the cache a restart after preemption
loads every step it compiled before instead (`checkpoint.compile_cache`: RUN_DIR/compile_cache
by default, any directory or gs:// URL, null for off). JAX only stores programs that took at
least `jax_persistent_cache_min_compile_time_secs` (default 1 s) to compile, i.e. the steps,
not the small helpers. The counters (`jax.monitoring` listeners) go into metrics.jsonl, so the
cost of compiling — and what the cache saved — is visible per run.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import jax

log = logging.getLogger(__name__)

RUN_DIR = "run_dir"  # `checkpoint.compile_cache` default: RUN_DIR/compile_cache
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # XLA compiles and cache loads
CACHE_HITS = "/jax/compilation_cache/cache_hits"
CACHE_SAVED = "/jax/compilation_cache/compile_time_saved_sec"

_lock = threading.Lock()
_counts = {"compiles": 0, "compile_s": 0.0, "cache_hits": 0, "cache_saved_s": 0.0}
_installed = False


def setup_compile_cache(setting: str | None, run_dir: Any) -> str | None:
    """Point JAX's persistent compilation cache at `setting` ('run_dir': RUN_DIR/compile_cache,
    else a directory or gs:// URL; None: f2jax sets none) before the first compile; returns the
    directory in use. A cache JAX was already given (JAX_COMPILATION_CACHE_DIR, jax.config) is
    kept: it was chosen on purpose, and JAX reads the setting only once per process."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        log.info("compilation cache: %s (JAX's own setting)", current)
        return str(current)
    if setting is None:
        return None
    path = str(run_dir / "compile_cache") if setting == RUN_DIR else setting
    jax.config.update("jax_compilation_cache_dir", path)
    log.info("compilation cache: %s", path)
    return path


def _on_event(event: str, **_: Any) -> None:
    if event == CACHE_HITS:
        with _lock:
            _counts["cache_hits"] += 1


def _on_duration(event: str, seconds: float, **_: Any) -> None:
    if event in (BACKEND_COMPILE, CACHE_SAVED):
        with _lock:
            if event == BACKEND_COMPILE:
                _counts["compiles"] += 1
                _counts["compile_s"] += seconds
            else:
                _counts["cache_saved_s"] += seconds


def count_compiles() -> None:
    """Start counting this process's compiles (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    jax.monitoring.register_event_listener(_on_event)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)


def compile_counts() -> dict[str, float]:
    """Since `count_compiles`: XLA compiles (cache loads included) and their seconds, persistent
    cache hits, and the compile seconds those hits saved."""
    with _lock:
        return dict(_counts)


def compile_record(since: dict[str, float]) -> dict[str, float]:
    """metrics.jsonl fields: the counts since `since` (this run's share of the process)."""
    now = compile_counts()
    return {"compiles": int(now["compiles"] - since["compiles"]),
            "compile_s": round(now["compile_s"] - since["compile_s"], 3),
            "compile_cache_hits": int(now["cache_hits"] - since["cache_hits"]),
            "compile_cache_saved_s": round(now["cache_saved_s"] - since["cache_saved_s"], 3)}
