"""Causal self-attention kernels with a right-padding mask (`model.attention`).

`auto`: resolved once per backend (`resolve_attention`, logged): `splash` on TPU, `cudnn` on GPU
where cuDNN takes the dtype and shapes (bfloat16/float16 compute), else `xla`.
`xla`: explicit einsum + masked softmax (float32 logits), block-causal: query blocks of 64+
(at most 16 blocks) each attend only the keys up to their end, so the upper triangle of
[T, T] is never computed; holds about half of [B, H, T, T] logits per layer for the backward.
`chunked`: masked softmax over blocks of `CHUNK_QUERIES` queries against all keys (`lax.map`
of a rematerialised block): a layer holds [B, H, block, T] at a time, backward included.
Equal to `xla` to float32 rounding; for long sequences on any backend.
`dot_product`: `jax.nn.dot_product_attention` with its default implementation (XLA in this JAX),
padding passed as per-row lengths.
`cudnn`: the same call forced onto cuDNN flash attention (GPU, bfloat16/float16 only).
`splash`: the Pallas TPU splash-attention kernel (causal mask, padding through key segment ids,
GQA), under `shard_map` over the batch (`data`, `fsdp`) and head (`tensor`) mesh axes.

Packed rows (`data.packing`) pass `segment_ids` [B, T] (0 = padding, 1.. per text) instead of
lengths: a query sees keys of its own segment at or before it (block-diagonal causal). `xla`,
`chunked` and `dot_product` build that mask, `splash` takes it as `SegmentIds`; `cudnn` takes
each row's text starts and lengths (`offsets`, `seqlens`) through jax's private packed layout
(`f2jax.model.cudnn_packed`, Hopper on). Where that layout cannot run, `auto` falls back to the
Pallas-Triton flash kernel with segment ids (`f2jax.model.triton_packed`) and an explicit
`cudnn` refuses. `choose_kernel` is the one place that decides which kernel takes which batch.

An explicit choice that cannot run where it is asked to raises `AttentionUnavailableError`
naming `model.attention`; no path ignores the padding or segment mask.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from f2jax.errors import F2JaxError
from f2jax.model.options import ATTENTION_IMPLS, AttentionImpl, check_choice

log = logging.getLogger(__name__)

CHUNK_QUERIES = 256  # queries per block of the `chunked` kernel ([B, H, 256, T] logits at a time)
XLA_MIN_BLOCK, XLA_MAX_BLOCKS = 64, 16  # the `xla` kernel's query blocks (`xla_block`)
SPLASH_BLOCK = 512  # splash q/kv block (clipped to the 128-rounded sequence length)
_CUDNN_DTYPES = ("bfloat16", "float16")
PACKED_FALLBACK = "pallas_triton"  # packed rows on a GPU where cuDNN's packed layout cannot run


class AttentionUnavailableError(F2JaxError, ValueError):
    """The `model.attention` kernel asked for cannot run on this backend, dtype or shape."""

    kind = "configuration error"


# ---------------------------------------------------------------- resolution


def cudnn_unsupported(backend: str, dtype: str, head_dim: int, head_dim_max: int = 128) -> str | None:
    """Why cuDNN flash attention cannot take this call (None: it can).

    `head_dim_max` is 256 from Hopper on, 128 before (jax's cuDNN check).
    """
    if backend not in ("gpu", "cuda"):
        return f"cuDNN flash attention needs a CUDA GPU, the backend is {backend!r}"
    if dtype not in _CUDNN_DTYPES:
        return f"cuDNN flash attention takes bfloat16/float16, the compute dtype is {dtype}"
    if head_dim % 8 or head_dim > head_dim_max:
        return f"cuDNN flash attention needs head_dim a multiple of 8 and <= {head_dim_max}, got {head_dim}"
    return None


def _gpu_head_dim_max() -> int:
    try:
        cc = float(getattr(jax.devices()[0], "compute_capability", "0"))
    except (ValueError, RuntimeError):
        cc = 0.0
    return 256 if cc >= 9.0 else 128


def decide_attention(impl: str, backend: str, dtype: str, head_dim: int,
                     head_dim_max: int = 128) -> tuple[str, str | None]:
    """(kernel to run, why `auto` fell back or None) — pure, no device needed.

    Explicit choices that cannot run raise `AttentionUnavailableError`.
    """
    check_choice(impl, ATTENTION_IMPLS, "model.attention")
    if impl == "auto":
        if backend == "tpu":
            return "splash", None
        if backend in ("gpu", "cuda"):
            why = cudnn_unsupported(backend, dtype, head_dim, head_dim_max)
            return ("xla", why) if why else ("cudnn", None)
        return "xla", None
    if impl == "cudnn":
        why = cudnn_unsupported(backend, dtype, head_dim, head_dim_max)
        if why:
            raise AttentionUnavailableError(
                f"model.attention: 'cudnn' cannot run here: {why}; use 'auto', 'xla' or 'chunked'")
    if impl == "splash" and backend != "tpu":
        raise AttentionUnavailableError(
            f"model.attention: 'splash' is a TPU (Pallas) kernel, the backend is {backend!r}; "
            "use 'auto', 'xla' or 'chunked'")
    return impl, None


@functools.cache
def resolve_attention(impl: str, backend: str, dtype: str, head_dim: int) -> str:
    """The kernel `attend` runs for `model.attention: impl`; logged once per (backend, dtype, head_dim)."""
    hmax = _gpu_head_dim_max() if backend in ("gpu", "cuda") else 128
    kernel, why = decide_attention(impl, backend, dtype, head_dim, hmax)
    if why:
        log.warning("model.attention: auto -> %s on %s (%s)", kernel, backend, why)
    elif impl == "auto":
        log.info("model.attention: auto -> %s on %s (%s compute)", kernel, backend, dtype)
    return kernel


def choose_kernel(impl: str, backend: str, dtype: str, head_dim: int, *, packed: bool = False,
                  cudnn_packed: str | None = None, head_dim_max: int = 128) -> tuple[str, str | None]:
    """(kernel, why `auto` fell back or None) for `model.attention: impl` on a padded or packed
    batch — the one home of "can this kernel take this batch"; pure, no device needed.

    `cudnn_packed`: why cuDNN's packed layout cannot run here (None: it can;
    `f2jax.model.cudnn_packed.unavailable`). Packed rows leave cuDNN for `PACKED_FALLBACK`
    under `auto`; an explicit `cudnn` raises rather than attend across texts."""
    kernel, why = decide_attention(impl, backend, dtype, head_dim, head_dim_max)
    if not packed or kernel != "cudnn" or cudnn_packed is None:
        return kernel, why
    if impl != "auto":
        raise AttentionUnavailableError(
            f"model.attention: 'cudnn' cannot take packed rows here: {cudnn_packed}; use 'auto' "
            "(Pallas-Triton for packed rows), 'xla' or 'chunked', or data.packing=false")
    return PACKED_FALLBACK, cudnn_packed


@functools.cache
def resolve_packed(impl: str, backend: str, dtype: str, head_dim: int) -> str:
    """The kernel `attend` runs packed rows through for `model.attention: impl`; a fallback is
    logged once per (backend, dtype, head_dim)."""
    from f2jax.model import cudnn_packed

    hmax = _gpu_head_dim_max() if backend in ("gpu", "cuda") else 128
    padded, _ = decide_attention(impl, backend, dtype, head_dim, hmax)
    why_not = cudnn_packed.unavailable(backend) if padded == "cudnn" else None
    kernel, why = choose_kernel(impl, backend, dtype, head_dim, packed=True, cudnn_packed=why_not,
                                head_dim_max=hmax)
    if kernel == PACKED_FALLBACK:
        log.warning("model.attention: auto -> %s for packed rows on %s (%s)", kernel, backend, why)
    return kernel


def packed_uses_offsets(impl: str, dtype: str, head_dim: int) -> bool:
    """Whether packed rows reach cuDNN on this backend: the only kernel that reads a
    `PackedBatch`'s offsets/seqlens (the others are better off without them: fewer shapes)."""
    return resolve_packed(impl, jax.default_backend(), dtype, head_dim) == "cudnn"


