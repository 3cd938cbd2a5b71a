"""The Encoder: texts -> embeddings with a Qwen3 backbone and last-token pooling.

Texts are packed into rows of a small set of bucket lengths (or, without packing, sorted by
length and padded to them), and row and batch counts are bucketed too, so jit compiles a
bounded number of shapes however many texts arrive.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from f2jax.data.batch import bucket_for, length_buckets, pad_sequences
from f2jax.data.packing import inference_rows, level_layout, row_bucket
from f2jax.data.tasks import instruct
from f2jax.errors import UserInputError
from f2jax.hf.export import DEFAULT_MAX_SHARD_BYTES, save_pretrained
from f2jax.hf.load import load_model
from f2jax.losses import normalize_rows
from f2jax.model.attention import packed_uses_offsets
from f2jax.model.config import Qwen3Config
from f2jax.model.partitioning import batch_shards
from f2jax.model.qwen3 import ModelOptions, Qwen3Model
from f2jax.paths import Path
from f2jax.sharding import batch_sharding
from f2jax.storage import local_copy
from f2jax.tokenizer import load_tokenizer, tokenize

__all__ = ["Encoder", "batch_bucket", "bucket_for", "length_buckets", "normalize_rows", "pooled", "pooled_groups"]

DEFAULT_MAX_LENGTH = 512
F2LLM_QUERY_PROMPT = instruct("Given a question, retrieve passages that can help answer the question.", "")
ENCODE_SMALLEST_BUCKET = 16  # training batches start at 32 (f2jax.data.pipeline)
_IN_FLIGHT = 4  # calls dispatched before the oldest one's result is read back
_Call = tuple[np.ndarray, "tuple[np.ndarray, np.ndarray] | None", jax.Array]  # texts, (row, slot), pooled


def pooled(graphdef: nnx.GraphDef, state: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Raw (un-normalised) last-token states [b, H] in float32: the embedding of training and
    inference alike."""
    return pooled_groups(graphdef, state, [(ids, mask)])[0]


def pooled_groups(graphdef: nnx.GraphDef, state: Any, groups: Sequence[tuple[jax.Array, jax.Array]]) -> list[jax.Array]:
    """`pooled` of several (ids, mask) batches, run through the layers together
    (`Qwen3Model.call_groups`: each layer's weights gathered once for all)."""
    return [h.astype(jnp.float32) for h in nnx.merge(graphdef, state).call_groups(groups, last_token=True)]


def batch_bucket(n: int, batch_size: int) -> int:
    """Pad a short final batch to the next power of two (capped at batch_size)."""
    size = 1
    while size < n:
        size *= 2
    return min(size, batch_size)


def _collect(out: np.ndarray, texts: np.ndarray, where: tuple[np.ndarray, np.ndarray] | None,
             pooled: jax.Array) -> None:
    """Write one call's embeddings into `out` at the texts' input positions: padded calls hold
    them in their first rows, packed ones at (row, slot)."""
    host = np.asarray(pooled)
    out[texts] = host[: len(texts)] if where is None else host[where]


def _read_max_length(path: Path) -> int | None:
    config = path / "sentence_bert_config.json"
    if config.exists():
        value = json.loads(config.read_text()).get("max_seq_length")
        return int(value) if value else None
    return None


def _read_prompts(path: Path) -> dict[str, str]:
    config = path / "config_sentence_transformers.json"
    return dict(json.loads(config.read_text()).get("prompts") or {}) if config.exists() else {}


