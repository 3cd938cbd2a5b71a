"""Packed rows through cuDNN flash attention: the one place f2jax touches jax's private cuDNN API.

`jax.nn.dot_product_attention` takes no segments, but the function under it,
`jax._src.cudnn.fused_attention_stablehlo.dot_product_attention`, takes cuDNN's packed
("ragged") layout: per row the text starts `q_offsets` [R, M+1] and lengths `q_seqlen` [R, M],
−1 filled, with `MaskType.PADDING_CAUSAL`. On one H200 that is 2.2 ms for a 0.6B layer's
attention (fwd + bwd) of 36 packed rows × 1024, against 7.3 ms for Pallas-Triton with segment
ids and 24.8 ms for `chunked` (issue 26).

Being private, it may move or change between jax releases: `unavailable()` checks, once, that
the symbol, the mask type and every keyword used here exist (`inspect.signature`), and says
why not otherwise; the caller (`f2jax.model.attention.choose_kernel`) then falls back or
refuses. cuDNN runs the packed layout from Hopper (compute capability 9.0) on.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

import jax
import jax.numpy as jnp

MODULE = "jax._src.cudnn.fused_attention_stablehlo"
PARAMS = ("q_seqlen", "kv_seqlen", "q_offsets", "kv_offsets", "scale", "mask_type", "qkv_layout")
MIN_COMPUTE_CAPABILITY = 9.0


@functools.cache
def _api() -> tuple[Any, Any] | str:
    """(dot_product_attention, MaskType), or why they cannot be used."""
    try:
        mod = importlib.import_module(MODULE)
    except Exception as err:  # noqa: BLE001 - any import failure means: not here
        return f"{MODULE} does not import in jax {jax.__version__} ({type(err).__name__})"
    fn, mask = getattr(mod, "dot_product_attention", None), getattr(mod, "MaskType", None)
    if fn is None or mask is None or not hasattr(mask, "PADDING_CAUSAL"):
        return f"{MODULE} in jax {jax.__version__} lacks dot_product_attention or MaskType.PADDING_CAUSAL"
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return f"{MODULE}.dot_product_attention has no inspectable signature in jax {jax.__version__}"
    missing = [p for p in PARAMS if p not in params]
    if missing:
        return f"{MODULE}.dot_product_attention in jax {jax.__version__} lacks {missing}"
    return fn, mask


def api_unavailable() -> str | None:
    """Why the private entry point cannot be called (None: it can); no device needed."""
    api = _api()
    return api if isinstance(api, str) else None


def device_unavailable(backend: str, compute_capability: float | None) -> str | None:
    """Why this device cannot run the packed layout (None: it can); pure."""
    if backend not in ("gpu", "cuda"):
        return f"cuDNN packed attention needs a CUDA GPU, the backend is {backend!r}"
    if compute_capability is None or compute_capability < MIN_COMPUTE_CAPABILITY:
        return (f"cuDNN packed attention needs compute capability >= {MIN_COMPUTE_CAPABILITY} (Hopper), "
                f"this GPU has {compute_capability}")
    return None


def _compute_capability() -> float | None:
    try:
        return float(getattr(jax.devices()[0], "compute_capability", None) or "nan")
    except (ValueError, RuntimeError):
        return None


@functools.cache
def unavailable(backend: str) -> str | None:
    """Why packed rows cannot go through cuDNN on `backend` here (None: they can)."""
    why = device_unavailable(backend, _compute_capability() if backend in ("gpu", "cuda") else None)
    return why or api_unavailable()


def cudnn_packed_attention(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array,
                           offsets: jax.Array, seqlens: jax.Array) -> jax.Array:
    """q [R, T, Hq, D]; k, v [R, T, Hkv, D] (GQA as is); offsets [R, M+1], seqlens [R, M] ->
    [R, T, Hq, D], causal within each text. Padding tokens (segment 0) are set to 0, whatever
    cuDNN leaves there, so no stray value reaches the next layer or a weight gradient."""
    api = _api()
    if isinstance(api, str):
        raise RuntimeError(api)
    fn, mask_type = api
    offsets, seqlens = offsets.astype(jnp.int32), seqlens.astype(jnp.int32)
    out = fn(q, k, v, q_seqlen=seqlens, kv_seqlen=seqlens, q_offsets=offsets, kv_offsets=offsets,
             scale=float(q.shape[-1] ** -0.5), mask_type=mask_type.PADDING_CAUSAL, qkv_layout="BTNH")
    return jnp.where((segment_ids > 0)[:, :, None, None], out, jnp.zeros((), out.dtype))


def allowed_from_offsets(offsets: jax.Array, seqlens: jax.Array, t: int) -> jax.Array:
    """[R, T, T] the keys each query may see under cuDNN's packed PADDING_CAUSAL mask, built
    from (offsets, seqlens) alone: same text and not later. A reference for tests (CPU)."""
    pos = jnp.arange(t)
    starts, lens = offsets[:, :-1], seqlens
    inside = (pos[None, :, None] >= starts[:, None, :]) & (pos[None, :, None] < (starts + lens)[:, None, :])
    inside &= (lens >= 0)[:, None, :]  # [R, T, M]: token t in text m
    same = jnp.einsum("rqm,rkm->rqk", inside.astype(jnp.int32), inside.astype(jnp.int32)) > 0
    return same & (pos[None, None, :] <= pos[None, :, None])
