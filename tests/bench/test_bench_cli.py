"""The bench sub-commands parse, run, print a table and write JSON."""

from __future__ import annotations

import json

from f2jax.bench.cli import main

TINY_SHAPE = "--hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --head-dim 8 --vocab 300"


def test_compile_command_writes_json(tmp_path, capsys):
    out = tmp_path / "compile.json"
    argv = f"compile --layers 1,2 {TINY_SHAPE} --batch 1 --seq-len 8 --dtype float32 --forward-only"
    assert main([*argv.split(), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["fwd_ratio_L2_over_L1"] > 0
    assert "fwd_bwd_ratio_L2_over_L1" not in result
    assert "fwd_ratio_L2_over_L1" in capsys.readouterr().out
