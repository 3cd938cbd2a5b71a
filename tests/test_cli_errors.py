"""Every user-input error through the real CLI: one line `f2jax: <kind>: <what and where>` on
stderr, exit 2, no traceback; `--debug` / F2JAX_DEBUG=1 bring the traceback back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.numpy import load_file, save_file
from tiny_models import make_hf_model

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.yaml")


def run_cli(*argv: str, env: dict[str, str] | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """`f2jax ARGV` in a fresh interpreter on one CPU device (`prelude` runs first)."""
    code = f"{prelude}\nimport sys\nfrom f2jax.cli import main\nsys.exit(main(sys.argv[1:]))"
    full_env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=full_env,
                          cwd=REPO, timeout=300)


def assert_one_line(result: subprocess.CompletedProcess, kind: str, *names: str) -> str:
    """Exit 2, no traceback, and a last stderr line `f2jax: kind: ...` naming every `names`."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"f2jax: {kind}: "), line
    for name in names:
        assert name in line, (name, line)
    return line


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    path, _ = make_hf_model(tmp_path_factory.mktemp("tiny"))
    return path


def _copy_model(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    for file in src.iterdir():
        if file.is_file() and file.name != "model.safetensors":
            (dst / file.name).write_bytes(file.read_bytes())
    tensors = load_file(src / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return dst


def _raw_source(folder: Path, **columns: list[str]) -> Path:
    folder.mkdir()
    pd.DataFrame(columns).to_parquet(folder / "qa.parquet")
    return folder


def test_data_source_without_passage_column(tmp_path):
    src = _raw_source(tmp_path / "raw", query=["q1", "q2"], answer=["a1", "a2"])
    line = assert_one_line(run_cli("data", "tokenize", str(src), str(tmp_path / "out")), "invalid data",
                           str(src / "qa.parquet"), "'passage'")
    print(line)


def test_data_row_with_empty_text(tmp_path):
    src = _raw_source(tmp_path / "raw", query=["q1", ""], passage=["p1", "p2"], negative_1=["n1", "n2"])
    (src / "manifest.yaml").write_text("qa: classification\n")
    assert_one_line(run_cli("data", "tokenize", str(src), str(tmp_path / "out")), "invalid data",
                    str(src / "qa.parquet"), "row 1", "'query'")


def test_unreadable_parquet(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "qa.parquet").write_bytes(b"PAR1 this is not parquet")
    assert_one_line(run_cli("data", "tokenize", str(tmp_path / "raw"), str(tmp_path / "out")), "invalid data",
                    str(tmp_path / "raw" / "qa.parquet"), "not a readable parquet file")


def test_missing_input_directory(tmp_path):
    assert_one_line(run_cli("data", "tokenize", str(tmp_path / "nowhere"), str(tmp_path / "out")), "not found",
                    str(tmp_path / "nowhere"))


@pytest.mark.parametrize("overrides,kind,names", [
    (["train.lrr=1"], "configuration error", ["train.lrr", "(did you mean train.lr?)"]),
    (["train.lr=fast"], "configuration error", ["train.lr", "'fast'"]),
    (["mesh.fsdp=3"], "configuration error", ["mesh", "3"]),
    (["model.attention=flash"], "configuration error", ["model.attention", "'flash'"]),
    (["data.raw=null", "data.path=/no/such/data"], "configuration error", ["data.path", "/no/such/data"]),
])
def test_configuration_errors(tmp_path, overrides, kind, names):
    assert_one_line(run_cli("train", "--config", DEMO, "--run-dir", str(tmp_path / "run"), *overrides),
                    kind, *names)


def test_missing_config_file(tmp_path):
    assert_one_line(run_cli("train", "--config", str(tmp_path / "nope.yaml")), "configuration error",
                    str(tmp_path / "nope.yaml"))


def test_run_directory_of_another_config(tmp_path):
    """Its config.yaml is kept: refusing must not overwrite the other run's record."""
    from f2jax.config import dump_config, load_config

    run = tmp_path / "run"
    (run / "checkpoints" / "100").mkdir(parents=True)
    dump_config(load_config(DEMO, ["train.lr=0.01"]), run / "config.yaml")
    before = (run / "config.yaml").read_text()
    assert_one_line(run_cli("train", "--config", DEMO, "--run-dir", str(run)), "configuration error",
                    str(run), "train.lr", "allow_config_change")
    assert (run / "config.yaml").read_text() == before
    assert yaml.safe_load(before)["train"]["lr"] == 0.01


@pytest.mark.parametrize("edit,names", [
    (lambda t: t.pop("layers.1.mlp.up_proj.weight"), ["missing", "layers.1.mlp.up_proj.weight"]),
    (lambda t: t.update({"layers.0.self_attn.k_proj.weight": t["layers.0.self_attn.k_proj.weight"][:16]}),
     ["k_proj.weight", "shape (16, 64)"]),
    (lambda t: t.update({"extra.weight": np.zeros(3, np.float32)}), ["unexpected", "extra.weight"]),
])
def test_checkpoint_refusals(tiny_model, tmp_path, edit, names):
    broken = _copy_model(tiny_model, tmp_path / "broken", edit)
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n")
    result = run_cli("encode", str(broken), "--input", str(texts), "--output", str(tmp_path / "v.npy"))
    assert_one_line(result, "checkpoint refused", str(broken), *names)


def test_pickle_only_checkpoint(tiny_model, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((tiny_model / "config.json").read_text())
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n")
    result = run_cli("encode", str(tmp_path / "m"), "--input", str(texts), "--output", str(tmp_path / "v.npy"))
    assert_one_line(result, "checkpoint refused", "pytorch_model.bin", "safetensors")


def test_unsupported_model_type(tiny_model, tmp_path):
    model = _copy_model(tiny_model, tmp_path / "m", lambda t: None)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n")
    result = run_cli("encode", str(model), "--input", str(texts), "--output", str(tmp_path / "v.npy"))
    assert_one_line(result, "unsupported model", str(model / "config.json"), "'llama'")


def test_missing_model_and_input(tmp_path, tiny_model):
    good, texts = tmp_path / "good.txt", tmp_path / "texts.jsonl"
    good.write_text("a\n")
    texts.write_text('{"text": "a"}\n{"txt": "b"}\n')
    result = run_cli("encode", str(tmp_path / "none"), "--input", str(good), "--output", "v.npy")
    assert_one_line(result, "not found", f"MODEL: {tmp_path / 'none'} does not exist")
    assert "config.json" not in result.stderr
    assert_one_line(run_cli("data", "tokenize", str(tmp_path / "missing"), str(tmp_path / "out")),
                    "not found", f"{tmp_path / 'missing'} does not exist")
    assert_one_line(run_cli("encode", str(tiny_model), "--input", str(tmp_path / "x.txt"), "--output", "v.npy"),
                    "not found", "--input", str(tmp_path / "x.txt"))
    assert_one_line(run_cli("encode", str(tiny_model), "--input", str(texts), "--output", "v.npy"),
                    "invalid input", str(texts), "row 2", "'text'")


def test_eval_without_mteb_names_the_extra(tiny_model):
    result = run_cli("eval", str(tiny_model), "--local", "f2jax/eval/examples",
                     prelude="import sys; sys.modules['mteb'] = None")
    assert_one_line(result, "missing dependency", "pip install 'f2jax[eval]'")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    argv = ["train", "--config", DEMO, "--run-dir", str(tmp_path / "run"), "train.lrr=1"]
    result = run_cli("--debug", *argv) if how == "flag" else run_cli(*argv, env={"F2JAX_DEBUG": "1"})
    assert result.returncode != 0 and result.returncode != 2
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr and "train.lrr" in result.stderr
