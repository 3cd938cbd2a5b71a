"""A pruned student distilled from its teacher on the demo data moves towards the teacher."""

from __future__ import annotations

import numpy as np

from f2jax.config import load_config
from f2jax.prune.prune import Calibration, prune_checkpoint
from f2jax.train.metrics import read_metrics
from f2jax.train.trainer import Trainer

from .conftest import DATA


def test_distillation_lowers_the_student_teacher_mse(trained, demo_tokenized, tmp_path):
    student = tmp_path / "student"
    prune_checkpoint(trained, student, calibration=Calibration(data=demo_tokenized, batches=2, batch_size=8,
                                                               max_length=64),
                     dims={"hidden_size": 32, "num_hidden_layers": 3, "intermediate_size": 64})
    overrides = [f"model.path={student}", "model.init=null", *DATA, f"data.path={demo_tokenized}",
                 f"teacher.path={trained}", "teacher.dtype=float32", "teacher.param_dtype=float32",
                 "teacher.weight=1.0", "train.steps=30", "train.lr=1e-3", "train.warmup_steps=3",
                 "train.eval_every=30", "train.eval_batches=2"]
    trainer = Trainer(load_config("configs/demo.yaml", overrides), tmp_path / "run")
    trainer.evaluate(0)
    trainer.train()
    trainer.close()
    val = [r for r in read_metrics(tmp_path / "run") if r.get("split") == "validation"]
    before = np.mean([r["loss_kd"] for r in val if r["step"] == 0])
    after = np.mean([r["loss_kd"] for r in val if r["step"] == 30])
    assert after < 0.8 * before
