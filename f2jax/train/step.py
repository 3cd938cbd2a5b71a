"""The jitted train and eval steps: forward student (+ teacher), F2LLM losses, AdamW update.

With `grad_accum = k > 1` the step runs GradCache: embeddings of the k micro-batches are
computed without a graph, the loss and its gradient w.r.t. the embeddings are taken over the
WHOLE batch (so the in-batch loss still sees every passage), then each micro-batch is
recomputed and back-propagated against its slice of those gradients. The result equals one
big-batch step while holding activations of one micro-batch only.

`compile_step` lowers and compiles either step ahead of time from a `StepProgram` (abstract,
sharded state: nothing allocated), for the Trainer and for the step-memory benchmark alike.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from f2jax.compiled_memory import compiled_memory
from f2jax.data.batch import Batch, PackedBatch, split_micro
from f2jax.encode import pooled_groups
from f2jax.losses import distill_loss, hard_negative_loss, inbatch_loss, l2_normalize
from f2jax.model.partitioning import gather_batch
from f2jax.sharding import batch_sharding
from f2jax.train.state import TrainState

log = logging.getLogger(__name__)
Params = Any


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """Static (hashable) loss settings closed over by the jitted step."""

    temperature: float = 0.05
    mrl_dims: tuple[int, ...] | None = None
    passage_gradient: bool = True
    kd_weight: float = 1.0
    grad_accum: int = 1


def encode_packed(graphdef: nnx.GraphDef, params: Params, batch: PackedBatch) -> tuple[jax.Array, ...]:
    """One forward over the packed rows, then each text's last token gathered at (row, column)."""
    hidden = nnx.merge(graphdef, params)(batch.ids, None, segment_ids=batch.segment_ids,
                                         positions=batch.positions, offsets=batch.offsets,
                                         seqlens=batch.seqlens)

    def gather(index: jax.Array) -> jax.Array:
        return hidden[index[..., 0], index[..., 1]].astype(jnp.float32)

    return gather(batch.query_index), gather(batch.passage_index), gather(batch.negative_index)


def encode_batch(graphdef: nnx.GraphDef, params: Params, batch: Batch | PackedBatch) -> tuple[jax.Array, ...]:
    """(queries [b, H], positives [b, H], negatives [b, K, H]), padded or packed alike; padded
    batches go through the layers together (`Qwen3Model.call_groups`)."""
    if isinstance(batch, PackedBatch):
        return encode_packed(graphdef, params, batch)
    b, k, length = batch.negative_ids.shape
    q, p, n = pooled_groups(graphdef, params, [
        (batch.query_ids, batch.query_mask), (batch.passage_ids, batch.passage_mask),
        (batch.negative_ids.reshape(b * k, length), batch.negative_mask.reshape(b * k, length))])
    return q, p, n.reshape(b, k, -1)


