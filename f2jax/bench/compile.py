"""Compile-time benchmark: does compiling the model stay flat as depth grows?

The decoder layers are stacked and run with `jax.lax.scan`, so a 28-layer model should compile
about as fast as a 2-layer one. Parameters are abstract (`abstract_model`), so only
lowering + XLA compilation is measured, never weight initialisation or execution.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from f2jax.model.config import Qwen3Config
from f2jax.model.qwen3 import ModelOptions, abstract_model, last_token_pool


def _forward_and_grad(graphdef: Any) -> tuple[Any, Any]:
    """Fresh functions each call, so jax's tracing caches cannot serve a repeat."""

    def forward(state: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
        hidden = nnx.merge(graphdef, state)(ids, mask)
        return last_token_pool(hidden, mask).astype(jnp.float32)

    def loss(state: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return forward(state, ids, mask).sum()

    return forward, jax.grad(loss)


def time_compile(fn: Any, *args: Any) -> tuple[float, float]:
    """(lower seconds, compile seconds) of jax.jit(fn) for abstract args."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def compile_times(
    cfg: Qwen3Config,
    opts: ModelOptions,
    batch: int,
    seq_len: int,
    repeats: int = 1,
    backward: bool = True,
) -> dict[str, float]:
    """Best-of-`repeats` lower and compile seconds, forward (and forward+backward)."""
    graphdef, state = abstract_model(cfg, opts)
    ids = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32)
    best: dict[str, float] = {}
    for _ in range(repeats):
        forward, grad = _forward_and_grad(graphdef)
        for name, fn in (("fwd", forward), ("fwd_bwd", grad))[: 2 if backward else 1]:
            lower, comp = time_compile(fn, state, ids, ids)
            for key, value in (
                (f"{name}_lower_s", lower),
                (f"{name}_compile_s", comp),
                (f"{name}_total_s", lower + comp),
            ):
                best[key] = min(best.get(key, float("inf")), value)
    return best


def _warm_up(cfg: Qwen3Config, opts: ModelOptions, backward: bool) -> None:
    """Compile a 1-layer, 1x16-token model once so the first size measured pays no one-off costs."""
    one = Qwen3Config(**{**cfg.__dict__, "num_hidden_layers": 1})
    compile_times(one, opts, batch=1, seq_len=16, backward=backward)


def bench_compile(
    base: Qwen3Config,
    layers: Sequence[int],
    *,
    dtype: str = "bfloat16",
    batch: int = 8,
    seq_len: int = 512,
    repeats: int = 1,
    remat: str = "none",
    backward: bool = True,
    warm_up: bool = True,
) -> dict[str, Any]:
    """Compile seconds per depth in `layers` (same width), plus deepest/shallowest ratios."""
    if len(layers) < 1:
        raise ValueError("layers must name at least one depth")
    opts = ModelOptions(param_dtype=dtype, dtype=dtype, remat=remat)
    if warm_up:
        _warm_up(base, opts, backward)
    out: dict[str, Any] = {
        "batch": batch,
        "seq_len": seq_len,
        "hidden": base.hidden_size,
        "backend": jax.default_backend(),
    }
    for n in layers:
        cfg = Qwen3Config(**{**base.__dict__, "num_hidden_layers": n})
        for key, value in compile_times(cfg, opts, batch, seq_len, repeats, backward).items():
            out[f"L{n}_{key}"] = value
    lo, hi = min(layers), max(layers)
    for name in ("fwd", "fwd_bwd")[: 2 if backward else 1]:
        ratio = out[f"L{hi}_{name}_total_s"] / out[f"L{lo}_{name}_total_s"]
        out[f"{name}_ratio_L{hi}_over_L{lo}"] = ratio
    return out
