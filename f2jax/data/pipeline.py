"""The Grain pipeline: homogeneous, seed-determined, resumable, host-sliced batches.

Step g of training is a pure function of (seed, g): epoch = g // steps_per_epoch, the epoch's
schedule gives (source, batch index), the source's per-epoch shuffle gives the global batch's
rows, and each process reads only rows [p*B/P, (p+1)*B/P). A `grain.MapDataset` over step
numbers therefore makes the iterator state a single index: save and restore are exact.
Bucket lengths are chosen from the lengths of the *global* batch (held in small index arrays),
so every host pads identically without reading the other hosts' records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grain
import numpy as np

from f2jax.data import schedule
from f2jax.data.store import SourceIndex, TokenizedStore
from f2jax.data.tasks import DEFAULT_NEGATIVES, INBATCH
from f2jax.data.teacher import TeacherEmbeddings
from f2jax.errors import UserInputError

log = logging.getLogger(__name__)
_FOREVER = 2**40  # steps of an endless pipeline; MapDataset.range is lazy


@dataclass(frozen=True)
class _Plan:
    source: int
    rows: np.ndarray  # global batch: record indices into the source's query split
    epoch: int
    step_in_epoch: int


class TrainPlan:
    """(seed, step) -> global batch rows, following the reference's mixing rule."""

    def __init__(self, rows: list[np.ndarray], batch: int, seed: int):
        self.rows, self.batch, self.seed = rows, batch, seed
        self.batches = [len(r) // batch for r in rows]  # drop_last per source
        self.steps_per_epoch = int(sum(self.batches))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if epoch not in self._cache:
                if len(self._cache) > 2:
                    self._cache.pop(min(self._cache))
                self._cache[epoch] = schedule.epoch_schedule(self.batches, self.seed, epoch)
            return self._cache[epoch]

    def __call__(self, step: int) -> _Plan:
        epoch, i = divmod(int(step), self.steps_per_epoch)
        src, idx = self._epoch(epoch)
        s, k = int(src[i]), int(idx[i])
        order = schedule.shuffled_rows(self.rows[s], self.seed, epoch, s)
        return _Plan(s, order[k * self.batch : (k + 1) * self.batch], epoch, i)


class ValidationPlan:
    """Held-out rows, source by source, in order; the last batch of a source may be smaller
    (trimmed to a multiple of the process count)."""

    def __init__(self, rows: list[np.ndarray], batch: int, processes: int):
        self.items = []
        for s, r in enumerate(rows):
            for start in range(0, len(r), batch):
                chunk = r[start : start + batch]
                chunk = chunk[: len(chunk) - len(chunk) % processes]
                if len(chunk):
                    self.items.append(_Plan(s, chunk, 0, len(self.items)))

    def __call__(self, step: int) -> _Plan:
        return self.items[int(step)]


def _pad(seqs: Sequence[np.ndarray], length: int, pad_id: int, eos_id: int):
    """Right-pad (truncating with EOS last where needed); ids, mask, last real index."""
    ids = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), np.int32)
    last = np.zeros(len(seqs), np.int32)
    for i, s in enumerate(seqs):
        if len(s) > length:
            s = np.concatenate([s[: length - 1], [eos_id]])
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
        last[i] = len(s) - 1
    return ids, mask, last


