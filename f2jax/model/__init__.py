"""Qwen3 backbone in Flax NNX. Imports are lazy so that `f2jax.model.options` and
`f2jax.model.presets` (read by the CLI's parsers and the config) do not start JAX."""

from f2jax.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Qwen3Config": "f2jax.model.config",
    "UnsupportedModelError": "f2jax.model.config",
    "ModelOptions": "f2jax.model.qwen3",
    "Qwen3Model": "f2jax.model.qwen3",
    "abstract_model": "f2jax.model.qwen3",
    "last_token_index": "f2jax.model.qwen3",
    "last_token_pool": "f2jax.model.qwen3",
})