class Encoder:
    """A Qwen3 embedding model with its tokenizer; `encode` is the sentence-transformers analogue.

    `packing` (default): texts share rows (segment-aware attention, positions restarting per
    text), so almost no computed token is padding; False pads length-sorted batches instead."""

    def __init__(self, model: Qwen3Model, tokenizer: Any, *, max_length: int = DEFAULT_MAX_LENGTH,
                 prompts: Mapping[str, str] | None = None, mesh: Mesh | None = None, packing: bool = True):
        self.model, self.tokenizer, self.mesh = model, tokenizer, mesh
        self.max_length, self.packing = max_length, packing
        self.prompts = dict(prompts or {"query": F2LLM_QUERY_PROMPT, "document": ""})
        self.buckets = length_buckets(max_length, ENCODE_SMALLEST_BUCKET)
        self._graphdef, self._state = nnx.split(model)
        self._pooled = jax.jit(self._pooled_fn)
        self._hidden = jax.jit(self._hidden_fn)
        self._packed = jax.jit(self._packed_fn)

    @property
    def config(self) -> Qwen3Config:
        return self.model.config

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "float32", *, max_length: int | None = None,
                        attention: str = "auto", mesh: Mesh | None = None,
                        param_dtype: str | None = None, packing: bool = True) -> Encoder:
        """Load a Hugging Face Qwen3 directory (with tokenizer files) or an f2jax export; a URL is
        read from its local copy (`f2jax.storage.local_copy`)."""
        path = local_copy(path)
        opts = ModelOptions(param_dtype=param_dtype or dtype, dtype=dtype, attention=attention)
        model = load_model(path, opts, mesh=mesh)
        tokenizer = load_tokenizer(path)
        max_length = max_length or _read_max_length(path) or DEFAULT_MAX_LENGTH
        return cls(model, tokenizer, max_length=max_length, prompts=_read_prompts(path) or None, mesh=mesh,
                   packing=packing)

    def _pooled_fn(self, state: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return pooled(self._graphdef, state, ids, mask)

    def _packed_fn(self, state: Any, ids: jax.Array, segment_ids: jax.Array, positions: jax.Array,
                   last: jax.Array, offsets: jax.Array | None = None, seqlens: jax.Array | None = None) -> jax.Array:
        model = nnx.merge(self._graphdef, state)
        return model.packed_last_tokens(ids, segment_ids, positions, last, offsets=offsets,
                                        seqlens=seqlens).astype(jnp.float32)

    def _hidden_fn(self, state: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return nnx.merge(self._graphdef, state)(ids, mask).astype(jnp.float32)

    def _place(self, array: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(array)
        if array.shape[0] % batch_shards(self.mesh):
            return jax.device_put(array, NamedSharding(self.mesh, PartitionSpec()))
        return jax.device_put(array, batch_sharding(self.mesh, array.ndim))

    def embed_ids(self, token_ids: Sequence[Sequence[int]], batch_size: int = 32, *,
                  packing: bool | None = None) -> np.ndarray:
        """Raw last-token states [N, hidden] (float32) for pre-tokenised sequences, in input order.

        `packing` (default: the Encoder's): texts packed into rows of the length buckets
        (`f2jax.data.packing.level_layout`), at most `batch_size` x `max_length` tokens a call;
        else length-sorted batches of `batch_size` padded to their bucket. Calls are dispatched
        ahead of reading their results back, a bounded number at a time."""
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        packing = self.packing if packing is None else packing
        out = np.empty((len(token_ids), self.config.hidden_size), np.float32)
        calls = self._packed_calls(token_ids, batch_size) if packing else self._padded_calls(token_ids, batch_size)
        in_flight: collections.deque = collections.deque()
        for call in calls:
            in_flight.append(call)
            if len(in_flight) > _IN_FLIGHT:
                _collect(out, *in_flight.popleft())
        for call in in_flight:
            _collect(out, *call)
        return out

    def _padded_calls(self, token_ids: Sequence[Sequence[int]], batch_size: int) -> Iterator[_Call]:
        order = np.argsort([-len(t) for t in token_ids], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            length = bucket_for(max(len(token_ids[i]) for i in rows), self.buckets)
            seqs = [token_ids[i] for i in rows]
            seqs += [[]] * (batch_bucket(len(rows), batch_size) - len(rows))
            ids, mask = pad_sequences(seqs, length, pad)
            mask[len(rows):, 0] = 1  # padding rows: one token, discarded below
            with jax.set_mesh(self.mesh):
                pooled = self._pooled(self._state, self._place(ids), self._place(mask))
            yield rows, None, pooled

    def _packed_calls(self, token_ids: Sequence[Sequence[int]], batch_size: int) -> Iterator[_Call]:
        seqs = [np.asarray(t, np.int32) for t in token_ids]
        pad = self.tokenizer.pad_token_id or 0
        shards = batch_shards(self.mesh) if self.mesh is not None else 1
        opts = self.model.options
        offsets = packed_uses_offsets(opts.attention, opts.dtype, self.config.head_dim)
        for length, texts, row, col in level_layout([len(s) for s in seqs], self.buckets):
            per_call = max(shards, batch_size * self.max_length // length // shards * shards)
            for first in range(0, int(row.max()) + 1, per_call):
                here = (row >= first) & (row < first + per_call)
                rows = min(per_call, row_bucket(int(row[here].max()) + 1 - first, shards))
                arrays, slot = inference_rows([seqs[i] for i in texts[here]], row[here] - first, col[here],
                                              rows, length, pad, offsets)
                with jax.set_mesh(self.mesh):
                    pooled = self._packed(self._state, **{k: self._place(v) for k, v in arrays.items()})
                yield texts[here], (row[here] - first, slot), pooled
    def encode(self, texts: str | Sequence[str], *, prompt: str | None = None, prompt_name: str | None = None,
               dim: int | None = None, normalize: bool = True, batch_size: int = 32) -> np.ndarray:
        """Embeddings [N, dim]: prompt prepended, EOS appended, last-token pooled, truncated, normalised."""
        if isinstance(texts, str):
            texts = [texts]
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise KeyError(f"prompt_name {prompt_name!r} not in prompts {sorted(self.prompts)}")
            prompt = self.prompts[prompt_name]
        hidden = self.config.hidden_size
        if dim is not None and not 1 <= dim <= hidden:
            raise UserInputError(f"dim must be in [1, {hidden}], got {dim}")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        if not texts:
            return np.zeros((0, dim or hidden), np.float32)
        prefixed = [prompt + t for t in texts] if prompt else list(texts)
        vectors = self.embed_ids(tokenize(self.tokenizer, prefixed, self.max_length), batch_size)
        vectors = vectors[:, :dim] if dim else vectors
        return normalize_rows(vectors) if normalize else vectors

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Final-norm hidden states [B, T, hidden] (float32) for right-padded ids."""
        ids = np.asarray(input_ids, np.int32)
        mask = np.asarray(attention_mask, np.int32)
        if ids.shape != mask.shape or ids.ndim != 2:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal 2-D shapes")
        with jax.set_mesh(self.mesh):
            return np.asarray(self._hidden(self._state, self._place(ids), self._place(mask)))

    def save_pretrained(self, out_dir: str | Path, *, dtype: str | None = None,
                        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
        """A directory that transformers' AutoModel and sentence-transformers load, no custom code."""
        return save_pretrained(
            self.model, self.config, self.tokenizer, out_dir, max_length=self.max_length,
            prompts=self.prompts, dtype=dtype or self.model.options.param_dtype,
            max_shard_bytes=max_shard_bytes,
        )
