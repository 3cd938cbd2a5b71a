"""Load-memory benchmark: host peak RSS of loading a checkpoint, relative to its size on disk.

The streaming loader promises peak host memory near the model itself (target: peak/disk
<= 1.3). Each load runs in a fresh subprocess (`f2jax.bench.load_probe`) so imports, earlier
loads and allocator caches of this process cannot hide or inflate the peak.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from f2jax.bench.synth import write_checkpoint
from f2jax.model.config import Qwen3Config
from f2jax.paths import Path

TARGET_RATIO = 1.3


def run_probe(
    path: str | Path,
    mode: str = "streaming",
    dtype: str = "bfloat16",
    timeline: bool = False,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Run one load in a fresh interpreter and return its JSON result."""
    cmd = [
        sys.executable,
        "-m",
        "f2jax.bench.load_probe",
        str(path),
        "--mode",
        mode,
        "--dtype",
        dtype,
    ]
    if timeline:
        cmd.append("--timeline")
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"load probe ({mode}) failed with exit code {done.returncode}:\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(result: dict[str, Any], disk: int, prefix: str) -> dict[str, Any]:
    peak, base = result["peak_rss"], result["baseline_rss"]
    return {
        f"{prefix}load_s": result["load_s"],
        f"{prefix}baseline_rss": base,
        f"{prefix}peak_rss": peak,
        f"{prefix}final_rss": result["final_rss"],
        f"{prefix}sampled_peak_anon": result["sampled_peak_anon"],
        f"{prefix}sampled_peak_file": result["sampled_peak_file"],
        f"{prefix}param_bytes": result["param_bytes"],
        f"{prefix}peak_minus_baseline_over_disk": (peak - base) / disk,
        f"{prefix}peak_over_disk": peak / disk,
        f"{prefix}final_minus_baseline_over_disk": (result["final_rss"] - base) / disk,
    }


def bench_load_memory(
    cfg: Qwen3Config,
    *,
    dtype: str = "bfloat16",
    naive: bool = False,
    max_shard_bytes: int | None = None,
    workdir: str | Path | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Write a random checkpoint for `cfg`, load it streaming (and naively); report bytes, ratios.

    Ratios: (peak - baseline) / disk is the load's own cost per checkpoint byte; peak / disk also
    counts the interpreter + JAX baseline, which dominates for small models.
    """
    tmp = Path(tempfile.mkdtemp(prefix="f2jax-bench-ckpt-", dir=workdir))
    try:
        ckpt = write_checkpoint(tmp / "ckpt", cfg, dtype=dtype, max_shard_bytes=max_shard_bytes)
        disk = ckpt.disk_bytes
        out: dict[str, Any] = {
            "disk_bytes": disk,
            "num_files": len(ckpt.files),
            "num_params": cfg.num_params(),
            "target_ratio": TARGET_RATIO,
        }
        streaming = run_probe(ckpt.directory, "streaming", dtype)
        out.update(_ratios(streaming, disk, ""))
        out["within_target"] = (
            streaming["peak_rss"] - streaming["baseline_rss"]
        ) / disk <= TARGET_RATIO
        if naive:
            out.update(_ratios(run_probe(ckpt.directory, "naive", dtype), disk, "naive_"))
        if keep:
            out["checkpoint_dir"] = str(ckpt.directory)
        return out
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
