"""The Qwen3 decoder backbone (Hugging Face `Qwen3Model`, no LM head) in Flax NNX.

Layers are created stacked (one leading `layers` axis on every block parameter) and run with
`jax.lax.scan`, so compile time does not grow with depth. Every parameter declares its logical
axes where it is created (`partitioning.axes`); `f2jax.sharding` turns them into placements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from f2jax.model.attention import attend, resolve_attention
from f2jax.model.config import Qwen3Config
from f2jax.model.options import DTYPE_NAMES, ModelOptions, check_choice
from f2jax.model.partitioning import (
    LAYERS,
    axes,
    batch_shards,
    chunk_rows,
    embed_lookup,
    embed_lookup_groups,
    pin_batch,
    unchunk_rows,
)
from f2jax.model.rope import apply_rope, rope_tables, rope_tables_at

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


def token_major_dot(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, **kwargs: Any) -> jax.Array:
    """`lax.dot_general` of [..., in] x [in, out] with the leading axes merged into one token axis.

    The weight gradient then contracts one axis (tokens), not (batch, time), which XLA:CPU
    would lower through a strided transpose (docs/performance.md); the merge is a bitcast and
    GPU/TPU compilers flatten the same way, so every backend computes the same program."""
    (lhs_contract, rhs_contract), batch = dimension_numbers
    if lhs.ndim <= 2 or batch != ((), ()) or tuple(lhs_contract) != (lhs.ndim - 1,):
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, **kwargs)
    lead = lhs.shape[:-1]
    flat = jax.lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), rhs,
                               (((1,), tuple(rhs_contract)), ((), ())), **kwargs)
    return flat.reshape(*lead, flat.shape[-1])


class RMSNorm(nnx.Module):
    """RMSNorm computed in float32, scaled in the compute dtype (as transformers does)."""

    def __init__(self, dim: int, eps: float, opts: ModelOptions, axis: str = "norm"):
        self.weight = nnx.Param(jnp.ones((dim,), as_dtype(opts.param_dtype)), **axes(axis))
        self.eps = eps
        self.dtype = as_dtype(opts.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(self.dtype) * x32.astype(self.dtype)


def _linear(n_in: int, n_out: int, bias: bool, opts: ModelOptions, rngs: nnx.Rngs,
            kernel_axes: tuple[str, str], bias_axis: str = "norm") -> nnx.Linear:
    """A Linear whose kernel [in, out] and bias [out] carry their logical axes."""
    return nnx.Linear(
        n_in, n_out, use_bias=bias, dtype=as_dtype(opts.dtype),
        param_dtype=as_dtype(opts.param_dtype), kernel_init=_init, dot_general=token_major_dot,
        rngs=rngs, kernel_metadata=axes(*kernel_axes), bias_metadata=axes(bias_axis),
    )


class Attention(nnx.Module):
    def __init__(self, cfg: Qwen3Config, opts: ModelOptions, rngs: nnx.Rngs):
        h, bias = cfg.hidden_size, cfg.attention_bias
        self.q_proj = _linear(h, cfg.q_dim, bias, opts, rngs, ("embed", "heads"), "heads")
        self.k_proj = _linear(h, cfg.kv_dim, bias, opts, rngs, ("embed", "kv_heads"), "kv_heads")
        self.v_proj = _linear(h, cfg.kv_dim, bias, opts, rngs, ("embed", "kv_heads"), "kv_heads")
        self.o_proj = _linear(cfg.q_dim, h, bias, opts, rngs, ("heads", "embed"))
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, opts, "head_dim")
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, opts, "head_dim")
        self.heads, self.kv_heads, self.head_dim = (
            cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        # `auto` becomes this backend's kernel here, once (logged); explicit choices that cannot
        # run here fail now, naming `model.attention`.
        self.impl = resolve_attention(opts.attention, jax.default_backend(), opts.dtype, cfg.head_dim)
        self.requested = opts.attention  # packed rows: `auto` may leave cuDNN, an explicit choice may not

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, lengths: jax.Array | None,
                 segment_ids: jax.Array | None = None, offsets: jax.Array | None = None,
                 seqlens: jax.Array | None = None) -> jax.Array:
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(b, t, self.heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim))
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attend(q, k, v, lengths, self.impl, segment_ids, self.requested, offsets, seqlens)
        return self.o_proj(out.reshape(b, t, self.heads * self.head_dim))


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: Qwen3Config, opts: ModelOptions, rngs: nnx.Rngs):
        h, m = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _linear(h, m, False, opts, rngs, ("embed", "mlp"))
        self.up_proj = _linear(h, m, False, opts, rngs, ("embed", "mlp"))
        self.down_proj = _linear(m, h, False, opts, rngs, ("mlp", "embed"))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: Qwen3Config, opts: ModelOptions, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts)
        self.self_attn = Attention(cfg, opts, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts)
        self.mlp = MLP(cfg, opts, rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, lengths: jax.Array | None,
                 segment_ids: jax.Array | None = None, offsets: jax.Array | None = None,
                 seqlens: jax.Array | None = None) -> jax.Array:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, lengths, segment_ids, offsets, seqlens)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Model(nnx.Module):
    """Token ids + right-padding mask -> final-norm hidden states [B, T, hidden].

    Packed rows (several texts per row) pass `segment_ids` [B, T] (0 = padding) and per-text
    `positions` [B, T]: attention stays within each text and RoPE restarts per text, so every
    text's states equal those of the text run alone. Their `offsets`/`seqlens` (each row's text
    starts and lengths, `f2jax.data.packing`) let cuDNN take them on a GPU."""

    def __init__(self, cfg: Qwen3Config, opts: ModelOptions | None = None, *, rngs: nnx.Rngs):
        opts = opts or ModelOptions()
        self.config, self.options = cfg, opts
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size, cfg.hidden_size, dtype=as_dtype(opts.dtype),
            param_dtype=as_dtype(opts.param_dtype), embedding_init=_init, rngs=rngs,
            embedding_metadata=axes("vocab", "embed"),
        )

        @nnx.split_rngs(splits=cfg.num_hidden_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: LAYERS})
        def stacked_layers(rngs: nnx.Rngs) -> DecoderLayer:
            return DecoderLayer(cfg, opts, rngs)

        self.layers = stacked_layers(rngs)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None, *,
                 segment_ids: jax.Array | None = None, positions: jax.Array | None = None,
                 offsets: jax.Array | None = None, seqlens: jax.Array | None = None) -> jax.Array:
        x = embed_lookup(self._table(), input_ids)
        rows = self._rows(x, input_ids, attention_mask, segment_ids, positions)
        if segment_ids is not None:
            rows = rows._replace(offsets=offsets, seqlens=seqlens)
        return self.norm(self._layers([rows])[0])

    def call_groups(self, groups: Sequence[tuple[jax.Array, jax.Array]], *,
                    last_token: bool = False) -> list[jax.Array]:
        """Several right-padded batches [(ids, mask), ...] (queries, passages, negatives) through one
        scan over the layers: = `[self(ids, mask) for ids, mask in groups]`, or with `last_token`
        = `[last_token_pool(self(ids, mask), mask) ...]`.

        One scan gathers each layer's sharded weights once for every group (FSDP) and keeps one
        gradient accumulator for the stacked weights, where separate calls hold one per group.
        `last_token` applies the final norm after taking the last tokens (RMSNorm is per token: the
        same values), so neither the normed [B, T, E] states nor their gradient exist."""
        xs = embed_lookup_groups(self._table(), [ids for ids, _ in groups])
        hidden = self._layers([self._rows(x, ids, mask, None, None) for x, (ids, mask) in zip(xs, groups, strict=True)])
        if not last_token:
            return [self.norm(h) for h in hidden]
        return [self.norm(last_token_pool(h, mask)) for h, (_, mask) in zip(hidden, groups, strict=True)]

    def packed_last_tokens(self, input_ids: jax.Array, segment_ids: jax.Array, positions: jax.Array,
                           last: jax.Array, *, offsets: jax.Array | None = None,
                           seqlens: jax.Array | None = None) -> jax.Array:
        """Final-norm states [R, M, hidden] at columns `last` [R, M] of packed rows (−1: an empty
        slot, its state is row 0's first token): the embeddings of inference, normed after the
        pick as in `call_groups`, so the [R, T, hidden] norm is never computed."""
        x = embed_lookup(self._table(), input_ids)
        rows = self._rows(x, input_ids, None, segment_ids, positions)._replace(offsets=offsets, seqlens=seqlens)
        hidden = self._layers([rows])[0]
        return self.norm(jnp.take_along_axis(hidden, jnp.maximum(last, 0)[..., None], axis=1))

    def _table(self) -> jax.Array:
        """The embedding table in the compute dtype: `self.embed_tokens(ids)` casts, then takes rows;
        here the rows are taken by `embed_lookup`, laid out so the table's gradient stays sharded."""
        return self.embed_tokens.embedding[...].astype(as_dtype(self.options.dtype))

    def _rows(self, embedded: jax.Array, input_ids: jax.Array, attention_mask: jax.Array | None,
              segment_ids: jax.Array | None, positions: jax.Array | None) -> LayerRows:
        """The embedded tokens of one batch with what every layer needs: RoPE tables and the
        padding lengths or packed segment ids."""
        dtype = as_dtype(self.options.dtype)
        x = pin_batch(embedded)
        if segment_ids is None:
            lengths = attention_mask.astype(jnp.int32).sum(axis=-1)
            cos, sin = rope_tables(self.config, input_ids.shape[1], dtype)
        else:
            lengths = None
            if positions is None:
                positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
            cos, sin = rope_tables_at(self.config, positions, dtype)
        return LayerRows(x, cos, sin, lengths, segment_ids)

    def _layers(self, groups: list[LayerRows]) -> list[jax.Array]:
        """Every group through every layer (no final norm). Each group's pass through a layer
        is rematerialised on its own (`self.options.remat`) and, with `seq_chunk`, split into row
        chunks: the backward holds one chunk's working set at a time."""
        graphdef, layer_state = nnx.split(self.layers)
        remat, chunk = self.options.remat, self.options.seq_chunk

        def block(hs: tuple[jax.Array, ...], state: Any) -> tuple[tuple[jax.Array, ...], None]:
            layer = nnx.merge(graphdef, state)
            outs = (run_layer(layer, g._replace(hidden=h), remat, chunk) for h, g in zip(hs, groups, strict=True))
            return tuple(outs), None

        hs, _ = jax.lax.scan(block, tuple(g.hidden for g in groups), layer_state)
        return list(hs)


class LayerRows(NamedTuple):
    """One batch on its way through the layers: hidden [B, T, E], RoPE tables ([T, D], or [B, T, D]
    for packed rows), right-padding lengths [B] or packed segment ids [B, T] (with each row's text
    offsets [B, M+1] and seqlens [B, M] where known)."""

    hidden: jax.Array
    cos: jax.Array
    sin: jax.Array
    lengths: jax.Array | None
    segment_ids: jax.Array | None
    offsets: jax.Array | None = None
    seqlens: jax.Array | None = None


def seq_chunks(rows: int, seq_chunk: int) -> int:
    """How many chunks cut a device's `rows` so that none is over `seq_chunk` rows: the fewest that
    divide them evenly (`seq_chunk` 0: no limit, one chunk)."""
    if seq_chunk <= 0 or rows <= seq_chunk:
        return 1
    return next(k for k in range(-(-rows // seq_chunk), rows + 1) if rows % k == 0)


def run_layer(layer: DecoderLayer, rows: LayerRows, remat: str, seq_chunk: int) -> jax.Array:
    """One decoder layer over one group, in `seq_chunks` row chunks (a `lax.map`, so the chunks'
    backward passes run one after the other), each rematerialised by `remat`'s policy."""
    per_row = rows.cos.ndim == 3  # packed rows carry their own positions

    def apply(r: LayerRows) -> jax.Array:
        return pin_batch(layer(pin_batch(r.hidden), r.cos, r.sin, r.lengths, r.segment_ids, r.offsets, r.seqlens))

    if remat != "none":
        apply = jax.checkpoint(apply, policy=REMAT_POLICIES[remat], prevent_cse=False)
    b, shards = rows.hidden.shape[0], batch_shards()
    shards = shards if b % shards == 0 else 1  # as `pin_batch` lays the rows out
    k = seq_chunks(b // shards, seq_chunk)
    if k == 1:
        return apply(rows)
    shared = {} if per_row else {"cos": rows.cos, "sin": rows.sin}
    chunks = chunk_rows(rows._replace(**{name: None for name in shared}), k, shards)
    return pin_batch(unchunk_rows(jax.lax.map(lambda r: apply(r._replace(**shared)), chunks), shards))


def abstract_model(cfg: Qwen3Config, opts: ModelOptions | None = None) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, abstract state) of a `Qwen3Model`: shapes, dtypes and logical axes, nothing allocated.

    The state's `nnx.Param`s hold `jax.ShapeDtypeStruct`s and their `out_sharding` axes, so it
    serves both `f2jax.sharding.param_shardings` and `nnx.to_pure_dict` (shape-only trees).
    """
    return nnx.split(nnx.eval_shape(lambda: Qwen3Model(cfg, opts, rngs=nnx.Rngs(0))))


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last real token per row (right padding)."""
    return jnp.maximum(attention_mask.astype(jnp.int32).sum(axis=-1) - 1, 0)


def last_token_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """hidden [..., T, H] -> [..., H] at each row's last real token.

    A select and a sum over T (one term is not zero, so the sum is that state exactly) rather
    than a gather: its gradient is the same select, where a gather's is a scatter-add into a
    zero [..., T, H] buffer (slow on TPU; upcast to float32 by XLA:CPU)."""
    idx = last_token_index(attention_mask)
    at_last = jnp.arange(hidden.shape[-2]) == idx[..., None]
    return jnp.where(at_last[..., None], hidden, jnp.zeros((), hidden.dtype)).sum(axis=-2)
