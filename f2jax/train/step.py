"""The jitted train and eval steps: forward student (+ teacher), F2LLM losses, AdamW update.

With `grad_accum = k > 1` the step runs GradCache: embeddings of the k micro-batches are
computed without a graph, the loss and its gradient w.r.t. the embeddings are taken over the
WHOLE batch (so the in-batch loss still sees every passage), then each micro-batch is
recomputed and back-propagated against its slice of those gradients. The result equals one
big-batch step while holding activations of one micro-batch only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from f2jax.model.qwen3 import last_token_pool
from f2jax.train.losses import distill_loss, hard_negative_loss, inbatch_loss

Params = Any
Batch = dict[str, jax.Array]
ARRAY_KEYS = ("query_ids", "query_mask", "passage_ids", "passage_mask", "negative_ids", "negative_mask")
# Precomputed teacher vectors ([b, Ht], [b, Ht], [b, K, Ht]); when a batch carries them and no
# co-hosted teacher is given, they are the teacher reps.
TEACHER_KEYS = ("teacher_query", "teacher_passage", "teacher_negative")


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """Static (hashable) loss settings closed over by the jitted step."""

    temperature: float = 0.05
    mrl_dims: tuple[int, ...] | None = None
    passage_gradient: bool = True
    kd_weight: float = 1.0
    grad_accum: int = 1


def pooled(graphdef: nnx.GraphDef, params: Params, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Raw (un-normalised) last-token states in float32."""
    hidden = nnx.merge(graphdef, params)(ids, mask)
    return last_token_pool(hidden, mask).astype(jnp.float32)


def encode_batch(graphdef: nnx.GraphDef, params: Params, batch: Batch) -> tuple[jax.Array, ...]:
    """(queries [b, H], positives [b, H], negatives [b, K, H])."""
    q = pooled(graphdef, params, batch["query_ids"], batch["query_mask"])
    p = pooled(graphdef, params, batch["passage_ids"], batch["passage_mask"])
    b, k, length = batch["negative_ids"].shape
    n = pooled(graphdef, params, batch["negative_ids"].reshape(b * k, length),
               batch["negative_mask"].reshape(b * k, length))
    return q, p, n.reshape(b, k, -1)


