"""The losses' public import path (`from f2jax.losses import inbatch_loss, ...`), kept stable for
users; the code lives in `f2jax.train.losses`. Formulas: docs/recipe.md, Losses."""

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
