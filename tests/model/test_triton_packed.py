"""The Pallas-Triton fallback for packed rows, interpreted on CPU: outputs and gradients equal the
`xla` kernel with segment ids (GQA by repeated k/v; T not a multiple of the block)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from f2jax.model.attention import xla_attention
from f2jax.model.triton_packed import triton_packed_attention


def test_matches_xla_with_gradients():
    seg = np.zeros((2, 40), np.int32)
    seg[0, :7], seg[0, 7:8], seg[0, 8:30] = 1, 2, 3  # then padding
    seg[1, :] = 1  # one text filling the row
    ks = jax.random.split(jax.random.key(1), 4)
    q = jax.random.normal(ks[0], (2, 40, 4, 8))
    k, v = (jax.random.normal(kk, (2, 40, 2, 8)) for kk in ks[1:3])
    probe = jax.random.normal(ks[3], q.shape)
    real = (seg > 0)[..., None, None]

    def loss(fn):
        return jax.value_and_grad(lambda q, k, v: (fn(q, k, v) * probe * real).sum(), argnums=(0, 1, 2))

    with jax.default_matmul_precision("highest"):
        want, want_g = loss(lambda q, k, v: xla_attention(q, k, v, None, jnp.asarray(seg)))(q, k, v)
        got, got_g = loss(lambda q, k, v: triton_packed_attention(q, k, v, jnp.asarray(seg), block=16,
                                                                  interpret=True))(q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(got_g, want_g, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