def objective(reps: tuple[jax.Array, ...], teacher_reps: tuple[jax.Array, ...] | None,
              spec: LossSpec, inbatch: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    """total = in-batch (retrieval only) + hard-negative + kd_weight · KD."""
    q, p, n = reps
    hard = hard_negative_loss(q, p, n, temperature=spec.temperature, mrl_dims=spec.mrl_dims)
    zero = jnp.zeros((), jnp.float32)
    ib = inbatch_loss(q, gather_batch(p), temperature=spec.temperature, mrl_dims=spec.mrl_dims,
                      passage_gradient=spec.passage_gradient) if inbatch else zero
    kd = zero
    if teacher_reps is not None:
        kd = sum((distill_loss(s, t) for s, t in zip(reps, teacher_reps, strict=True)), zero)
    total = ib + hard + spec.kd_weight * kd
    return total, {"loss": total, "loss_inbatch": ib, "loss_hard": hard, "loss_kd": kd}


def _flatten(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def _unflatten(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), tree)


def teacher_reps(teacher: tuple[nnx.GraphDef, Params] | None, batch: Batch, k: int) -> Any:
    """Teacher (q, p, n) in the order of the student reps: a co-hosted teacher's forward pass,
    else the batch's stored vectors, else None. With k > 1 micro-batches the rows follow the
    same `_micro`/`_flatten` order as the GradCache student reps."""
    if teacher is None:
        if batch.teacher is None:
            return None
        stored = tuple(x.astype(jnp.float32) for x in batch.teacher)
        if k > 1:
            stored = _flatten(split_micro(stored, k))
        return jax.lax.stop_gradient(stored)
    graphdef, params = teacher
    if k == 1:
        return jax.lax.stop_gradient(encode_batch(graphdef, params, batch))
    reps = jax.lax.map(lambda mb: encode_batch(graphdef, params, mb), split_micro(batch, k))
    return jax.lax.stop_gradient(_flatten(reps))


def loss_and_grads(graphdef: nnx.GraphDef, params: Params, batch: Batch, teacher: Any,
                   spec: LossSpec, inbatch: bool) -> tuple[dict[str, jax.Array], Params]:
    k = spec.grad_accum  # packed batches come with one set of rows per micro-batch (`pack_texts`)
    t_reps = teacher_reps(teacher, batch, k)
    batch = batch.without_teacher()
    if k == 1:
        def loss_fn(prm: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
            return objective(encode_batch(graphdef, prm, batch), t_reps, spec, inbatch)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return metrics, grads
    micro = split_micro(batch, k)
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


def train_step(state: TrainState, batch: Batch, teacher: Any, *, graphdef: nnx.GraphDef,
               tx: optax.GradientTransformation, spec: LossSpec, inbatch: bool
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser update."""
    metrics, grads = loss_and_grads(graphdef, state.params, batch, teacher, spec, inbatch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics


def retrieval_accuracy(reps: tuple[jax.Array, ...], inbatch: bool) -> dict[str, jax.Array]:
    """Top-1 accuracy at full width: positive vs own hard negatives, and vs every batch passage."""
    q, p, n = (l2_normalize(r) for r in reps)
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


@dataclasses.dataclass(frozen=True)
class StepProgram:
    """What the steps compile from: model graph, optimiser, loss settings, and the abstract
    sharded train state (and co-hosted teacher parameters) they run on."""

    mesh: Mesh
    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    loss: LossSpec
    state: TrainState  # ShapeDtypeStructs carrying their shardings
    teacher_graphdef: nnx.GraphDef | None = None
    teacher: Any = None  # the teacher's parameters (arrays or ShapeDtypeStructs with shardings)


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    fn: jax.stages.Compiled
    lower_s: float
    compile_s: float


def _shardings(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.sharding, tree)


def compile_step(program: StepProgram, kind: str, shapes: Batch, inbatch: bool) -> CompiledStep:
    """Lower and compile the 'train' step (state, batch, teacher) -> (state, metrics + lr) or the
    'eval' step (params, batch, teacher) -> (metrics, reps) for these batch shapes; logs the
    compiled memory per device. `shapes` may hold arrays or ShapeDtypeStructs."""
    if kind not in ("train", "eval"):
        raise ValueError(f"kind must be 'train' or 'eval', got {kind!r}")
    batch_sh = jax.tree.map(lambda x: batch_sharding(program.mesh, x.ndim), shapes)
    batch = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, batch_sh)
    teacher_sh = None if program.teacher is None else _shardings(program.teacher)
    tgraph = program.teacher_graphdef

    def teacher_of(params: Any) -> Any:
        return None if tgraph is None else (tgraph, params)

    state_sh = _shardings(program.state)
    if kind == "train":
        def train_fn(state: TrainState, b: Batch, tparams: Any) -> tuple[TrainState, dict[str, jax.Array]]:
            new_state, metrics = train_step(state, b, teacher_of(tparams), graphdef=program.graphdef,
                                            tx=program.tx, spec=program.loss, inbatch=inbatch)
            return new_state, {**metrics, "lr": program.schedule(state.step)}

        jitted = jax.jit(train_fn, in_shardings=(state_sh, batch_sh, teacher_sh),
                         out_shardings=(state_sh, None), donate_argnums=0)
        args = (program.state, batch, program.teacher)
    else:
        def eval_fn(params: Params, b: Batch, tparams: Any) -> tuple[dict[str, jax.Array], tuple[jax.Array, ...]]:
            return eval_step(params, b, teacher_of(tparams), graphdef=program.graphdef, spec=program.loss,
                             inbatch=inbatch)

        jitted = jax.jit(eval_fn, in_shardings=(state_sh.params, batch_sh, teacher_sh))
        args = (program.state.params, batch, program.teacher)
    start = time.perf_counter()
    with jax.set_mesh(program.mesh):  # the model pins activations to batch sharding
        lowered = jitted.lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    mem = compiled_memory(compiled)
    if mem is not None:
        log.info("compiled %s step %s in %.1fs: %.1f MiB per device (args %.1f, temp %.1f)",
                 kind, [x.shape for x in jax.tree.leaves(batch)], done - start, mem["total_bytes"] / 2**20,
                 mem["argument_bytes"] / 2**20, mem["temp_bytes"] / 2**20)
    return CompiledStep(compiled, lower_s=lowered_at - start, compile_s=done - lowered_at)
