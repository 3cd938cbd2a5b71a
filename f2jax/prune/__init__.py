"""Structured pruning of Qwen3 embedders (depth by block influence, width by Minitron activation
importance) into smaller Qwen3 checkpoints; see `f2jax prune --help` and docs/pruning.md."""

from f2jax.prune.importance import Scores
from f2jax.prune.prune import Calibration, prune_checkpoint
from f2jax.prune.surgery import PRESETS, Target

__all__ = ["PRESETS", "Calibration", "Scores", "Target", "prune_checkpoint"]
