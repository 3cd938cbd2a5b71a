"""`embed_lookup`: the token-embedding gather whose gradient stays sharded like the table."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from f2jax.model.partitioning import embed_lookup, embed_lookup_groups
from f2jax.sharding import make_mesh

V, E, B, T = 1000, 64, 8, 6


def _problem():
    table = jax.random.normal(jax.random.key(0), (V, E), jnp.float32)
    ids = jax.random.randint(jax.random.key(1), (B, T), 0, V).at[0, :3].set(7)  # repeated ids
    w = jax.random.normal(jax.random.key(2), (B, T, E), jnp.float32)
    return table, ids, w


def _loss(lookup, table, ids, w):
    return jnp.sum(lookup(table, ids) * w)


def test_without_a_mesh_it_is_jnp_take():
    table, ids, _ = _problem()
    np.testing.assert_array_equal(np.asarray(embed_lookup(table, ids)), np.asarray(jnp.take(table, ids, axis=0)))


@pytest.mark.parametrize("shape", [(1, 4, 2), (2, 2, 2), (2, 4, 1), (8, 1, 1), (1, 1, 8)])
def test_sharded_lookup_equals_take_and_keeps_the_gradient_sharded(shape):
    table, ids, w = _problem()
    ref = jnp.take(table, ids, axis=0)
    ref_grad = jax.grad(_loss, argnums=1)(lambda t, i: jnp.take(t, i, axis=0), table, ids, w)
    mesh = make_mesh(*shape)
    table_sharding = NamedSharding(mesh, PartitionSpec("tensor", "fsdp"))
    with jax.set_mesh(mesh):
        fn = jax.jit(lambda t, i: (embed_lookup(t, i), jax.grad(_loss, argnums=1)(embed_lookup, t, i, w)),
                     out_shardings=(None, table_sharding))
        compiled = fn.lower(jax.device_put(table, table_sharding), ids).compile()
        out, grad = compiled(jax.device_put(table, table_sharding), ids)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-6, atol=1e-6)
    # no device ever holds the full [V, E] table or its gradient when the mesh splits it
    if shape[1] > 1 or shape[2] > 1:
        full = re.compile(rf"f32\[{V},{E}\]")
        assert not full.search(compiled.as_text())


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 2, 2), (1, 4, 2)])
def test_grouped_lookup_equals_one_lookup_per_batch(shape):
    table, ids, _ = _problem()
    batches = [ids, ids[:, :4] + 1, jnp.concatenate([ids, ids[::-1]])[:, :5]]  # [8, 6], [8, 4], [16, 5]
    weights = [jax.random.normal(jax.random.key(3 + i), (*b.shape, E)) for i, b in enumerate(batches)]

    def loss(lookup_all, t):
        return sum(jnp.sum(x * w) for x, w in zip(lookup_all(t), weights, strict=True))

    def one_by_one(t):
        return [embed_lookup(t, b) for b in batches]

    def grouped(t):
        return embed_lookup_groups(t, batches)

    mesh = make_mesh(*shape, devices=jax.devices()[:int(np.prod(shape))])
    table_sharding = NamedSharding(mesh, PartitionSpec("tensor", "fsdp"))
    with jax.set_mesh(mesh):
        placed = jax.device_put(table, table_sharding)
        fns = [jax.jit(lambda t, f=f: (f(t), jax.grad(lambda u: loss(f, u))(t))) for f in (one_by_one, grouped)]
        (ref, ref_grad), (out, grad) = (f(placed) for f in fns)
        all_to_all = [f.lower(placed).compile().as_text().count("all-to-all(") for f in fns]
    for o, r in zip(out, ref, strict=True):
        np.testing.assert_array_equal(np.asarray(o), np.asarray(r))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-6, atol=1e-6)
    if shape[1] > 1:  # the ids and the rows travel once (forward and backward), not once per batch
        assert all_to_all[1] * 3 == all_to_all[0] > 0
