"""The Grain pipeline: homogeneous, seed-determined, resumable, host-sliced batches.

Step g of training is a pure function of (seed, g): epoch = g // steps_per_epoch, the epoch's
schedule gives (source, batch index), the source's per-epoch shuffle gives the global batch's
rows, and each process reads only rows [p*B/P, (p+1)*B/P). A `grain.MapDataset` over step
numbers therefore makes the iterator state a single index: save and restore are exact.
Bucket lengths are chosen from the lengths of the *global* batch (held in small index arrays),
so every host pads identically without reading the other hosts' records.

With packing (`pack_length`), each process packs its own slice of texts into its own rows
(f2jax.data.packing); the row count comes from the FFD layouts of *every* slice, computed from
the same global length arrays, so all hosts agree on R without exchanging anything, and the
last-token indices name global rows (process p owns rows [p·R, (p+1)·R)). With GradCache
(`micro` > 1) each micro-batch is packed apart, into every micro-th row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import grain
import jax
import numpy as np
from jax.sharding import Mesh

from f2jax.data import schedule
from f2jax.data.batch import Batch, HostBatch, PackedBatch, bucket_for, length_buckets, pad_sequences
from f2jax.data.packing import clip, pack_texts, packing_shape
from f2jax.data.store import SourceIndex, TokenizedStore
from f2jax.data.tasks import DEFAULT_NEGATIVES, INBATCH
from f2jax.data.teacher import TeacherEmbeddings
from f2jax.errors import UserInputError
from f2jax.paths import Path

log = logging.getLogger(__name__)
TRAIN_SMALLEST_BUCKET = 32  # the Encoder starts at 16; training batches are wider
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


class BatchBuilder:
    """Step number -> this process's slice of the global batch (a `HostBatch`)."""

    def __init__(self, store: TokenizedStore, plan, *, seed: int, max_length: int,
                 buckets: Sequence[int], negatives: dict[str, int], instructions: bool,
                 process_index: int, process_count: int, teacher: TeacherEmbeddings | None = None,
                 pack_length: int | None = None, row_multiple: int = 1, micro: int = 1):
        self.store, self.plan, self.seed, self.teacher = store, plan, seed, teacher
        self.sources: list[SourceIndex] = list(store.sources.values())
        self.max_length, self.buckets = max_length, tuple(sorted(buckets))
        self.negatives, self.instructions = negatives, instructions
        self.p, self.P = process_index, process_count
        self.pad_id, self.eos_id = store.meta["pad_id"], store.meta["eos_id"]
        self.pack_length, self.row_multiple, self.micro = pack_length, row_multiple, micro

    def _use_instruction(self, src: SourceIndex) -> bool:
        return self.instructions and bool(src.instruction)

    def _len(self, lengths: np.ndarray) -> int:
        return bucket_for(int(min(lengths.max(), self.max_length)), self.buckets)

    def __call__(self, step: int) -> HostBatch:
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
        teacher = {}
        if self.teacher is not None:  # stored teacher vectors, gathered by the same ids
            t = self.teacher
            teacher = {"teacher_query": t.gather(t.query(src.name, qkey), rows[mine]),
                       "teacher_passage": t.gather(t.corpus, pid[mine]),
                       "teacher_negative": t.gather(t.corpus, nid[mine])}
        if self.pack_length:
            arrays = self._packed(qlen[rows], self.store.doc_len[pid], self.store.doc_len[nid], k,
                                  [r[qkey] for r in qrec], dids, teacher)
            return HostBatch(arrays, source=src.name, task=src.task, inbatch=INBATCH[src.task],
                             epoch=plan.epoch, step_in_epoch=plan.step_in_epoch,
                             rows=rows[mine].astype(np.int64))
        q_ids, q_mask = pad_sequences([r[qkey] for r in qrec], lq, self.pad_id, self.eos_id)
        p_ids, p_mask = pad_sequences(dids[:b], lp, self.pad_id, self.eos_id)
        n_ids, n_mask = pad_sequences(dids[b:], ln, self.pad_id, self.eos_id)
        arrays = Batch(query_ids=q_ids, query_mask=q_mask, passage_ids=p_ids, passage_mask=p_mask,
                       negative_ids=n_ids.reshape(b, k, ln), negative_mask=n_mask.reshape(b, k, ln),
                       **teacher)
        return HostBatch(arrays, source=src.name, task=src.task, inbatch=INBATCH[src.task],
                         epoch=plan.epoch, step_in_epoch=plan.step_in_epoch,
                         rows=rows[mine].astype(np.int64))


    def _packed(self, qlen: np.ndarray, plen: np.ndarray, nlen: np.ndarray, k: int, queries: list,
                docs: list, teacher: dict[str, np.ndarray]) -> PackedBatch:
        """This slice packed into R rows; R from every slice's layout (global lengths), so all
        processes agree on it."""
        b, cap = len(qlen) // self.P, self.max_length
        slices = [np.minimum(np.concatenate([qlen[j * b:(j + 1) * b], plen[j * b:(j + 1) * b],
                                             nlen[j * b:(j + 1) * b].ravel()]), cap) for j in range(self.P)]
        rows, texts = packing_shape(slices, b, k, self.pack_length, self.row_multiple, self.micro)
        q = [clip(s, cap, self.eos_id) for s in queries]
        d = [clip(s, cap, self.eos_id) for s in docs]
        return pack_texts(q, d[:b], d[b:], k, length=self.pack_length, rows=rows, pad_id=self.pad_id,
                          row_offset=self.p * rows, teacher=teacher, micro=self.micro, texts=texts)


