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


def test_data_command_reports_throughput_and_padding(tmp_path):
    out = tmp_path / "data.json"
    assert main(["data", "--synthetic-rows", "600", "--max-length", "64", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["demo_seq_per_s"] > 0 and result["synthetic_seq_per_s"] > 0
    assert 0 < result["demo_padding_efficiency_buckets"] <= result["demo_padding_efficiency_per_batch_max"] <= 1


def test_checkpoint_command_times_async_and_sync_saves(tmp_path):
    out = tmp_path / "ckpt.json"
    assert main(["checkpoint", "--saves", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["state_GiB"] > 0 and result["async_blocked_s"] >= 0 and result["sync_blocked_s"] > 0


def test_reports_name_the_host_allocator(monkeypatch, capsys, tmp_path):
    import json

    from f2jax.bench.report import emit

    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    emit("t", {"a": 1}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1, "host_allocator": "tcmalloc"}
    monkeypatch.delenv("LD_PRELOAD")
    emit("t", {"a": 1})
    assert "host_allocator  glibc" in capsys.readouterr().out
