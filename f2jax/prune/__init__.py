"""Structured pruning of Qwen3 embedders (depth by block influence, width by Minitron activation
importance) into smaller Qwen3 checkpoints; see `f2jax prune --help` and docs/pruning.md.
Imports are lazy so that the CLI's `add_prune_parser` does not start JAX."""

from f2jax.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Scores": "f2jax.prune.importance",
    "Calibration": "f2jax.prune.prune",
    "prune_checkpoint": "f2jax.prune.prune",
    "PRESETS": "f2jax.prune.surgery",
    "Target": "f2jax.prune.surgery",
})
