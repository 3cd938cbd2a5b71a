"""The training loop: batches in, jitted steps, metrics out, validation every N steps.

Steps are compiled ahead of time per (task kind, batch shapes) and cached; the first compile
of each logs the compiled memory per device. Metrics of step n are fetched after step n+1 has
been dispatched, so the host never idles the device while checking for NaN.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import grain
import jax
from tqdm.auto import tqdm

from f2jax.config import RunConfig, dump_config
from f2jax.data.pipeline import ARRAY_KEYS as DATA_ARRAY_KEYS
from f2jax.data.pipeline import TEACHER_KEYS as DATA_TEACHER_KEYS
from f2jax.data.pipeline import make_dataset, to_global
from f2jax.encode import Encoder
from f2jax.hf.export import to_host
from f2jax.sharding import activation_sharding, batch_sharding, param_shardings
from f2jax.tokenizer import load_tokenizer
from f2jax.train import setup
from f2jax.train.checkpoint import Checkpointer, abstract_like
from f2jax.train.metrics import MetricsWriter, check_finite
from f2jax.train.optim import make_optimizer, make_schedule, run_warmup_steps
from f2jax.train.preemption import PreemptionWatch
from f2jax.train.resume import check_run_dir_config, truncate_metrics, warn_config_changes
from f2jax.train.retrieval_eval import RetrievalAccumulator
from f2jax.train.state import init_state, state_shardings
from f2jax.train.step import LossSpec, batch_keys, eval_step, train_step

log = logging.getLogger(__name__)


def _token_counts(batch: dict[str, Any]) -> tuple[int, int]:
    """(real, padded) tokens of this process's slice."""
    masks = [batch[k] for k in ("query_mask", "passage_mask", "negative_mask")]
    return int(sum(m.sum() for m in masks)), int(sum(m.size for m in masks))


