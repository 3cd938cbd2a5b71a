"""`prune_checkpoint`: score on calibration data, cut to the target shape (optionally through
intermediate shapes, re-scoring between steps), write a Qwen3 + sentence-transformers directory."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from f2jax.errors import UserInputError
from f2jax.model.config import Qwen3Config
from f2jax.paths import Path, as_path, existing
from f2jax.prune.calibration import calibration_batches
from f2jax.prune.forward import Forward
from f2jax.prune.importance import Scores, drop_loss, score
from f2jax.prune.surgery import Plan, Target, apply_plan, intermediate_targets, make_plan, resolve_target
from f2jax.prune.weights import read_checkpoint, write_model_dir
from f2jax.storage import local_copy

log = logging.getLogger(__name__)
DEPTH_METRICS = ("block_influence", "drop_loss")
REPORT_FILE = "prune_report.json"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Where calibration batches come from and how many (see `calibration_batches`)."""

    data: str | Path | None = None
    batches: int = 64
    batch_size: int = 16
    max_length: int = 512
    eval_batches: int = 8  # held-out batches for depth_metric='drop_loss'
    negatives: bool = False  # also score on the hard negatives (more tokens, same distribution)


def data_mesh() -> Mesh:
    """All devices on one 'data' axis: calibration rows are sharded, weights replicated."""
    return Mesh(np.array(jax.devices()), ("data",))


def identity_plan(cfg: Qwen3Config) -> Plan:
    n = cfg.num_hidden_layers
    return Plan(np.arange(n), np.arange(cfg.hidden_size), [np.arange(cfg.intermediate_size)] * n,
                [np.arange(cfg.num_attention_heads)] * n)


def _scores_for(forward: Forward, model: Path, calib: Calibration, depth_metric: str) -> Scores:
    if calib.data is None:
        raise UserInputError("--calibration is required (no --scores file to reuse for this step)")
    batches = calibration_batches(calib.data, model, batches=calib.batches, batch_size=calib.batch_size,
                                  max_length=calib.max_length)
    scores = score(forward, batches, negatives=calib.negatives)
    if depth_metric == "drop_loss":
        held = calibration_batches(calib.data, model, batches=calib.eval_batches, batch_size=calib.batch_size,
                                   max_length=calib.max_length, split="validation")
        base, scores.drop_loss = drop_loss(forward, held)
        scores.meta["heldout_loss"] = base
    scores.meta["calibration"] = str(calib.data)
    return scores


def prune_checkpoint(model: str | Path, output: str | Path, *, calibration: Calibration | None = None,
                     preset: str | None = None, dims: dict[str, int | None] | None = None,
                     scores_file: str | Path | None = None, steps: int = 1,
                     depth_metric: str = "block_influence", mesh: Mesh | None = None) -> dict[str, Any]:
    """Prune `model` to the preset/dims target and write it to `output`; returns the report.

    `scores_file`: reused when it exists (scores of the source model, first step only), else
    the first step's scores are written there."""
    t0 = time.perf_counter()
    model, calib = local_copy(existing(model, "MODEL")), calibration or Calibration()
    if depth_metric not in DEPTH_METRICS:
        raise UserInputError(f"--depth-metric must be one of {DEPTH_METRICS}, got {depth_metric!r}")
    cfg, tensors = read_checkpoint(model)
    source = cfg
    target = resolve_target(cfg, preset, **(dims or {}))
    reuse = scores_file is not None and as_path(scores_file).exists()
    preloaded = Scores.load(scores_file, cfg) if reuse else None
    mesh = mesh or data_mesh()
    history = []
    for k, shape in enumerate(intermediate_targets(cfg, target, steps)):
        if shape == Target.of(cfg):
            plan = identity_plan(cfg)
        else:
            if k == 0 and preloaded is not None:
                scores = preloaded
            else:
                scores = _scores_for(Forward(cfg, tensors, mesh), model, calib, depth_metric)
                if k == 0 and scores_file is not None:
                    log.info("scores written to %s", scores.save(scores_file))
            plan = make_plan(cfg, scores, shape, depth_metric)
        cfg, tensors = apply_plan(cfg, tensors, plan)
        history.append({"step": k + 1, **dataclasses.asdict(shape), "params": cfg.num_params(),
                        **plan.summary()})
        log.info("prune step %d/%d: %s, %d params", k + 1, steps, dataclasses.asdict(shape), cfg.num_params())
    out = write_model_dir(output, cfg, tensors, model)
    report = {"source": str(model), "source_params": source.num_params(), "params": cfg.num_params(),
              "config": cfg.to_hf_dict(), "steps": history, "depth_metric": depth_metric,
              "scores_reused": reuse, "seconds": time.perf_counter() - t0}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
