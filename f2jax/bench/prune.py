"""Pruning measurements: `f2jax bench prune memory|quality`.

memory: prune time and peak host RSS (ru_maxrss of a fresh subprocess per preset) for a random
Qwen3-0.6B-shaped checkpoint (`f2jax.bench.synth`, no torch) cut to each preset.
quality: on the demo data, held-out top-1 (acc_hard) and nDCG@10 of a trained teacher, its
pruned student before and after distillation, and a random student trained the same steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from f2jax.paths import Path

TEACHER_SHAPE = ("{hidden_size: 128, intermediate_size: 256, num_hidden_layers: 6, num_attention_heads: 4,"
                 " num_key_value_heads: 2, head_dim: 32, max_position_embeddings: 256}")
STUDENT = {"hidden_size": 64, "num_hidden_layers": 3, "intermediate_size": 128}
DEMO = ["data.max_length=64", "data.buckets=[64]", "data.global_batch_size=16", "checkpoint.every=0",
        "train.log_every=50", "train.eval_batches=4"]


def _child(args: argparse.Namespace) -> None:
    from f2jax.prune.prune import Calibration, prune_checkpoint

    t0 = time.perf_counter()
    report = prune_checkpoint(args.model, args.output, preset=args.preset, calibration=Calibration(
        data=args.calibration, batches=args.batches, batch_size=args.batch_size, max_length=args.max_length))
    print(json.dumps({"preset": args.preset, "seconds": time.perf_counter() - t0, "params": report["params"],
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))


def bench_prune_memory(workdir: str | Path, presets: tuple[str, ...] = ("330m", "160m", "80m"), *,
                       dtype: str = "bfloat16", batches: int = 2, batch_size: int = 8,
                       max_length: int = 64, calibration: str = "demo") -> list[dict[str, Any]]:
    """Per preset: wall seconds, parameter count and peak RSS of a fresh `prune` process."""
    from f2jax.bench.synth import qwen3_config, write_checkpoint

    workdir = Path(workdir)
    src = workdir / "qwen3_0.6b_random"
    if not (src / "config.json").exists():
        write_checkpoint(src, qwen3_config(), dtype=dtype)
    rows = []
    for preset in presets:
        cmd = [sys.executable, "-m", "f2jax.bench.prune", "_child", str(src), str(workdir / f"pruned_{preset}"),
               preset, str(calibration), str(batches), str(batch_size), str(max_length)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def _validation(run_dir: Path, step: int) -> dict[str, float]:
    from f2jax.train.metrics import read_metrics

    val = [r for r in read_metrics(run_dir) if r.get("split") == "validation" and r["step"] == step
           and "ndcg_at_10" in r]
    return {k: sum(r[k] for r in val) / len(val) for k in ("acc_hard", "ndcg_at_10", "loss_kd")}


def _train(run_dir: Path, overrides: list[str], evaluate_first: bool = False) -> Any:
    from f2jax.config import load_config
    from f2jax.train.trainer import Trainer

    trainer = Trainer(load_config("configs/demo.yaml", overrides), run_dir)
    if evaluate_first:
        trainer.evaluate(0)
    trainer.train()
    trainer.close()
    return trainer


def bench_prune_quality(workdir: str | Path, *, teacher_steps: int = 300, student_steps: int = 200,
                        lr: float = 1e-3) -> dict[str, dict[str, float]]:
    """Retrieval metrics (mean over the demo's retrieval sources) at each stage of the recipe."""
    from f2jax.data import demo_data_dir, tokenize_sources
    from f2jax.prune.prune import Calibration, prune_checkpoint

    workdir = Path(workdir)
    data = workdir / "demo_tok"
    if not (data / "meta.json").exists():
        tokenize_sources(demo_data_dir(), data, max_length=64, workers=1)
    base = [*DEMO, f"data.path={data}", "data.raw=null", f"train.lr={lr}", "train.warmup_steps=20"]
    teacher_run = workdir / "teacher_run"
    trainer = _train(teacher_run, [f"model.init={TEACHER_SHAPE}", *base, f"train.steps={teacher_steps}",
                                   f"train.eval_every={teacher_steps}"])
    teacher = trainer.export(workdir / "teacher")
    t0 = time.perf_counter()
    prune_checkpoint(teacher, workdir / "student", dims=STUDENT, calibration=Calibration(
        data=data, batches=16, batch_size=16, max_length=64))
    prune_s = time.perf_counter() - t0
    kd = [*base, f"teacher.path={teacher}", "teacher.dtype=float32", "teacher.param_dtype=float32",
          f"train.steps={student_steps}", f"train.eval_every={student_steps}"]
    _train(workdir / "distill_run", [f"model.path={workdir / 'student'}", "model.init=null", *kd], True)
    shape = ("{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 3, num_attention_heads: 4,"
             " num_key_value_heads: 2, head_dim: 32, max_position_embeddings: 256}")
    _train(workdir / "random_run", [f"model.init={shape}", *kd])
    return {
        "teacher": _validation(teacher_run, teacher_steps),
        "pruned_before_distill": _validation(workdir / "distill_run", 0),
        "pruned_after_distill": _validation(workdir / "distill_run", student_steps),
        "random_init_same_steps": _validation(workdir / "random_run", student_steps),
        "prune_seconds": {"seconds": prune_s},
    }


def main(argv: list[str] | None = None) -> None:
    """The per-preset child process of `bench_prune_memory` (its own peak RSS)."""
    argv = sys.argv[1:] if argv is None else argv
    keys = ("model", "output", "preset", "calibration", "batches", "batch_size", "max_length")
    ns = argparse.Namespace(**dict(zip(keys, argv[1:], strict=True)))
    ns.batches, ns.batch_size, ns.max_length = int(ns.batches), int(ns.batch_size), int(ns.max_length)
    _child(ns)


if __name__ == "__main__":
    main()
