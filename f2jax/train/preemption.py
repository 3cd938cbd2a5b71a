"""Knowing, at a step boundary, that the job is about to be killed (SIGTERM, TPU maintenance).

A signal handler only sets a flag; the loop checks it after each step, saves a checkpoint of
the current step and exits cleanly. Where JAX's distributed runtime exposes preemption notices
(TPU pods), `reached_preemption_sync_point` makes every host agree on the same step.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


def _sync_manager_available() -> bool:
    """Whether jax.distributed set up a preemption sync manager (multi-host TPU/GPU jobs)."""
    try:
        from jax._src import distributed  # no public accessor in JAX 0.10

        return getattr(distributed.global_state, "preemption_sync_manager", None) is not None
    except Exception:  # a JAX without it: fall back to the signal flag
        return False


class PreemptionWatch:
    """Context manager: `requested(step)` says whether to checkpoint and stop after `step`."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self._flag = threading.Event()
        self._previous: dict[int, Any] = {}
        self._use_sync = False

    def __enter__(self) -> PreemptionWatch:
        self._use_sync = _sync_manager_available()
        # The distributed runtime listens for SIGTERM itself; a Python handler would replace it.
        if not self._use_sync and threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.warning(
            "received %s: will checkpoint after the current step and exit",
            signal.Signals(signum).name,
        )
        self._flag.set()

    def requested(self, step: int) -> bool:
        if self._use_sync:
            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError as err:
                log.warning("preemption sync point unavailable (%s); using SIGTERM only", err)
                self._use_sync = False
        local = self._flag.is_set()
        if jax.process_count() > 1:  # every host must stop at the same step
            flags = multihost_utils.process_allgather(np.int32(local))
            return bool(np.max(flags))
        return local
