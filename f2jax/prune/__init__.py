"""Structured pruning of Qwen3 embedders (depth by block influence, width by Minitron activation
importance) into smaller Qwen3 checkpoints; see `f2jax prune --help` and docs/pruning.md.
Imports are lazy so that the CLI's `add_prune_parser` does not start JAX."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Scores": "f2jax.prune.importance",
    "Calibration": "f2jax.prune.prune",
    "prune_checkpoint": "f2jax.prune.prune",
    "PRESETS": "f2jax.prune.surgery",
    "Target": "f2jax.prune.surgery",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'f2jax.prune' has no attribute {name!r}")
