"""The batch contract in one place: the arrays a step reads, their padding and length buckets.

`Batch` is what crosses the host/device boundary (numpy in the pipeline, global `jax.Array`s
after `to_global`, abstract shapes in the step-memory benchmark); `HostBatch` adds where the
rows came from, which stays on the host. Padding and bucketing live here so the pipeline and
the Encoder shape their sequences the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

# (ids, mask) field pairs, [b, T] for query/passage and [b, K, T] for negatives.
TOKEN_FIELDS = ("query_ids", "query_mask", "passage_ids", "passage_mask", "negative_ids", "negative_mask")
# Precomputed teacher vectors ([b, Ht], [b, Ht], [b, K, Ht]): present with teacher.embeddings.
TEACHER_FIELDS = ("teacher_query", "teacher_passage", "teacher_negative")


def micro_batch_rows(batch: int, micro: int, j: int) -> np.ndarray:
    """Rows of GradCache micro-batch j when a [batch] axis is split into `micro`: strided
    (i ≡ j mod micro), so every device keeps its share of each micro-batch. `split_micro`
    applies the same rule to device arrays."""
    return np.arange(j, batch, micro)


def split_micro(tree: Any, micro: int) -> Any:
    """Every [B, ...] leaf -> [micro, B/micro, ...], micro-batch j holding `micro_batch_rows`."""
    return jax.tree.map(lambda v: v.reshape(v.shape[0] // micro, micro, *v.shape[1:]).swapaxes(0, 1), tree)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Batch:
    """One step's arrays; a pytree, so it is jitted, sharded and micro-batched as a whole."""

    query_ids: Any
    query_mask: Any
    passage_ids: Any
    passage_mask: Any
    negative_ids: Any
    negative_mask: Any
    teacher_query: Any = None
    teacher_passage: Any = None
    teacher_negative: Any = None

    @property
    def teacher(self) -> tuple[Any, Any, Any] | None:
        """Stored teacher (query, passage, negative) vectors, or None."""
        if self.teacher_query is None:
            return None
        return self.teacher_query, self.teacher_passage, self.teacher_negative

    def without_teacher(self) -> Batch:
        return dataclasses.replace(self, teacher_query=None, teacher_passage=None, teacher_negative=None)

    def token_counts(self) -> tuple[int, int]:
        """(real, padded) tokens over queries, passages and negatives (host arrays)."""
        masks = (self.query_mask, self.passage_mask, self.negative_mask)
        return int(sum(m.sum() for m in masks)), int(sum(m.size for m in masks))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedBatch:
    """One step's texts packed into R rows of T tokens (`data.packing`, f2jax.data.packing).

    ids, segment_ids (0 = padding, 1.. per text within a row), positions (restart at 0 per
    text): [R, T]. query_index / passage_index [B, 2] and negative_index [B, K, 2] hold each
    text's last token as (global row, column), so pooling yields the same [B], [B], [B, K]
    embeddings as a `Batch` of the same texts. offsets [R, M+1] and seqlens [R, M] list each
    row's text starts and lengths (−1 filled) for cuDNN's packed attention; both are split over
    the batch axes like the rows. None: the kernels that take segment ids only.
    """

    ids: Any
    segment_ids: Any
    positions: Any
    query_index: Any
    passage_index: Any
    negative_index: Any
    teacher_query: Any = None
    teacher_passage: Any = None
    teacher_negative: Any = None
    offsets: Any = None
    seqlens: Any = None

    teacher = Batch.teacher

    def without_teacher(self) -> PackedBatch:
        return dataclasses.replace(self, teacher_query=None, teacher_passage=None, teacher_negative=None)

    def without_offsets(self) -> PackedBatch:
        """Without offsets/seqlens, for kernels that read segment ids only: each texts-per-row
        width M would otherwise be another compiled step."""
        return dataclasses.replace(self, offsets=None, seqlens=None)

    def token_counts(self) -> tuple[int, int]:
        """(real, computed) tokens of the packed rows (host arrays)."""
        return int((np.asarray(self.segment_ids) > 0).sum()), int(np.size(self.segment_ids))


@dataclasses.dataclass(frozen=True)
class HostBatch:
    """This process's slice of step g's global batch, and where its rows came from."""

    arrays: Batch | PackedBatch  # numpy
    source: str
    task: str
    inbatch: bool  # in-batch negatives apply (retrieval sources)
    epoch: int
    step_in_epoch: int
    rows: np.ndarray  # record indices in the source (debugging)


def pad_sequences(seqs: Sequence[Sequence[int]], length: int, pad_id: int,
                  eos_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int32 (ids, mask) [n, length]; a longer sequence is cut and, given
    `eos_id`, ends in EOS so last-token pooling still reads an EOS state."""
    ids = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.int32)
    for i, s in enumerate(seqs):
        if len(s) > length:
            if eos_id is None:
                raise ValueError(f"sequence of {len(s)} tokens exceeds length {length}")
            s = np.concatenate([s[: length - 1], [eos_id]])
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def length_buckets(max_length: int, smallest: int = 16) -> list[int]:
    """Powers of two from `smallest` below max_length, then max_length itself."""
    buckets, size = [], smallest
    while size < max_length:
        buckets.append(size)
        size *= 2
    return [*buckets, max_length]


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= n (buckets sorted ascending)."""
    for size in buckets:
        if n <= size:
            return int(size)
    raise ValueError(f"length {n} exceeds the largest bucket {buckets[-1]}")
