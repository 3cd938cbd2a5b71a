"""Hugging Face I/O: streaming safetensors load and export."""

from f2jax.hf.checkpoint import CheckpointError, SafetensorsCheckpoint
from f2jax.hf.load import load_model

__all__ = ["CheckpointError", "SafetensorsCheckpoint", "load_model"]
