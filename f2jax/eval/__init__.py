"""Evaluation: mteb wrapper (`MTEBModel`), local mteb tasks, and (re-exported) the NumPy
retrieval metrics of `f2jax.retrieval_metrics`, which training uses too.

`MTEBModel` and the local tasks import mteb (slow, torch); they load lazily.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "MTEBModel": "f2jax.eval.model",
    "load_local_tasks": "f2jax.eval.local_tasks",
    "evaluate": "f2jax.eval.runner",
    "evaluate_retrieval": "f2jax.retrieval_metrics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'f2jax.eval' has no attribute {name!r}")


__all__ = list(_LAZY)