def objective(reps: tuple[jax.Array, ...], teacher_reps: tuple[jax.Array, ...] | None,
              spec: LossSpec, inbatch: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    """total = in-batch (retrieval only) + hard-negative + kd_weight · KD."""
    q, p, n = reps
    hard = hard_negative_loss(q, p, n, temperature=spec.temperature, mrl_dims=spec.mrl_dims)
    zero = jnp.zeros((), jnp.float32)
    ib = inbatch_loss(q, p, temperature=spec.temperature, mrl_dims=spec.mrl_dims,
                      passage_gradient=spec.passage_gradient) if inbatch else zero
    kd = zero
    if teacher_reps is not None:
        kd = sum((distill_loss(s, t) for s, t in zip(reps, teacher_reps, strict=True)), zero)
    total = ib + hard + spec.kd_weight * kd
    return total, {"loss": total, "loss_inbatch": ib, "loss_hard": hard, "loss_kd": kd}


def _micro(batch: Batch, k: int) -> Batch:
    """[B, ...] -> [k, B/k, ...] with strided rows, so every device keeps its share of each."""
    return {key: v.reshape(v.shape[0] // k, k, *v.shape[1:]).swapaxes(0, 1) for key, v in batch.items()}


def _flatten(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def _unflatten(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), tree)


def batch_keys(batch: dict[str, Any]) -> tuple[str, ...]:
    """The array keys a step takes from `batch`: ARRAY_KEYS, plus TEACHER_KEYS when present."""
    return (*ARRAY_KEYS, *(key for key in TEACHER_KEYS if key in batch))


def teacher_reps(teacher: tuple[nnx.GraphDef, Params] | None, batch: Batch, k: int) -> Any:
    """Teacher (q, p, n) in the order of the student reps: a co-hosted teacher's forward pass,
    else the batch's stored vectors, else None. With k > 1 micro-batches the rows follow the
    same `_micro`/`_flatten` order as the GradCache student reps."""
    if teacher is None:
        if TEACHER_KEYS[0] not in batch:
            return None
        stored = tuple(batch[key].astype(jnp.float32) for key in TEACHER_KEYS)
        if k > 1:
            stored = _flatten(tuple(_micro({"x": x}, k)["x"] for x in stored))
        return jax.lax.stop_gradient(stored)
    graphdef, params = teacher
    if k == 1:
        return jax.lax.stop_gradient(encode_batch(graphdef, params, batch))
    reps = jax.lax.map(lambda mb: encode_batch(graphdef, params, mb), _micro(batch, k))
    return jax.lax.stop_gradient(_flatten(reps))


def loss_and_grads(graphdef: nnx.GraphDef, params: Params, batch: Batch, teacher: Any,
                   spec: LossSpec, inbatch: bool) -> tuple[dict[str, jax.Array], Params]:
    k = spec.grad_accum
    t_reps = teacher_reps(teacher, batch, k)
    batch = {key: v for key, v in batch.items() if key not in TEACHER_KEYS}
    if k == 1:
        def loss_fn(prm: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
            return objective(encode_batch(graphdef, prm, batch), t_reps, spec, inbatch)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return metrics, grads
    micro = _micro(batch, k)
    reps = jax.lax.map(lambda mb: encode_batch(graphdef, params, mb), micro)
    (_, metrics), rep_grads = jax.value_and_grad(
        lambda r: objective(r, t_reps, spec, inbatch), has_aux=True)(_flatten(reps))

    def accumulate(acc: Params, xs: tuple[Batch, Any]) -> tuple[Params, None]:
        mb, cotangent = xs
        _, vjp = jax.vjp(lambda prm: encode_batch(graphdef, prm, mb), params)
        return jax.tree.map(jnp.add, acc, vjp(cotangent)[0]), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, _ = jax.lax.scan(accumulate, zeros, (micro, _unflatten(rep_grads, k)))
    return metrics, grads


def train_step(state: dict[str, Any], batch: Batch, teacher: Any, *, graphdef: nnx.GraphDef,
               tx: optax.GradientTransformation, spec: LossSpec, inbatch: bool
               ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
    """One optimiser update; `state` = {params, opt_state, step}."""
    metrics, grads = loss_and_grads(graphdef, state["params"], batch, teacher, spec, inbatch)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {**metrics, "grad_norm": optax.global_norm(grads)}
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics


def retrieval_accuracy(reps: tuple[jax.Array, ...], inbatch: bool) -> dict[str, jax.Array]:
    """Top-1 accuracy at full width: positive vs own hard negatives, and vs every batch passage."""
    q, p, n = (r / jnp.linalg.norm(r, axis=-1, keepdims=True).clip(1e-12) for r in reps)
    cands = jnp.concatenate([p[:, None], n], axis=1)
    out = {"acc_hard": jnp.mean(jnp.argmax(jnp.einsum("bd,bkd->bk", q, cands), axis=-1) == 0)}
    if inbatch:
        out["acc_inbatch"] = jnp.mean(jnp.argmax(q @ p.T, axis=-1) == jnp.arange(q.shape[0]))
    return out


def eval_step(params: Params, batch: Batch, teacher: Any, *, graphdef: nnx.GraphDef,
              spec: LossSpec, inbatch: bool) -> tuple[dict[str, jax.Array], tuple[jax.Array, ...]]:
    """Validation losses and top-1 accuracies, plus the embeddings for retrieval metrics."""
    reps = encode_batch(graphdef, params, batch)
    metrics = objective(reps, teacher_reps(teacher, batch, 1), spec, inbatch)[1]
    return {**metrics, **retrieval_accuracy(reps, inbatch)}, reps
