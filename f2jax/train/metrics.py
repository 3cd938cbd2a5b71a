"""Where run metrics go: metrics.jsonl (one JSON object per logged step) and TensorBoard.

The run directory may be a URL (`gs://bucket/run`): paths are `etils.epath` paths, never
`pathlib.Path`, and TensorBoard gets the URL string as is (tensorboardX writes to gs:// when
gcsfs / tensorflow-io is installed).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from f2jax.errors import F2JaxError
from f2jax.paths import PathLike, as_path


class NonFiniteLossError(F2JaxError, FloatingPointError):
    """A NaN/Inf loss: the run stops and names the step and source (a diverged run, usually the
    learning rate or the data, so the CLI reports it in one line)."""

    kind = "non-finite loss"


def check_finite(step: int, source: str, metrics: dict[str, float]) -> None:
    bad = {k: v for k, v in metrics.items() if k.startswith("loss") and not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(f"non-finite loss at step {step} (source {source!r}): {bad}")


class MetricsWriter:
    """Appends to run_dir/metrics.jsonl and writes TensorBoard scalars (process 0 only)."""

    def __init__(self, run_dir: PathLike, enabled: bool = True):
        self.enabled = enabled
        self.path = as_path(run_dir) / "metrics.jsonl"
        self.tensorboard_dir = os.fspath(as_path(run_dir) / "tensorboard")
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(self.tensorboard_dir)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        split = record.get("split", "train")
        step = int(record["step"])
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                self._tb.add_scalar(f"{split}/{key}", value, step)
                if "source" in record and key.startswith(("loss", "acc")):
                    self._tb.add_scalar(f"{split}/{record['source']}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: PathLike) -> list[dict[str, Any]]:
    path = as_path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def source_tasks(records: list[dict[str, Any]]) -> dict[str, str]:
    """Task type per source, from the records that name one (training and validation records do)."""
    return {r["source"]: r["task"] for r in records if "source" in r and "task" in r}


def chance_top1(records: list[dict[str, Any]], negatives: dict[str, int] | None = None) -> dict[str, float]:
    """Per source, the top-1 accuracy (`acc_hard`) of a random ranking of its positive among its
    hard negatives: 1 / (1 + negatives of its task type), `negatives` being the run's `data.negatives`."""
    from f2jax.data.tasks import top1_chance

    return {source: top1_chance(task, negatives) for source, task in source_tasks(records).items()}
