"""`build_run`: a `RunConfig` in, every fixed piece of a run out, as one frozen `Run`.

Everything that can fail on a bad config fails here, before anything compiles: config checks,
mesh, tokenizer, data (tokenised first when needed), teacher, schedule and optimiser. The
`Run` holds no training progress; the Trainer owns the state, the loop, saving and
evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
from etils import epath
from flax import nnx
from jax.sharding import Mesh

from f2jax.config import RunConfig
from f2jax.data.pipeline import DataSpec, StepDataset, make_dataset
from f2jax.model.config import Qwen3Config
from f2jax.model.qwen3 import ModelOptions, abstract_model
from f2jax.paths import Path, PathLike, as_path
from f2jax.sharding import param_shardings
from f2jax.tokenizer import load_tokenizer
from f2jax.train import setup
from f2jax.train.optim import make_optimizer, make_schedule, run_warmup_steps
from f2jax.train.resume import check_run_dir_config
from f2jax.train.state import TrainState, abstract_state, init_state, state_shardings
from f2jax.train.step import LossSpec, StepProgram

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Run:
    """The fixed pieces of one training run (see module docstring)."""

    cfg: RunConfig
    run_dir: epath.Path  # local or a URL (gs://...); see f2jax.train.paths
    mesh: Mesh
    tokenizer: Any
    model_config: Qwen3Config
    model_options: ModelOptions
    data_dir: Path
    dataset: StepDataset  # the train split; element g is step g's `HostBatch`
    total_steps: int
    program: StepProgram  # graphdef, optimiser, loss spec, abstract state, teacher

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset.steps_per_epoch

    @property
    def state_shardings(self) -> TrainState:
        return jax.tree.map(lambda x: x.sharding, self.program.state)

    def init_state(self) -> TrainState:
        """Step 0 (allocates): parameters from `model.path` or freshly initialised from
        `model.init_seed`, fresh optimiser moments, on the run's shardings."""
        m = self.cfg.model
        _, params = setup.build_params(self.model_config, self.model_options, self.mesh, path=m.path,
                                       seed=m.init_seed)
        return init_state(params, self.program.tx, self.state_shardings)

    def split(self, name: str) -> StepDataset:
        """The run's 'train' or 'validation' dataset."""
        return self.dataset if name == "train" else run_dataset(self.cfg, self.data_dir, name, self.mesh)


def data_spec(cfg: RunConfig, mesh: Mesh, split: str = "train") -> DataSpec:
    """The run's `DataSpec`: the data section, and with packing, rows per process a multiple
    of this process's share of the batch shards (data × fsdp, so the packed batch dim shards)
    and for the train split one set of rows per GradCache micro-batch (`train.grad_accum`)."""
    d = cfg.data
    packing = {}
    if d.packing:
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        packing = {"pack_length": d.pack_length or d.max_length, "row_multiple": max(1, shards // jax.process_count()),
                   "micro": cfg.train.grad_accum if split == "train" else 1}  # the eval step takes whole batches
    return DataSpec(global_batch_size=d.global_batch_size, seed=cfg.train.seed, max_length=d.max_length,
                    buckets=d.buckets, negatives=d.negatives, instructions=d.instructions, holdout=d.holdout,
                    max_rows_per_source=d.max_rows_per_source, teacher_embeddings=cfg.teacher.embeddings, **packing)


def run_dataset(cfg: RunConfig, data_dir: Path, split: str, mesh: Mesh) -> StepDataset:
    return make_dataset(data_dir, data_spec(cfg, mesh, split), split=split)


def has_checkpoints(run_dir: epath.Path) -> bool:
    ckpt_dir = run_dir / "checkpoints"
    return ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())


def build_run(cfg: RunConfig, run_dir: PathLike) -> Run:
    """Check `cfg` and build its `Run` (tokenising data and loading a co-hosted teacher)."""
    setup.check_static(cfg)
    run_dir = as_path(run_dir)
    check_run_dir_config(run_dir, cfg.to_dict(), has_checkpoints(run_dir), cfg.checkpoint.allow_config_change)
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = setup.build_mesh(cfg)
    tok_dir = setup.tokenizer_dir(cfg)
    tokenizer = load_tokenizer(tok_dir)
    model_config = setup.model_config(cfg, vocab_size=len(tokenizer))
    mrl_dims = setup.resolve_mrl_dims(cfg, model_config.hidden_size)
    teacher_config = setup.check_teacher(cfg, model_config)
    data_dir = setup.prepare_data(cfg, run_dir, tok_dir)
    setup.check_teacher_embeddings(cfg, data_dir, model_config)
    dataset = run_dataset(cfg, data_dir, "train", mesh)
    t = cfg.train
    total_steps = t.steps or t.epochs * dataset.steps_per_epoch
    schedule = make_schedule(t.schedule, peak_lr=t.lr, warmup_steps=run_warmup_steps(t.warmup_steps, total_steps),
                             total_steps=total_steps, min_lr=t.min_lr)
    tx = make_optimizer(schedule, b1=t.b1, b2=t.b2, weight_decay=t.weight_decay, clip_norm=t.clip_norm)
    opts = setup.model_options(cfg.model, "model")
    graphdef, abstract = abstract_model(model_config, opts)
    shapes = nnx.to_pure_dict(abstract)
    shardings = state_shardings(shapes, param_shardings(abstract, mesh), tx, mesh)
    teacher_graphdef, teacher_params = None, None
    if teacher_config is not None:
        teacher_graphdef, teacher_params = setup.build_params(
            teacher_config, setup.model_options(cfg.teacher, "teacher"), mesh, path=cfg.teacher.path, seed=0)
    loss = LossSpec(temperature=t.temperature, mrl_dims=mrl_dims, passage_gradient=t.inbatch_passage_gradient,
                    kd_weight=cfg.teacher.weight, grad_accum=t.grad_accum)
    program = StepProgram(mesh=mesh, graphdef=graphdef, tx=tx, schedule=schedule, loss=loss,
                          state=abstract_state(shapes, tx, shardings), teacher_graphdef=teacher_graphdef,
                          teacher=teacher_params)
    log.info("run %s: %d steps (%d per epoch), mesh %s, model %.1fM parameters", run_dir, total_steps,
             dataset.steps_per_epoch, dict(mesh.shape), model_config.num_params() / 1e6)
    return Run(cfg=cfg, run_dir=run_dir, mesh=mesh, tokenizer=tokenizer, model_config=model_config,
               model_options=opts, data_dir=data_dir, dataset=dataset, total_steps=total_steps, program=program)