class BatchBuilder:
    """Step number -> this process's slice of the global batch (the batch contract)."""

    def __init__(self, store: TokenizedStore, plan, *, seed: int, max_length: int,
                 buckets: Sequence[int], negatives: dict[str, int], instructions: bool,
                 process_index: int, process_count: int, teacher: TeacherEmbeddings | None = None):
        self.store, self.plan, self.seed, self.teacher = store, plan, seed, teacher
        self.sources: list[SourceIndex] = list(store.sources.values())
        self.max_length, self.buckets = max_length, tuple(sorted(buckets))
        self.negatives, self.instructions = negatives, instructions
        self.p, self.P = process_index, process_count
        self.pad_id, self.eos_id = store.meta["pad_id"], store.meta["eos_id"]

    def _use_instruction(self, src: SourceIndex) -> bool:
        return self.instructions and bool(src.instruction)

    def _len(self, lengths: np.ndarray) -> int:
        return schedule.bucket(int(min(lengths.max(), self.max_length)), self.buckets)

    def __call__(self, step: int) -> dict:
        plan = self.plan(step)
        src = self.sources[plan.source]
        rows, k = plan.rows, self.negatives[src.task]
        qlen = src.query_instructed_len if self._use_instruction(src) else src.query_len
        pid = src.passage_id[rows]
        nid = schedule.sample_negatives(
            src.negative_ids[rows], pid, k, random=src.task != "classification",
            seed=(self.seed, plan.epoch, plan.source, plan.step_in_epoch, int(step)),
        )
        lq, lp = self._len(qlen[rows]), self._len(self.store.doc_len[pid])
        ln = self._len(self.store.doc_len[nid.ravel()])
        b = len(rows) // self.P
        mine = slice(self.p * b, (self.p + 1) * b)
        qrec = self.store.records("queries", src.name).__getitems__(rows[mine].tolist())
        qkey = "query_instructed" if self._use_instruction(src) else "query"
        docs = np.concatenate([pid[mine], nid[mine].ravel()])
        uniq, inverse = np.unique(docs, return_inverse=True)
        drec = self.store.records("corpus", "corpus").__getitems__(uniq.tolist())
        dids = [drec[j]["input_ids"] for j in inverse]
        q_ids, q_mask, q_last = _pad([r[qkey] for r in qrec], lq, self.pad_id, self.eos_id)
        p_ids, p_mask, p_last = _pad(dids[:b], lp, self.pad_id, self.eos_id)
        n_ids, n_mask, n_last = _pad(dids[b:], ln, self.pad_id, self.eos_id)
        out = {
            "query_ids": q_ids, "query_mask": q_mask, "query_last": q_last,
            "passage_ids": p_ids, "passage_mask": p_mask, "passage_last": p_last,
            "negative_ids": n_ids.reshape(b, k, ln), "negative_mask": n_mask.reshape(b, k, ln),
            "negative_last": n_last.reshape(b, k),
            "source": src.name, "task": src.task, "inbatch": INBATCH[src.task],
            "epoch": plan.epoch, "step_in_epoch": plan.step_in_epoch,
            "rows": rows[mine].astype(np.int64),  # record indices in the source (debugging)
        }
        if self.teacher is not None:  # stored teacher vectors, gathered by the same ids
            t = self.teacher
            out["teacher_query"] = t.gather(t.query(src.name, qkey), rows[mine])
            out["teacher_passage"] = t.gather(t.corpus, pid[mine])
            out["teacher_negative"] = t.gather(t.corpus, nid[mine])
        return out


def _processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return process_index, process_count


