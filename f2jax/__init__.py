"""f2jax: the F2LLM-v2 embedding-model recipe in JAX/Flax."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from f2jax.encode import Encoder


def load(path: Any, dtype: str = "float32", **kwargs: Any) -> Encoder:
    """An `Encoder` from a Hugging Face Qwen3 directory (or an f2jax export), or from an f2jax
    run directory (its newest valid checkpoint; `step=N` picks another)."""
    from f2jax.paths import existing

    if (existing(path) / "checkpoints").is_dir():
        from f2jax.train.export import encoder_from_checkpoint

        return encoder_from_checkpoint(path, kwargs.pop("step", None))[1]
    from f2jax.encode import Encoder

    return Encoder.from_pretrained(path, dtype=dtype, **kwargs)


__all__ = ["load", "__version__"]