# ---------------------------------------------------------------- kernels


def _allowed(t: int, q_pos: jax.Array, lengths: jax.Array | None, q_seg: jax.Array | None,
             kv_seg: jax.Array | None) -> jax.Array:
    """[B or 1, Tq, T] keys each query may see: causal, and within its length or its segment.

    Padding queries (segment 0) see the padding keys before them (at least themselves), so no
    softmax row is empty; real queries never see segment 0."""
    pos = jnp.arange(t)
    causal = (pos[None, :] <= q_pos[:, None])[None]
    if kv_seg is None:
        return causal & (pos[None, None, :] < lengths[:, None, None])
    return causal & (q_seg[:, :, None] == kv_seg[:, None, :])


def _masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None,
                      q_pos: jax.Array, q_seg: jax.Array | None = None,
                      kv_seg: jax.Array | None = None) -> jax.Array:
    """q [B, Tq, Hq, D] at positions q_pos [Tq] (segments q_seg [B, Tq]); k, v [B, T, Hkv, D]
    (segments kv_seg [B, T]) -> [B, Tq, Hq, D]."""
    b, tq, hq, d = q.shape
    t, hkv = k.shape[1], k.shape[2]
    q = q.reshape(b, tq, hkv, hq // hkv, d)
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, k, preferred_element_type=jnp.float32)
    logits = logits * (d**-0.5)
    allowed = _allowed(t, q_pos, lengths, q_seg, kv_seg)
    logits = jnp.where(allowed[:, None, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", probs, v, preferred_element_type=jnp.float32)
    return out.reshape(b, tq, hq, d).astype(v.dtype)


def xla_block(t: int) -> int:
    """Queries per block of the `xla` kernel at length t: at least `XLA_MIN_BLOCK`, at most
    `XLA_MAX_BLOCKS` blocks (so the unrolled program stays small at long T)."""
    return max(XLA_MIN_BLOCK, -(-t // XLA_MAX_BLOCKS))


def block_causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None,
                           segment_ids: jax.Array | None, block: int) -> jax.Array:
    """Masked attention over query blocks [s, e), each against keys [0, e) only.

    Causality hides every later key, so the blocks above the diagonal are never computed:
    (n + 1) / 2n of the full [T, T] work and logits for n blocks, exact (each block's softmax
    sees all the keys it may see). Small blocks also keep each block's logits in cache, which
    on CPU is worth as much as the skipped work."""
    t = q.shape[1]
    outs = []
    for s in range(0, t, block):
        e = min(s + block, t)
        segs = () if segment_ids is None else (segment_ids[:, s:e], segment_ids[:, :e])
        outs.append(_masked_attention(q[:, s:e], k[:, :e], v[:, :e], lengths, jnp.arange(s, e), *segs))
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None,
                  segment_ids: jax.Array | None = None, block: int | None = None) -> jax.Array:
    """q [B, T, Hq, D]; k, v [B, T, Hkv, D]; lengths [B] real tokens per row, or segment_ids
    [B, T] of packed rows -> [B, T, Hq, D]. Block-causal (`block_causal_attention`, blocks of
    `xla_block(T)` queries unless given), logits kept for the backward."""
    block = block or xla_block(q.shape[1])
    return block_causal_attention(q, k, v, lengths, segment_ids, block)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None,
                      block: int = CHUNK_QUERIES, segment_ids: jax.Array | None = None) -> jax.Array:
    """Masked attention over blocks of `block` queries, one at a time: [B, H, block, T] logits
    live at a time, backward included.

    Each block sees every key, so its softmax is exact; the block is rematerialised
    (`jax.checkpoint`) inside a `lax.map`, so the backward recomputes one block's logits at a
    time. (Unrolled, block-causal blocks would skip the upper triangle, but XLA then schedules
    several blocks' recomputations at once: the 0.6B step's temp grew 12.6 -> 17.4 GiB.)
    """
    b, t, hq, d = q.shape
    if t <= block:
        return _masked_attention(q, k, v, lengths, jnp.arange(t), segment_ids, segment_ids)
    n = -(-t // block)
    qp = jnp.pad(q, ((0, 0), (0, n * block - t), (0, 0), (0, 0)))  # padded query rows are dropped
    blocks = jnp.moveaxis(qp.reshape(b, n, block, hq, d), 1, 0)
    starts = jnp.arange(n) * block
    seg = jnp.zeros((b, t), jnp.int32) if segment_ids is None else segment_ids
    seg_blocks = jnp.moveaxis(jnp.pad(seg, ((0, 0), (0, n * block - t))).reshape(b, n, block), 1, 0)

    @jax.checkpoint
    def one(args: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        qb, start, sb = args
        if segment_ids is None:
            return _masked_attention(qb, k, v, lengths, start + jnp.arange(block))
        return _masked_attention(qb, k, v, None, start + jnp.arange(block), sb, segment_ids)

    out = jax.lax.map(one, (blocks, starts, seg_blocks))
    return jnp.moveaxis(out, 0, 1).reshape(b, n * block, hq, d)[:, :t]


def fused_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None, implementation: str | None,
    segment_ids: jax.Array | None = None,
) -> jax.Array:
    if segment_ids is not None:  # segments as an explicit [B, 1, T, T] mask: XLA only (`choose_kernel`)
        same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
        return jax.nn.dot_product_attention(q, k, v, mask=same, is_causal=True, implementation="xla")
    lengths = lengths.astype(jnp.int32)
    return jax.nn.dot_product_attention(
        q, k, v, is_causal=True, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
        implementation=implementation,
    )


def _splash_local(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, block: int,
                  interpret: bool, segment_ids: jax.Array | None = None) -> jax.Array:
    """One device's splash call: q [B, Hq, T, D], k, v [B, Hkv, T, D] (T a multiple of block)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    _, hq, t, _ = q.shape
    mask = sm.MultiHeadMask([sm.CausalMask((t, t)) for _ in range(hq)])
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block,
                          block_kv_dq=block)
    kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes,
                                interpret=interpret)
    pos = jnp.arange(t)
    if segment_ids is not None:  # packed rows: the same segment, causally (padding is segment 0)
        seg = sk.SegmentIds(q=segment_ids, kv=segment_ids)
        return jax.vmap(kernel)(q, k, v, seg)
    # Padding: keys past a row's length get segment 0, every query segment 1, so a query sees
    # exactly the real keys at or before it (padded query rows too, as in `xla_attention`).
    seg = sk.SegmentIds(q=jnp.ones((q.shape[0], t), jnp.int32),
                        kv=(pos[None, :] < lengths[:, None]).astype(jnp.int32))
    return jax.vmap(kernel)(q, k, v, seg)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None,
                     block: int = SPLASH_BLOCK, interpret: bool = False,
                     segment_ids: jax.Array | None = None) -> jax.Array:
    """Pallas splash attention (TPU; `interpret=True` runs the kernel anywhere, slowly).

    T is padded to a multiple of the block (clipped to T rounded up to 128). Under a mesh with
    (`data`, `fsdp`, `tensor`) axes (`jax.set_mesh`) the kernel runs in `shard_map`: batch over
    (`data`, `fsdp`), heads over `tensor` (KV heads repeated when `tensor` does not divide them),
    as MaxText does; otherwise on the whole arrays.
    """
    from f2jax.model.partitioning import batch_shards
    from f2jax.sharding import BATCH_AXES

    b, t, hq, d = q.shape
    hkv = k.shape[2]
    block = min(block, -(-t // 128) * 128)
    tp = -(-t // block) * block
    scale = np.asarray(d**-0.5, q.dtype)
    qt, kt, vt = (jnp.pad(x.transpose(0, 2, 1, 3), ((0, 0), (0, 0), (0, tp - t), (0, 0)))
                  for x in (q * scale, k, v))
    lengths = jnp.full((b,), t, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
    seg = None if segment_ids is None else jnp.pad(segment_ids.astype(jnp.int32), ((0, 0), (0, tp - t)))

    def local(qt: jax.Array, kt: jax.Array, vt: jax.Array, lengths: jax.Array, *seg: jax.Array) -> jax.Array:
        return _splash_local(qt, kt, vt, lengths, block, interpret, *seg)

    segs = () if seg is None else (seg,)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {*BATCH_AXES, "tensor"} <= set(mesh.axis_names):
        out = local(qt, kt, vt, lengths, *segs)
    else:
        P = jax.sharding.PartitionSpec
        tensor = mesh.shape["tensor"]
        batch = BATCH_AXES if b % batch_shards() == 0 else None
        heads = "tensor" if hq % tensor == 0 else None
        if heads and hkv % tensor:
            kt, vt = (jnp.repeat(x, hq // hkv, axis=1) for x in (kt, vt))
        spec = P(batch, heads, None, None)
        seg_specs = tuple(P(batch, None) for _ in segs)
        out = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec, P(batch), *seg_specs),
                            out_specs=spec, check_vma=False)(qt, kt, vt, lengths, *segs)
    return out[:, :, :t].transpose(0, 2, 1, 3).astype(v.dtype)


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array | None, impl: AttentionImpl = "auto",
    segment_ids: jax.Array | None = None, requested: str | None = None,
    offsets: jax.Array | None = None, seqlens: jax.Array | None = None,
) -> jax.Array:
    """q [B, T, Hq, D]; k, v [B, T, Hkv, D]; lengths [B] (or packed rows' segment_ids [B, T],
    with their text starts `offsets` [B, M+1] and lengths `seqlens` [B, M] for cuDNN) ->
    [B, T, Hq, D] with `impl` resolved here. `requested`: the configured `model.attention`
    (default `impl`), which decides whether packed rows may leave cuDNN (`choose_kernel`)."""
    backend, dtype = jax.default_backend(), jnp.dtype(q.dtype).name
    kernel = resolve_attention(impl, backend, dtype, q.shape[-1])
    seg = segment_ids
    if seg is not None:
        kernel = resolve_packed(requested or impl, backend, dtype, q.shape[-1])
        if kernel == "cudnn":
            from f2jax.model.cudnn_packed import cudnn_packed_attention

            if offsets is None or seqlens is None:
                raise ValueError("packed rows through cuDNN need their offsets and seqlens "
                                 "(a PackedBatch from f2jax.data.packing)")
            return cudnn_packed_attention(q, k, v, seg, offsets, seqlens)
        if kernel == PACKED_FALLBACK:
            from f2jax.model.triton_packed import triton_packed_attention

            return triton_packed_attention(q, k, v, seg)
    if kernel == "xla":
        return xla_attention(q, k, v, lengths, seg)
    if kernel == "chunked":
        return chunked_attention(q, k, v, lengths, CHUNK_QUERIES, seg)
    if kernel == "dot_product":
        return fused_attention(q, k, v, lengths, None, seg)
    if kernel == "cudnn":
        return fused_attention(q, k, v, lengths, "cudnn", seg)
    if kernel == "splash":
        return splash_attention(q, k, v, lengths, SPLASH_BLOCK, segment_ids=seg)
    raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLS}, got {impl!r}")