def make_dataset(
    data_dir: str | Path,
    *,
    global_batch_size: int,
    seed: int = 0,
    max_length: int | None = None,
    buckets: Sequence[int] | None = None,
    negatives: dict[str, int] | None = None,
    split: str = "train",
    instructions: bool = True,
    holdout: float = 0.01,
    max_rows_per_source: int | None = None,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    teacher_embeddings: bool = False,
) -> grain.MapDataset:
    """A `grain.MapDataset` whose element i is step i's local batch (see module docstring).

    `teacher_embeddings=True` adds the stored teacher vectors of `data_dir/teacher/` (see
    `f2jax.data.teacher`) as float32 `teacher_query` [b, H], `teacher_passage` [b, H] and
    `teacher_negative` [b, K, H]."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    p, P = _processes(process_index, process_count)
    if global_batch_size % P:
        raise ValueError(f"global_batch_size {global_batch_size} not divisible by {P} processes")
    store = TokenizedStore(data_dir)
    max_length = max_length or int(store.meta["max_length"])
    buckets = tuple(b for b in (buckets or schedule.default_buckets(max_length)) if b < max_length)
    buckets = (*buckets, max_length)
    negatives = {**DEFAULT_NEGATIVES, **(negatives or {})}
    train_rows, val_rows = [], []
    for name, src in store.sources.items():
        tr, va = schedule.split_rows(name, len(src.query_len), holdout)
        tr = schedule.subsample(tr, name, max_rows_per_source)
        if src.negative_ids.shape[1] < negatives[src.task]:
            raise UserInputError(f"source {name}: {src.task} needs {negatives[src.task]} negatives, "
                             f"the tokenised data has {src.negative_ids.shape[1]} per query")
        train_rows.append(tr)
        val_rows.append(va)
        if split == "train" and len(tr) < global_batch_size:
            log.warning("source %s: %d training rows < global batch %d; it yields no batches "
                        "(drop_last)", name, len(tr), global_batch_size)
        elif split == "train" and len(tr) % global_batch_size:
            log.info("source %s: dropping the last %d rows each epoch (drop_last)", name,
                     len(tr) % global_batch_size)
    if split == "train":
        plan = TrainPlan(train_rows, global_batch_size, seed)
        if plan.steps_per_epoch == 0:
            raise UserInputError(f"{data_dir}: no source has data.global_batch_size={global_batch_size} "
                                 "training rows")
        steps = plan.steps_per_epoch * (num_epochs if num_epochs is not None else _FOREVER)
    else:
        plan = ValidationPlan(val_rows, global_batch_size, P)
        steps = len(plan.items)
    teacher = TeacherEmbeddings(data_dir) if teacher_embeddings else None
    builder = BatchBuilder(store, plan, seed=seed, max_length=max_length, buckets=buckets,
                           negatives=negatives, instructions=instructions,
                           process_index=p, process_count=P, teacher=teacher)
    ds = grain.MapDataset.range(steps).map(builder)
    ds.steps_per_epoch = getattr(plan, "steps_per_epoch", steps)  # for schedulers and logs
    return ds


def make_pipeline(data_dir: str | Path, *, global_batch_size: int, seed: int = 0,
                  num_threads: int = 2, prefetch: int = 4, **kwargs) -> grain.DatasetIterator:
    """Iterator of local batches; `get_state()`/`set_state()` save and restore it exactly.
    Keyword arguments as `make_dataset`. Threads only (no worker processes)."""
    ds = make_dataset(data_dir, global_batch_size=global_batch_size, seed=seed, **kwargs)
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(ds.to_iter_dataset(read))


def make_validation_iterator(data_dir: str | Path, *, global_batch_size: int, seed: int = 0,
                             **kwargs) -> grain.DatasetIterator:
    """One pass over the held-out rows of every source (same batch contract)."""
    return make_pipeline(data_dir, global_batch_size=global_batch_size, seed=seed,
                         split="validation", **kwargs)


ARRAY_KEYS = ("query_ids", "query_mask", "query_last", "passage_ids", "passage_mask",
              "passage_last", "negative_ids", "negative_mask", "negative_last")
TEACHER_KEYS = ("teacher_query", "teacher_passage", "teacher_negative")  # with teacher_embeddings=True


def to_global(batch: dict, mesh, batch_axes: Sequence[str] = ("data", "fsdp")) -> dict:
    """Assemble each process's slice into global jax arrays sharded over `batch_axes`."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    axes = tuple(a for a in batch_axes if a in mesh.axis_names)
    out = dict(batch)
    for key in (*ARRAY_KEYS, *(k for k in TEACHER_KEYS if k in batch)):
        arr = batch[key]
        spec = PartitionSpec(axes or None, *([None] * (arr.ndim - 1)))
        out[key] = jax.make_array_from_process_local_data(NamedSharding(mesh, spec), arr)
    return out
