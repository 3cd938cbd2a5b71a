"""Qwen3 backbone in Flax NNX. Imports are lazy so that `f2jax.model.options` and
`f2jax.model.presets` (read by the CLI's parsers and the config) do not start JAX."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Qwen3Config": "f2jax.model.config",
    "UnsupportedModelError": "f2jax.model.config",
    "ModelOptions": "f2jax.model.qwen3",
    "Qwen3Model": "f2jax.model.qwen3",
    "abstract_model": "f2jax.model.qwen3",
    "last_token_index": "f2jax.model.qwen3",
    "last_token_pool": "f2jax.model.qwen3",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'f2jax.model' has no attribute {name!r}")
