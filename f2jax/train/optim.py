"""Learning-rate schedules and the AdamW optimiser of the F2LLM-v2 recipe (docs/recipe.md, Optimisation).

Semantics follow the PyTorch reference: Hugging Face `get_scheduler("cosine" |
"constant_with_warmup")` with the learning rate floored at `min_lr` after each step, and
`torch.optim.AdamW` (decoupled decay `p -= lr * wd * p`, which optax's `adamw` also does) after
`clip_grad_norm_(params, 1.0)`.
"""

from __future__ import annotations

import logging
from typing import Literal

import jax
import jax.numpy as jnp
import optax

__all__ = ["make_optimizer", "make_schedule", "run_warmup_steps"]
log = logging.getLogger(__name__)


def make_schedule(
    kind: Literal["cosine", "constant"] = "cosine",
    *,
    peak_lr: float,
    warmup_steps: int,
    total_steps: int,
    min_lr: float = 1e-7,
) -> optax.Schedule:
    """Linear warmup from 0 to peak_lr, then cosine decay (or constant), floored at min_lr.

    Step k (0-based, the k-th optimiser update) gets
      warmup:  peak_lr * k / warmup_steps                         for k < warmup_steps
      cosine:  peak_lr * 0.5 * (1 + cos(pi * progress)), progress = (k - warmup) / (total -
               warmup), computed as cos^2(pi * progress / 2) to avoid float32 cancellation near
               the end, clipped to [0, 1] so steps past total_steps stay at the floor (the
               HF formula would rise again there)
      constant: peak_lr
    and then max(value, min_lr) for k >= 1. A warmup longer than the run is cut by the run's end
    (lr keeps rising at peak_lr / warmup_steps per step), as the reference's scheduler does: a
    smoke run of a recipe needs no edit. Step 0 is not floored: the reference applies its
    floor only after a scheduler step, so its first update runs at lr 0 when warming up.
    """
    if kind not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule kind {kind!r}")
    if peak_lr <= 0 or min_lr < 0 or warmup_steps < 0 or total_steps < 1:
        raise ValueError("need peak_lr > 0, min_lr >= 0, warmup_steps >= 0, total_steps >= 1")

    def schedule(count: jax.Array | int) -> jax.Array:
        step = jnp.asarray(count, jnp.float32)
        warm = step / max(1, warmup_steps)
        if kind == "cosine":
            progress = jnp.clip((step - warmup_steps) / max(1, total_steps - warmup_steps), 0, 1)
            after = jnp.square(jnp.cos(0.5 * jnp.pi * progress))  # = (1 + cos(pi x)) / 2
        else:
            after = jnp.ones_like(step)
        lr = peak_lr * jnp.where(step < warmup_steps, warm, after)
        return jnp.where(step >= 1, jnp.maximum(lr, min_lr), lr)

    return schedule


def _matrices_only(params: optax.Params) -> optax.Params:
    return jax.tree.map(lambda x: jnp.ndim(x) >= 2, params)


def make_optimizer(
    schedule: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.98,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    clip_norm: float | None = 1.0,
    grad_accum: int = 1,
    decay_mask: Literal["all", "matrices"] = "all",
) -> optax.GradientTransformation:
    """chain(clip_by_global_norm, adamw), wrapped in `optax.MultiSteps` when grad_accum > 1.

    decay_mask="all" decays every parameter, as the reference's `AdamW(model.parameters())`
    does; "matrices" decays only ndim >= 2 leaves (no norm scales or biases), the usual choice
    for new runs. With grad_accum=k the update is applied every k-th call with the mean of the
    k micro-gradients (clipped after averaging, like accumulate-then-clip in PyTorch), and the
    schedule advances once per applied update. Note optax clips with max_norm / norm where
    torch uses max_norm / (norm + 1e-6): a relative 1e-6 difference, only when clipping.
    """
    if decay_mask not in ("all", "matrices"):
        raise ValueError(f"decay_mask must be 'all' or 'matrices', got {decay_mask!r}")
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
    mask = None if decay_mask == "all" else _matrices_only
    adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
    tx = adamw if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adamw)
    if grad_accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=grad_accum).gradient_transformation()
    return tx


def run_warmup_steps(warmup_steps: int, total_steps: int) -> int:
    """`warmup_steps` unchanged, with one warning when the run ends before the warmup does."""
    if warmup_steps > total_steps:
        log.warning("train.warmup_steps %d exceeds the run's %d steps: the warmup is cut by the end of "
                    "the run (lr reaches %.3g of its peak)", warmup_steps, total_steps,
                    (total_steps - 1) / warmup_steps)
    return warmup_steps
