"""Qwen3 backbone in Flax NNX."""

from f2jax.model.config import Qwen3Config, UnsupportedModelError
from f2jax.model.qwen3 import ModelOptions, Qwen3Model, abstract_model, last_token_index, last_token_pool

__all__ = [
    "ModelOptions", "Qwen3Config", "Qwen3Model", "UnsupportedModelError",
    "abstract_model", "last_token_index", "last_token_pool",
]
