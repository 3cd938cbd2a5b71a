"""Public home of the losses (DESIGN.md contract); the code lives in `f2jax.train.losses`."""

from f2jax.train.losses import (
    distill_loss,
    hard_negative_loss,
    inbatch_loss,
    l2_normalize,
    mrl_dims,
    mrl_weights,
)

__all__ = [
    "distill_loss",
    "hard_negative_loss",
    "inbatch_loss",
    "l2_normalize",
    "mrl_dims",
    "mrl_weights",
]
