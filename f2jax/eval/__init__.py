"""Evaluation: mteb wrapper (`MTEBModel`), local mteb tasks, and (re-exported) the NumPy
retrieval metrics of `f2jax.retrieval_metrics`, which training uses too.

`MTEBModel` and the local tasks import mteb (slow, torch); they load lazily.
"""

from f2jax.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "MTEBModel": "f2jax.eval.model",
    "load_local_tasks": "f2jax.eval.local_tasks",
    "evaluate": "f2jax.eval.runner",
    "evaluate_retrieval": "f2jax.retrieval_metrics",
})
