"""How long a save blocks the training loop (async vs sync), and kill-and-resume trials.

Run: `f2jax bench checkpoint [--model demo|0.6b] [--trials N --data DIR]`.
Numbers, not assertions: the tests check correctness, this measures cost.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np

from f2jax.config import CheckpointSection, config_from_dict, dump_config
from f2jax.model import abstract_model
from f2jax.model.config import Qwen3Config
from f2jax.model.options import ModelOptions
from f2jax.model.presets import QWEN3_06B
from f2jax.paths import Path
from f2jax.sharding import make_mesh, param_shardings
from f2jax.train import setup
from f2jax.train.checkpoint import Checkpointer
from f2jax.train.optim import make_optimizer, make_schedule
from f2jax.train.state import TrainState, init_state, state_shardings

# The demo's model (configs/demo.yaml) and the kill trials' tiny one, as `model.init` dicts.
DEMO_SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 32}
TRIAL_SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 256}


def _state(init: dict[str, Any]) -> TrainState:
    """A real (random) train state {params, AdamW moments, step} of this shape on all devices."""
    qcfg = Qwen3Config.from_hf_dict(
        {"model_type": "qwen3", "vocab_size": 151_669, "max_position_embeddings": 2048, **init}, source="bench"
    )
    mesh = make_mesh(1, -1, 1)
    _, params = setup.build_params(qcfg, ModelOptions(), mesh, path=None, seed=0)
    _, abstract = abstract_model(qcfg, ModelOptions())
    tx = make_optimizer(make_schedule("constant", peak_lr=1e-4, warmup_steps=0, total_steps=10))
    return init_state(params, tx, state_shardings(params, param_shardings(abstract, mesh), tx, mesh))


def time_saves(model: str = "demo", saves: int = 3) -> dict[str, Any]:
    """Seconds the caller is blocked per `save` call, async vs sync (first save excluded)."""
    init = {k: v for k, v in QWEN3_06B.items() if k != "vocab_size"} if model == "0.6b" else DEMO_SHAPE
    state = _state(init)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    out: dict[str, Any] = {"model": model, "state_GiB": nbytes / 2**30}
    for mode in (True, False):
        root = Path(tempfile.mkdtemp(prefix="f2jax_ckpt_bench_"))
        ckpt = Checkpointer(root, CheckpointSection(keep=2, async_save=mode))
        blocked, total = [], []
        for i in range(saves + 1):
            start = time.perf_counter()
            ckpt.save(i + 1, state.replace(step=state.step + i + 1), {"next_index": i + 1}, {})
            blocked.append(ckpt.last_blocked_s)
            ckpt.wait()
            total.append(time.perf_counter() - start)
        ckpt.close()
        shutil.rmtree(root, ignore_errors=True)
        key = "async" if mode else "sync"
        out[f"{key}_blocked_s"] = float(np.median(blocked[1:]))
        out[f"{key}_total_s"] = float(np.median(total[1:]))
    return out


def kill_trials(
    data_dir: str, trials: int = 10, steps: int = 12, every: int = 4, seed: int = 0
) -> list[dict[str, Any]]:
    """SIGKILL `f2jax train` at random steps after the first checkpoint, rerun, compare losses
    with an uninterrupted run: steps lost (redone) and the largest per-step loss difference."""
    root = Path(tempfile.mkdtemp(prefix="f2jax_kill_bench_"))
    config = root / "config.yaml"
    dump_config(config_from_dict({
        "model": {"init": TRIAL_SHAPE},
        "data": {"path": str(data_dir), "max_length": 64, "buckets": [64], "global_batch_size": 8},
        "train": {"steps": steps, "warmup_steps": 1, "log_every": 1, "eval_every": 0},
        "checkpoint": {"every": every},
    }), config)

    def cmd(run: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "f2jax.cli",
            "train",
            "--config",
            str(config),
            "--run-dir",
            str(run),
            "--export",
            str(run / "export"),
        ]

    def losses(run: Path) -> dict[int, float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r["loss"] for r in map(json.loads, lines)}

    subprocess.run(cmd(root / "reference"), check=True, capture_output=True)
    reference = losses(root / "reference")
    rng, results = random.Random(seed), []
    for trial in range(trials):
        run, kill_at = root / f"trial{trial}", rng.randint(every + 1, steps - 1)
        run.mkdir()
        proc = subprocess.Popen(cmd(run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            done = len((run / "metrics.jsonl").read_text().splitlines()) if (run / "metrics.jsonl").exists() else 0
            if done >= kill_at:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait()
        reached = max(losses(run))
        rerun = subprocess.run(cmd(run), capture_output=True, text=True)
        resumed = (
            int(rerun.stderr.split("resumed from checkpoint step ")[1].split()[0])
            if "resumed from checkpoint step" in rerun.stderr
            else 0
        )
        final = losses(run)
        results.append(
            {
                "kill_after_step": reached,
                "resumed_from": resumed,
                "steps_lost": reached - resumed,
                "max_loss_diff": max(abs(final[s] - reference[s]) for s in reference),
                "rerun_ok": rerun.returncode == 0 and sorted(final) == sorted(reference),
            }
        )
    shutil.rmtree(root, ignore_errors=True)
    return results
