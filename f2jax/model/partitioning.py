"""How the model's tensors are laid out: logical axes declared at creation, activations pinned.

Each parameter names the logical axis of every dimension where it is created (`axes(...)`,
kept as the `nnx.Variable`'s `out_sharding` metadata; the layer `vmap` prepends `layers`), so
the layout lives beside the code that makes the tensor. `f2jax.sharding` maps logical names
to mesh axes with a rules table; no table here mirrors the module tree.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from f2jax.sharding import BATCH_AXES

LAYERS = "layers"  # the stacked axis the layer `vmap` adds in front of every block parameter


def axes(*names: str | None) -> dict[str, Any]:
    """Variable metadata naming each dimension's logical axis.

    `eager_sharding=False`: the names are logical, not mesh axes, so Flax must not try to place
    the value at creation; placement is decided later by the rules (`f2jax.sharding`).
    """
    return {"out_sharding": tuple(names), "eager_sharding": False}


def batch_shards(mesh: Any = None) -> int:
    """How many ways `mesh` (default: the one set with `jax.set_mesh`) splits the batch (1 without
    such a mesh)."""
    mesh = jax.sharding.get_abstract_mesh() if mesh is None else mesh
    if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names):
        return 1
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def chunk_rows(tree: Any, k: int, shards: int) -> Any:
    """[B, ...] -> [k, B/k, ...]: each of `shards` devices' own B/shards rows cut into k runs of
    consecutive rows, chunk i holding run i of every device. Under a mesh that splits the batch
    `shards` ways this is a local reshape (no copy, no collective); `unchunk_rows` undoes it."""

    def cut(v: jax.Array) -> jax.Array:
        n = v.shape[0] // (shards * k)
        return v.reshape(shards, k, n, *v.shape[1:]).swapaxes(0, 1).reshape(k, shards * n, *v.shape[1:])

    return jax.tree.map(cut, tree)


def unchunk_rows(tree: Any, shards: int) -> Any:
    """The inverse of `chunk_rows`: [k, B/k, ...] -> [B, ...] in the original row order."""

    def join(v: jax.Array) -> jax.Array:
        k, n = v.shape[0], v.shape[1] // shards
        return v.reshape(k, shards, n, *v.shape[2:]).swapaxes(0, 1).reshape(shards * k * n, *v.shape[2:])

    return jax.tree.map(join, tree)


def pin_batch(x: jax.Array) -> jax.Array:
    """Shard x's leading (batch) dimension over `BATCH_AXES` of the mesh set with `jax.set_mesh`.

    Without the pin, XLA's SPMD partitioner may all-gather activations over `fsdp` (and keep
    the full batch per device) instead of all-gathering the weights, as FSDP intends. No mesh
    in context, a mesh without those axes, or an indivisible batch: x is left alone.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names) or x.shape[0] % batch_shards():
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec(BATCH_AXES, *([None] * (x.ndim - 1))))


def gather_batch(x: jax.Array) -> jax.Array:
    """x replicated on every device of the mesh set with `jax.set_mesh` (no mesh: unchanged).

    For the in-batch loss: its passages are gathered once at full width, so the Matryoshka
    widths slice a local copy instead of each all-gathering its own slice (and its gradient
    is one reduce-scatter). Fewer collectives per step also keep XLA:CPU's simulated devices
    clear of `f2jax.distributed.ensure_cpu_collective_threads`' pool limit.
    """
    if jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec())


def embed_lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
    """table [V, E] rows at ids [B, T] -> [B, T, E], batch pinned like `pin_batch`.

    Under a (`data`, `fsdp`, `tensor`) mesh the lookup is a `shard_map` over the table's own
    layout (vocab over `tensor`, embed over `fsdp`, as `f2jax.sharding.DEFAULT_RULES` place it):
    the ids are all-gathered over `fsdp`, each device gathers its [V/tensor, E/fsdp] slice
    (rows outside its vocabulary slice give zeros, summed over `tensor`) and an all-to-all over
    `fsdp` hands back batch rows with the full embedding. Its transpose is therefore a scatter-add
    into the local table shard: the gradient never exists as a full [V, E] buffer (a plain
    `jnp.take` let XLA all-gather the table and scatter into full-vocabulary zeros, one per
    encode call). Values are identical to `jnp.take`. No mesh, or a batch the mesh does not
    divide: plain `jnp.take`.
    """
    from f2jax.sharding import DEFAULT_RULES, spec_for

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {*BATCH_AXES, "tensor"} <= set(mesh.axis_names) or ids.ndim != 2:
        return jnp.take(table, ids, axis=0)
    if ids.shape[0] % batch_shards():
        return jnp.take(table, ids, axis=0)
    vocab_axis, embed_axis = spec_for(table.shape, ("vocab", "embed"), mesh, DEFAULT_RULES)
    if embed_axis not in (None, "fsdp") or vocab_axis not in (None, "tensor"):
        return pin_batch(jnp.take(table, ids, axis=0))
    split_vocab = vocab_axis is not None and mesh.shape["tensor"] > 1
    embed_axis = embed_axis if embed_axis and mesh.shape[embed_axis] > 1 else None  # no 1-device collectives
    rows = table.shape[0] // mesh.shape["tensor"] if split_vocab else table.shape[0]

    def local(tab: jax.Array, idx: jax.Array) -> jax.Array:
        if embed_axis:  # every fsdp member holds other embed columns: it needs its group's ids
            idx = jax.lax.all_gather(idx, "fsdp", axis=0, tiled=True)
        if split_vocab:
            idx = idx - jax.lax.axis_index("tensor") * rows
            mine = (idx >= 0) & (idx < rows)
            x = jnp.take(tab, jnp.where(mine, idx, 0), axis=0)
            x = jax.lax.psum(jnp.where(mine[..., None], x, jnp.zeros((), x.dtype)), "tensor")
        else:
            x = jnp.take(tab, idx, axis=0)
        if embed_axis:  # [B/data, T, E/fsdp] -> [B/(data*fsdp), T, E]
            x = jax.lax.all_to_all(x, "fsdp", 0, 2, tiled=True)
        return x

    return jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec("tensor" if split_vocab else None, embed_axis),
                                                     PartitionSpec(BATCH_AXES, None)),
                         out_specs=PartitionSpec(BATCH_AXES, None, None))(table, ids)


def embed_lookup_groups(table: jax.Array, ids: list[jax.Array]) -> list[jax.Array]:
    """`[embed_lookup(table, i) for i in ids]` as one lookup: each device's rows of every batch are
    laid end to end ([B, T] -> [D, B T / D], a local reshape), so the ids travel in one collective
    and the table's gradient is one scatter into its shard, not one per batch."""
    d = batch_shards()
    if len(ids) == 1 or any(i.ndim != 2 or i.shape[0] % d for i in ids):
        return [embed_lookup(table, i) for i in ids]
    flat = [i.reshape(d, -1) for i in ids]
    x = embed_lookup(table, jnp.concatenate(flat, axis=1))
    ends = list(itertools.accumulate(f.shape[1] for f in flat))
    return [pin_batch(x[:, end - f.shape[1]:end].reshape(*i.shape, x.shape[-1]))
            for i, f, end in zip(ids, flat, ends, strict=True)]