def _processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return process_index, process_count


@dataclass(frozen=True)
class DataSpec:
    """What a run's batches are made of: the data section of the run config plus the facts the
    mesh adds (`row_multiple`, `micro`); built by `f2jax.train.run.data_spec`.

    `teacher_embeddings` adds the stored teacher vectors of `data_dir/teacher/` as float32
    `teacher_query` [b, H], `teacher_passage` [b, H] and `teacher_negative` [b, K, H].
    `pack_length=T` (>= max_length) packs each step's texts into rows of T (a `PackedBatch`),
    R per process a multiple of `row_multiple` (the data-parallel shards per process); with
    `micro=k` (GradCache, `train.grad_accum`) each micro-batch gets rows of its own."""

    global_batch_size: int
    seed: int = 0
    max_length: int | None = None  # default: the tokenised data's
    buckets: Sequence[int] | None = None
    negatives: dict[str, int] | None = None
    instructions: bool = True
    holdout: float = 0.01
    max_rows_per_source: int | None = None
    teacher_embeddings: bool = False
    pack_length: int | None = None
    row_multiple: int = 1
    micro: int = 1


@dataclass(frozen=True)
class StepDataset:
    """Element g is step g's local `HostBatch` (a `grain.MapDataset`, random access)."""

    batches: grain.MapDataset
    steps_per_epoch: int  # training batches per epoch (validation: the whole pass)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> HostBatch:
        return self.batches[step]

    def __iter__(self):
        return iter(self.batches)


def make_dataset(data_dir: str | Path, spec: DataSpec, *, split: str = "train", num_epochs: int | None = None,
                 process_index: int | None = None, process_count: int | None = None) -> StepDataset:
    """This process's batches of `split` (see module docstring): `num_epochs` of training
    batches (None: endless), or one pass over the held-out rows."""
    global_batch_size, seed, max_length = spec.global_batch_size, spec.seed, spec.max_length
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    p, P = _processes(process_index, process_count)
    if global_batch_size % P:
        raise ValueError(f"global_batch_size {global_batch_size} not divisible by {P} processes")
    store = TokenizedStore(data_dir)
    max_length = max_length or int(store.meta["max_length"])
    if spec.pack_length is not None and spec.pack_length < max_length:
        raise ValueError(f"pack_length {spec.pack_length} < max_length {max_length}: a text must fit one row")
    buckets = tuple(b for b in (spec.buckets or length_buckets(max_length, TRAIN_SMALLEST_BUCKET)) if b < max_length)
    buckets = (*buckets, max_length)
    negatives = {**DEFAULT_NEGATIVES, **(spec.negatives or {})}
    train_rows, val_rows = [], []
    for name, src in store.sources.items():
        tr, va = schedule.split_rows(name, len(src.query_len), spec.holdout)
        tr = schedule.subsample(tr, name, spec.max_rows_per_source)
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
    teacher = TeacherEmbeddings(data_dir) if spec.teacher_embeddings else None
    builder = BatchBuilder(store, plan, seed=seed, max_length=max_length, buckets=buckets,
                           negatives=negatives, instructions=spec.instructions,
                           process_index=p, process_count=P, teacher=teacher,
                           pack_length=spec.pack_length, row_multiple=spec.row_multiple,
                           micro=spec.micro)
    return StepDataset(grain.MapDataset.range(steps).map(builder), getattr(plan, "steps_per_epoch", steps))


def make_pipeline(data_dir: str | Path, spec: DataSpec, *, num_threads: int = 2, prefetch: int = 4,
                  **where) -> grain.DatasetIterator:
    """Iterator of local batches; `get_state()`/`set_state()` save and restore it exactly.
    `where`: split, num_epochs, process_index, process_count as `make_dataset`. Threads only."""
    ds = make_dataset(data_dir, spec, **where)
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(ds.batches.to_iter_dataset(read))


def make_validation_iterator(data_dir: str | Path, spec: DataSpec, **where) -> grain.DatasetIterator:
    """One pass over the held-out rows of every source (same batch contract)."""
    return make_pipeline(data_dir, spec, split="validation", **where)


def to_global(batch: Batch, mesh: Mesh) -> Batch:
    """Assemble each process's slice into global jax arrays, batch dim over (`data`, `fsdp`)."""
    from f2jax.sharding import batch_sharding

    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(batch_sharding(mesh, a.ndim), a),
                        batch)
