"""The Qwen3 decoder backbone (Hugging Face `Qwen3Model`, no LM head) in Flax NNX.

Layers are created stacked (one leading `layers` axis on every block parameter) and run with
`jax.lax.scan`, so compile time does not grow with depth.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from f2jax.model.attention import attend
from f2jax.model.config import Qwen3Config
from f2jax.model.options import DTYPE_NAMES, ModelOptions, check_choice
from f2jax.model.rope import apply_rope, rope_tables
from f2jax.sharding import constrain_batch

REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def as_dtype(name: str | Any) -> Any:
    return DTYPES[check_choice(name, DTYPE_NAMES, "dtype")] if isinstance(name, str) else name


_init = nnx.initializers.normal(0.02)


class RMSNorm(nnx.Module):
    """RMSNorm computed in float32, scaled in the compute dtype (as transformers does)."""

    def __init__(self, dim: int, eps: float, opts: ModelOptions):
        self.weight = nnx.Param(jnp.ones((dim,), as_dtype(opts.param_dtype)))
        self.eps = eps
        self.dtype = as_dtype(opts.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(self.dtype) * x32.astype(self.dtype)


def _linear(n_in: int, n_out: int, bias: bool, opts: ModelOptions, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        n_in, n_out, use_bias=bias, dtype=as_dtype(opts.dtype),
        param_dtype=as_dtype(opts.param_dtype), kernel_init=_init, rngs=rngs,
    )


class Attention(nnx.Module):
    def __init__(self, cfg: Qwen3Config, opts: ModelOptions, rngs: nnx.Rngs):
        h, bias = cfg.hidden_size, cfg.attention_bias
        self.q_proj = _linear(h, cfg.q_dim, bias, opts, rngs)
        self.k_proj = _linear(h, cfg.kv_dim, bias, opts, rngs)
        self.v_proj = _linear(h, cfg.kv_dim, bias, opts, rngs)
        self.o_proj = _linear(cfg.q_dim, h, bias, opts, rngs)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, opts)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, opts)
        self.heads, self.kv_heads, self.head_dim = (
            cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        self.impl = opts.attention

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, lengths: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(b, t, self.heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim))
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attend(q, k, v, lengths, self.impl)
        return self.o_proj(out.reshape(b, t, self.heads * self.head_dim))


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: Qwen3Config, opts: ModelOptions, rngs: nnx.Rngs):
        h, m = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _linear(h, m, False, opts, rngs)
        self.up_proj = _linear(h, m, False, opts, rngs)
        self.down_proj = _linear(m, h, False, opts, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: Qwen3Config, opts: ModelOptions, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts)
        self.self_attn = Attention(cfg, opts, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts)
        self.mlp = MLP(cfg, opts, rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, lengths: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, lengths)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Model(nnx.Module):
    """Token ids + right-padding mask -> final-norm hidden states [B, T, hidden]."""

    def __init__(self, cfg: Qwen3Config, opts: ModelOptions | None = None, *, rngs: nnx.Rngs):
        opts = opts or ModelOptions()
        self.config, self.options = cfg, opts
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size, cfg.hidden_size, dtype=as_dtype(opts.dtype),
            param_dtype=as_dtype(opts.param_dtype), embedding_init=_init, rngs=rngs,
        )

        @nnx.split_rngs(splits=cfg.num_hidden_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def stacked_layers(rngs: nnx.Rngs) -> DecoderLayer:
            return DecoderLayer(cfg, opts, rngs)

        self.layers = stacked_layers(rngs)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        dtype = as_dtype(self.options.dtype)
        x = constrain_batch(self.embed_tokens(input_ids).astype(dtype))
        lengths = attention_mask.astype(jnp.int32).sum(axis=-1)
        cos, sin = rope_tables(self.config, input_ids.shape[1], dtype)
        graphdef, layer_state = nnx.split(self.layers)

        def block(h: jax.Array, state: Any) -> tuple[jax.Array, None]:
            return constrain_batch(nnx.merge(graphdef, state)(constrain_batch(h), cos, sin, lengths)), None

        policy = REMAT_POLICIES[self.options.remat]
        if self.options.remat != "none":
            block = jax.checkpoint(block, policy=policy, prevent_cse=False)
        x, _ = jax.lax.scan(block, x, layer_state)
        return self.norm(x)


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last real token per row (right padding)."""
    return jnp.maximum(attention_mask.astype(jnp.int32).sum(axis=-1) - 1, 0)


def last_token_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """hidden [..., T, H] -> [..., H] at each row's last real token."""
    idx = last_token_index(attention_mask)
    return jnp.take_along_axis(hidden, idx[..., None, None], axis=-2)[..., 0, :]
