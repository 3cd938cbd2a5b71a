"""Export a saved training step as a Hugging Face + sentence-transformers directory.

Only the parameters item is restored (no optimiser moments), sharded over all devices along the
`fsdp` axis so the devices hold one copy between them; the writer then gathers one stacked
parameter at a time. Host memory therefore never holds a second full copy of the model.
"""

from __future__ import annotations

import logging

from flax import nnx

from f2jax.config import RunConfig, config_from_dict
from f2jax.encode import Encoder
from f2jax.model.qwen3 import abstract_model
from f2jax.paths import Path, PathLike
from f2jax.sharding import make_mesh, param_shardings
from f2jax.tokenizer import load_tokenizer
from f2jax.train import setup
from f2jax.train.checkpoint import Checkpointer, CheckpointError
from f2jax.train.paths import checkpoint_dir
from f2jax.train.state import TrainState, abstract_like

log = logging.getLogger(__name__)


def checkpoint_config(checkpointer: Checkpointer, step: int | None) -> tuple[int, RunConfig]:
    """(step, the run's resolved config as stored with that checkpoint)."""
    restored = checkpointer.restore(None, step=step)
    if restored is None:
        raise CheckpointError(f"no valid checkpoint in {checkpointer.directory}")
    return restored.step, config_from_dict(restored.meta["config"])


def encoder_from_checkpoint(run_dir: PathLike, step: int | None = None) -> tuple[int, Encoder]:
    """(step, an Encoder over that checkpoint's parameters); default: the newest valid step."""
    checkpointer = Checkpointer(checkpoint_dir(run_dir), read_only=True)
    try:
        if not checkpointer.steps():
            raise CheckpointError(f"{run_dir}: no checkpoints in {checkpointer.directory}")
        step, cfg = checkpoint_config(checkpointer, step)
        tokenizer = load_tokenizer(setup.tokenizer_dir(cfg))
        qcfg = setup.model_config(cfg, vocab_size=len(tokenizer))
        opts = setup.model_options(cfg.model, "model")
        mesh = make_mesh(1, -1, 1)
        graphdef, abstract_state = abstract_model(qcfg, opts)
        shapes = nnx.to_pure_dict(abstract_state)
        target = TrainState(params=abstract_like(shapes, param_shardings(abstract_state, mesh)))
        restored = checkpointer.restore(target, step=step)
        model = nnx.merge(graphdef, restored.state.params)
    finally:
        checkpointer.manager.close()
    return step, Encoder(model, tokenizer, max_length=cfg.data.max_length, mesh=mesh)


def export_checkpoint(
    run_dir: PathLike, out_dir: str | Path, step: int | None = None
) -> tuple[int, Path]:
    """Write step `step` (default: the newest valid one) of `run_dir` to `out_dir`."""
    step, encoder = encoder_from_checkpoint(run_dir, step)
    out = encoder.save_pretrained(out_dir)
    log.info("exported checkpoint step %d of %s to %s", step, run_dir, out)
    return step, out