class Trainer:
    """Builds a run from a `RunConfig` and trains it; see `f2jax train --help`."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path):
        setup.check_static(cfg)
        self.cfg, self.run_dir = cfg, Path(run_dir)
        ckpt_dir = self.run_dir / "checkpoints"
        has_checkpoints = ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())
        check_run_dir_config(self.run_dir, cfg.to_dict(), has_checkpoints, cfg.checkpoint.allow_config_change)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.mesh = setup.build_mesh(cfg)
        tok_dir = setup.tokenizer_dir(cfg)
        self.tokenizer = load_tokenizer(tok_dir)
        self.model_config = setup.model_config(cfg, vocab_size=len(self.tokenizer))
        self.mrl_dims = setup.resolve_mrl_dims(cfg, self.model_config.hidden_size)
        teacher_config = setup.check_teacher(cfg, self.model_config)
        self.data_dir = setup.prepare_data(cfg, self.run_dir, tok_dir)
        setup.check_teacher_embeddings(cfg, self.data_dir, self.model_config)
        self.dataset = self._dataset("train")
        steps_per_epoch = self.dataset.steps_per_epoch
        self.total_steps = cfg.train.steps or cfg.train.epochs * steps_per_epoch
        self.schedule = make_schedule(cfg.train.schedule, peak_lr=cfg.train.lr,
                                      warmup_steps=run_warmup_steps(cfg.train.warmup_steps, self.total_steps),
                                      total_steps=self.total_steps, min_lr=cfg.train.min_lr)
        self.tx = make_optimizer(self.schedule, b1=cfg.train.b1, b2=cfg.train.b2,
                                 weight_decay=cfg.train.weight_decay, clip_norm=cfg.train.clip_norm)
        self.opts = setup.model_options(cfg.model, "model")
        self.graphdef, params = setup.build_params(self.model_config, self.opts, self.mesh,
                                                   path=cfg.model.path, seed=cfg.model.init_seed)
        shardings = state_shardings(params, param_shardings(params, self.mesh), self.tx, self.mesh)
        self.state_shardings = shardings
        self.state = init_state(params, self.tx, shardings)
        self.teacher_graphdef, self.teacher_params = None, None
        if teacher_config is not None:
            topts = setup.model_options(cfg.teacher, "teacher")
            self.teacher_graphdef, self.teacher_params = setup.build_params(
                teacher_config, topts, self.mesh, path=cfg.teacher.path, seed=0)
        self.spec = LossSpec(temperature=cfg.train.temperature, mrl_dims=self.mrl_dims,
                             passage_gradient=cfg.train.inbatch_passage_gradient,
                             kd_weight=cfg.teacher.weight, grad_accum=cfg.train.grad_accum)
        self._compiled: dict[Any, Any] = {}
        self.writer = MetricsWriter(self.run_dir, enabled=jax.process_index() == 0)
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", cfg.checkpoint)
        self.preempted = False  # set when a SIGTERM/preemption notice stopped train() early
        if jax.process_index() == 0:
            dump_config(cfg, self.run_dir / "config.yaml")
        log.info("run %s: %d steps (%d per epoch), mesh %s, model %.1fM parameters", self.run_dir,
                 self.total_steps, steps_per_epoch, dict(self.mesh.shape),
                 self.model_config.num_params() / 1e6)

    def _dataset(self, split: str) -> Any:
        d = self.cfg.data
        return make_dataset(self.data_dir, global_batch_size=d.global_batch_size, seed=self.cfg.train.seed,
                            max_length=d.max_length, buckets=d.buckets, negatives=d.negatives,
                            split=split, instructions=d.instructions, holdout=d.holdout,
                            max_rows_per_source=d.max_rows_per_source,
                            teacher_embeddings=self.cfg.teacher.embeddings)

    def _teacher(self) -> Any:
        return self.teacher_params

    def _step_fn(self, kind: str, batch: dict[str, jax.Array]) -> Any:
        """The compiled step for this kind ('train'/'eval') × in-batch flag × shapes."""
        inbatch = bool(batch["inbatch"])
        keys = batch_keys(batch)
        arrays = {k: batch[k] for k in keys}
        key = (kind, inbatch, tuple((k, v.shape) for k, v in arrays.items()))
        if key not in self._compiled:
            batch_sh = {k: batch_sharding(self.mesh, v.ndim) for k, v in arrays.items()}
            teacher_sh = None
            if self.teacher_params is not None:
                teacher_sh = jax.tree.map(lambda x: x.sharding, self.teacher_params)
            teacher = None if self.teacher_graphdef is None else self.teacher_graphdef
            if kind == "train":
                fn = functools.partial(self._train_fn, teacher_graphdef=teacher, inbatch=inbatch)
                jitted = jax.jit(fn, in_shardings=(self.state_shardings, batch_sh, teacher_sh),
                                 out_shardings=(self.state_shardings, None), donate_argnums=0)
                with activation_sharding(self.mesh):
                    lowered = jitted.lower(self.state, arrays, self._teacher())
            else:
                fn = functools.partial(self._eval_fn, teacher_graphdef=teacher, inbatch=inbatch)
                jitted = jax.jit(fn, in_shardings=(self.state_shardings["params"], batch_sh, teacher_sh))
                with activation_sharding(self.mesh):
                    lowered = jitted.lower(self.state["params"], arrays, self._teacher())
            start = time.perf_counter()
            compiled = lowered.compile()
            mem = compiled.memory_analysis()
            if mem is not None:
                total = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                         + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
                log.info("compiled %s step %s in %.1fs: %.1f MiB per device (args %.1f, temp %.1f)",
                         kind, [v.shape for v in arrays.values()], time.perf_counter() - start,
                         total / 2**20, mem.argument_size_in_bytes / 2**20, mem.temp_size_in_bytes / 2**20)
            self._compiled[key] = compiled
        return self._compiled[key], arrays

    def _teacher_tuple(self, teacher_graphdef: Any, teacher_params: Any) -> Any:
        return None if teacher_graphdef is None else (teacher_graphdef, teacher_params)

    def _train_fn(self, state: Any, batch: Any, teacher_params: Any, *, teacher_graphdef: Any,
                  inbatch: bool) -> Any:
        new_state, metrics = train_step(
            state, batch, self._teacher_tuple(teacher_graphdef, teacher_params), graphdef=self.graphdef,
            tx=self.tx, spec=self.spec, inbatch=inbatch)
        return new_state, {**metrics, "lr": self.schedule(state["step"])}

    def _eval_fn(self, params: Any, batch: Any, teacher_params: Any, *, teacher_graphdef: Any,
                 inbatch: bool) -> Any:
        return eval_step(params, batch, self._teacher_tuple(teacher_graphdef, teacher_params),
                         graphdef=self.graphdef, spec=self.spec, inbatch=inbatch)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = to_global(batch, self.mesh)
        local = (*DATA_ARRAY_KEYS, *DATA_TEACHER_KEYS)
        return {**out, **{k: batch[k] for k in batch if k not in local}}

    def train(self, start_step: int | None = None, iterator: Any = None,
              on_step: Any = None) -> dict[str, Any]:
        """Run to the configured total; returns the last logged metrics.

        Without `start_step` it resumes from the newest valid checkpoint (else step 0). On
        SIGTERM/preemption it checkpoints the current step, sets `self.preempted` and returns.
        """
        cfg = self.cfg
        if iterator is None:
            read = grain.ReadOptions(num_threads=cfg.data.num_threads, prefetch_buffer_size=4)
            iterator = iter(self.dataset.to_iter_dataset(read))
        if start_step is None:
            start_step = self.resume(iterator)
        self.preempted = False
        bar = tqdm(total=self.total_steps, initial=start_step, desc="train", dynamic_ncols=True,
                   disable=jax.process_index() != 0)
        pending: tuple[int, dict[str, Any], Any, float, tuple[int, int]] | None = None
        last: dict[str, Any] = {}
        tick = time.perf_counter()
        with PreemptionWatch() as watch:
            for step in range(start_step, self.total_steps):
                batch = next(iterator)
                compiled, arrays = self._step_fn("train", self.to_device(batch))
                self.state, metrics = compiled(self.state, arrays, self._teacher())
                if pending is not None:
                    last = self._finish(pending, tick, bar) or last
                    tick = time.perf_counter()
                pending = (step, batch, metrics, time.perf_counter(), _token_counts(batch))
                if on_step is not None:
                    on_step(step + 1, iterator)
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
        return (bool(every) and step % every == 0) or step % self.dataset.steps_per_epoch == 0 \
            or step == self.total_steps

    def save(self, step: int, iterator: Any) -> None:
        """Checkpoint the state after `step` steps with the iterator positioned at step `step`."""
        meta = {"seeds": {"train": self.cfg.train.seed, "model_init": self.cfg.model.init_seed},
                "config": self.cfg.to_dict(), "mesh": dict(self.mesh.shape),
                "process_count": jax.process_count()}
        self.checkpointer.save(step, self.state, iterator.get_state(), meta)

    def resume(self, iterator: Any) -> int:
        """Restore the newest valid checkpoint onto this run's mesh; returns the step reached."""
        restored = self.checkpointer.restore(abstract_like(self.state, self.state_shardings))
        if restored is None:
            return 0
        self.state = restored.state
        iterator.set_state(restored.data)
        warn_config_changes(restored.meta.get("config"), self.cfg.to_dict(), restored.step)
        if jax.process_index() == 0:
            truncate_metrics(self.writer.path, restored.step)
        log.info("resumed from checkpoint step %d of %d (saved on mesh %s, now %s)", restored.step,
                 self.total_steps, restored.meta.get("mesh"), dict(self.mesh.shape))
        return restored.step

    def _finish(self, pending: Any, tick: float, bar: Any) -> dict[str, Any] | None:
        step, batch, metrics, _, (real, padded) = pending
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        check_finite(step + 1, batch["source"], values)
        elapsed = max(time.perf_counter() - tick, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.4f}", src=batch["source"][:16])
        if (step + 1) % self.cfg.train.log_every and step + 1 != self.total_steps:
            return None
        procs = jax.process_count()
        record = {"step": step + 1, "epoch": int(batch["epoch"]), "source": batch["source"],
                  "task": batch["task"], **values, "step_time_s": elapsed,
                  "tokens_per_s": real * procs / elapsed, "padded_tokens_per_s": padded * procs / elapsed}
        self.writer.write(record)
        return record

    def evaluate(self, step: int) -> dict[str, dict[str, float]]:
        """Per-source validation losses, accuracies and (retrieval sources) nDCG/recall/MRR."""
        sums: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        retrieval = RetrievalAccumulator()
        dataset = self._dataset("validation")
        for i in range(len(dataset)):
            batch = dataset[i]
            source = batch["source"]
            if counts.get(source, 0) >= self.cfg.train.eval_batches:
                continue
            compiled, arrays = self._step_fn("eval", self.to_device(batch))
            metrics, reps = compiled(self.state["params"], arrays, self._teacher())
            acc = sums.setdefault(source, {})
            for k, v in jax.device_get(metrics).items():
                acc[k] = acc.get(k, 0.0) + float(v)
            counts[source] = counts.get(source, 0) + 1
            if batch["inbatch"]:
                retrieval.add(source, *(to_host(r) for r in reps))
        results = {src: {k: v / counts[src] for k, v in acc.items()} for src, acc in sums.items()}
        for src, values in retrieval.results().items():
            results[src].update(values)
        for src, values in results.items():
            self.writer.write({"step": step, "split": "validation", "source": src, **values})
        return results

    def encoder(self) -> Encoder:
        """An Encoder over the current parameters (shares the device arrays)."""
        from flax import nnx

        model = nnx.merge(self.graphdef, self.state["params"])
        return Encoder(model, self.tokenizer, max_length=self.cfg.data.max_length, mesh=self.mesh)

    def export(self, out_dir: str | Path) -> Path:
        return self.encoder().save_pretrained(out_dir)

    def close(self) -> None:
        try:
            self.checkpointer.close()
        finally:
            self.writer.close()

