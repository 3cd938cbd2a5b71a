"""The training loop: batches in, jitted steps, metrics out, validation every N steps.

The fixed pieces come from `build_run` (f2jax.train.run); steps are compiled ahead of time by
`compile_step` per (task kind, in-batch flag, batch shapes) and cached. Metrics of step n are
fetched after step n+1 has been dispatched, so the host never idles the device while checking
for NaN.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import grain
import jax
import numpy as np
import yaml
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from f2jax.config import RunConfig
from f2jax.data.batch import Batch, HostBatch, PackedBatch
from f2jax.data.pipeline import to_global
from f2jax.encode import Encoder
from f2jax.hf.export import to_host
from f2jax.paths import Path, PathLike, absolute
from f2jax.train.checkpoint import Checkpointer
from f2jax.train.compile_cache import compile_counts, compile_record, count_compiles, setup_compile_cache
from f2jax.train.metrics import MetricsWriter, check_finite
from f2jax.train.paths import checkpoint_dir
from f2jax.train.preemption import PreemptionWatch
from f2jax.train.resume import truncate_metrics, warn_config_changes
from f2jax.train.retrieval_eval import RetrievalAccumulator
from f2jax.train.run import Run, build_run
from f2jax.train.state import TrainState
from f2jax.train.step import CompiledStep, compile_step

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Pending:
    """A dispatched step whose metrics are not yet fetched."""

    step: int
    batch: HostBatch
    metrics: dict[str, jax.Array]
    tokens: tuple[int, int]  # (real, padded) tokens of this process's rows


class Trainer:
    """Trains the `Run` of a `RunConfig`; see `f2jax train --help`."""

    def __init__(self, cfg: RunConfig, run_dir: PathLike):
        count_compiles()
        self._compiles_at_start = compile_counts()  # this run's share of the process's compiles
        setup_compile_cache(cfg.checkpoint.compile_cache, absolute(run_dir))  # before the first compile
        self.run: Run = build_run(cfg, run_dir)
        self._offsets = _packed_offsets_needed(cfg, self.run.model_config.head_dim)
        self.cfg, self.run_dir = cfg, self.run.run_dir
        self.state: TrainState = self.run.init_state()
        self._compiled: dict[Any, CompiledStep] = {}
        # one writer for the run: process 0 (the others log warnings and errors only)
        self.writer = MetricsWriter(self.run_dir, enabled=jax.process_index() == 0)
        self.checkpointer = Checkpointer(checkpoint_dir(self.run_dir), cfg.checkpoint)  # collective
        self.preempted = False  # set when a SIGTERM/preemption notice stopped train() early
        if jax.process_index() == 0:  # epath: a gs:// run directory stays a URL
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    @property
    def total_steps(self) -> int:
        return self.run.total_steps

    @property
    def state_shardings(self) -> TrainState:
        return self.run.state_shardings

    def _to_device(self, arrays: Batch | PackedBatch) -> Batch | PackedBatch:
        """This process's host arrays as global arrays on the mesh; packed rows keep their
        offsets/seqlens only where cuDNN reads them."""
        if isinstance(arrays, PackedBatch) and not self._offsets:
            arrays = arrays.without_offsets()
        return to_global(arrays, self.run.mesh)

    def _step_fn(self, kind: str, batch: Batch, inbatch: bool) -> Any:
        """The compiled step for this kind ('train'/'eval') x in-batch flag x batch shapes."""
        key = (kind, inbatch, jax.tree.structure(batch), tuple(x.shape for x in jax.tree.leaves(batch)))
        if key not in self._compiled:
            self._compiled[key] = compile_step(self.run.program, kind, batch, inbatch)
        return self._compiled[key].fn

    def train(self) -> dict[str, Any]:
        """Run to the configured total from the newest valid checkpoint (else step 0); returns
        the last logged metrics. On SIGTERM/preemption it checkpoints the current step, sets
        `self.preempted` and returns."""
        cfg = self.cfg
        read = grain.ReadOptions(num_threads=cfg.data.num_threads, prefetch_buffer_size=4)
        iterator = iter(self.run.dataset.batches.to_iter_dataset(read))
        start_step = self.resume(iterator)
        self.preempted = False
        bar = tqdm(total=self.total_steps, initial=start_step, desc="train", dynamic_ncols=True,
                   disable=jax.process_index() != 0)
        pending: _Pending | None = None
        last: dict[str, Any] = {}
        tick = time.perf_counter()
        teacher = self.run.program.teacher
        with PreemptionWatch() as watch:
            for step in range(start_step, self.total_steps):
                batch: HostBatch = next(iterator)
                arrays = self._to_device(batch.arrays)
                self.state, metrics = self._step_fn("train", arrays, batch.inbatch)(self.state, arrays, teacher)
                if pending is not None:
                    last = self._finish(pending, tick, bar) or last
                    tick = time.perf_counter()
                pending = _Pending(step, batch, metrics, batch.arrays.token_counts())
                self.preempted = watch.requested(step + 1)
                if self.preempted or self._save_due(step + 1):
                    # check this step's metrics (raises on NaN) before its state is saved
                    last = self._finish(pending, tick, bar) or last
                    pending, tick = None, time.perf_counter()
                    self.save(step + 1, iterator)
                if self.preempted:
                    break
                if cfg.train.eval_every and (step + 1) % cfg.train.eval_every == 0:
                    self.evaluate(step + 1)
        if pending is not None:
            last = self._finish(pending, tick, bar) or last
        bar.close()
        self.checkpointer.wait()  # a failed background save fails the run here, not silently
        return last

    def _save_due(self, step: int) -> bool:
        """Every `checkpoint.every` steps, at each epoch end and at the final step."""
        every = self.cfg.checkpoint.every
        return (bool(every) and step % every == 0) or step % self.run.steps_per_epoch == 0 \
            or step == self.total_steps

    def save(self, step: int, iterator: Any) -> None:
        """Checkpoint the state after `step` steps with the iterator positioned at step `step`."""
        meta = {"seeds": {"train": self.cfg.train.seed, "model_init": self.cfg.model.init_seed},
                "config": self.cfg.to_dict(), "mesh": dict(self.run.mesh.shape),
                "process_count": jax.process_count()}
        self.checkpointer.save(step, self.state, iterator.get_state(), meta)

    def resume(self, iterator: Any) -> int:
        """Restore the newest valid checkpoint onto this run's mesh; returns the step reached."""
        restored = self.checkpointer.restore(self.run.program.state)
        if restored is None:
            return 0
        self.state = restored.state
        iterator.set_state(restored.data)
        warn_config_changes(restored.meta.get("config"), self.cfg.to_dict(), restored.step)
        if jax.process_index() == 0:
            truncate_metrics(self.writer.path, restored.step)
        log.info("resumed from checkpoint step %d of %d (saved on mesh %s, now %s)", restored.step,
                 self.total_steps, restored.meta.get("mesh"), dict(self.run.mesh.shape))
        return restored.step

    def _finish(self, pending: _Pending, tick: float, bar: Any) -> dict[str, Any] | None:
        step, batch, (real, padded) = pending.step, pending.batch, pending.tokens
        values = {k: float(v) for k, v in jax.device_get(pending.metrics).items()}
        check_finite(step + 1, batch.source, values)
        elapsed = max(time.perf_counter() - tick, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.4f}", src=batch.source[:16])
        if (step + 1) % self.cfg.train.log_every and step + 1 != self.total_steps:
            return None
        real, padded = _global_tokens(real, padded)  # every process logs the same steps
        record = {"step": step + 1, "epoch": int(batch.epoch), "source": batch.source,
                  "task": batch.task, **values, "step_time_s": elapsed,
                  "tokens_per_s": real / elapsed, "padded_tokens_per_s": padded / elapsed,
                  **compile_record(self._compiles_at_start)}
        self.writer.write(record)
        return record

    def evaluate(self, step: int) -> dict[str, dict[str, float]]:
        """Per-source validation losses, accuracies and (retrieval sources) nDCG/recall/MRR."""
        sums: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        tasks: dict[str, str] = {}
        retrieval = RetrievalAccumulator()
        dataset = self.run.split("validation")
        for i in range(len(dataset)):
            batch: HostBatch = dataset[i]
            source = batch.source
            if counts.get(source, 0) >= self.cfg.train.eval_batches:
                continue
            arrays = self._to_device(batch.arrays)
            compiled = self._step_fn("eval", arrays, batch.inbatch)
            metrics, reps = compiled(self.state.params, arrays, self.run.program.teacher)
            acc = sums.setdefault(source, {})
            for k, v in jax.device_get(metrics).items():
                acc[k] = acc.get(k, 0.0) + float(v)
            counts[source] = counts.get(source, 0) + 1
            tasks[source] = batch.task
            if batch.inbatch:
                retrieval.add(source, *(to_host(r) for r in reps))
        results = {src: {k: v / counts[src] for k, v in acc.items()} for src, acc in sums.items()}
        for src, values in retrieval.results().items():
            results[src].update(values)
        for src, values in results.items():
            self.writer.write({"step": step, "split": "validation", "source": src, "task": tasks[src], **values})
        return results

    def encoder(self) -> Encoder:
        """An Encoder over the current parameters (shares the device arrays)."""
        from flax import nnx

        model = nnx.merge(self.run.program.graphdef, self.state.params)
        return Encoder(model, self.run.tokenizer, max_length=self.cfg.data.max_length, mesh=self.run.mesh)

    def export(self, out_dir: PathLike) -> Path:
        return self.encoder().save_pretrained(out_dir)

    def close(self) -> None:
        try:
            self.checkpointer.close()
        finally:
            self.writer.close()



def _packed_offsets_needed(cfg: RunConfig, head_dim: int) -> bool:
    """Whether the student's (or a co-hosted teacher's) packed rows reach cuDNN here."""
    from f2jax.model.attention import packed_uses_offsets

    sections = [cfg.model, *([cfg.teacher] if cfg.teacher.path else [])]
    return cfg.data.packing and any(packed_uses_offsets(s.attention, s.dtype, head_dim) for s in sections)


def _global_tokens(real: int, padded: int) -> tuple[int, int]:
    """(real, padded) tokens of the step summed over processes, each of which holds its rows.
    A collective: every process calls it at the same steps, from the main thread."""
    if jax.process_count() == 1:
        return real, padded
    counts = np.asarray(multihost_utils.process_allgather(np.array([real, padded], np.int32)))
    total = counts.reshape(-1, 2).sum(axis=0, dtype=np.int64)
    return int(total[0]), int(total[1])
