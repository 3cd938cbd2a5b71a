"""`f2jax data import`: HF-on-disk, JSONL, CSV and parquet give identical sources; every malformed
input is one CLI line naming file, row and column."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from f2jax.data.importer import import_source
from f2jax.data.sources import find_sources
from f2jax.errors import MissingExtraError

CLI = [sys.executable, "-c", "import sys; from f2jax.cli import main; sys.exit(main(sys.argv[1:]))"]
RECORDS = [
    {"q": "What is JAX?", "pos": "JAX is NumPy on accelerators.", "n1": "Flax, a library", "n2": "optax"},
    {"q": "Ünïcode, \"quotes\"", "pos": "multi\nline, with commas", "n1": "x", "n2": None},
    {"q": "third", "pos": "passage three", "n1": None, "n2": None},
]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _write_csv(path: Path, records: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    return path


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "data", "import", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_round_trip_identical_parquet(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "hf_single"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(RECORDS)}).save_to_disk(str(tmp_path / "hf_dict"))
    pd.DataFrame(RECORDS).to_parquet(tmp_path / "in.parquet")
    inputs = {"hf_single": (str(tmp_path / "hf_single"), None), "hf_dict": (str(tmp_path / "hf_dict"), "train"),
              "jsonl": (str(_write_jsonl(tmp_path / "in.jsonl", RECORDS)), None),
              "csv": (str(_write_csv(tmp_path / "in.csv", RECORDS)), None),
              "parquet": (str(tmp_path / "in.parquet"), None)}
    blobs = {}
    for label, (src, split) in inputs.items():
        out = tmp_path / f"out_{label}"
        summary = import_source(src, out, query="q", passage="pos", negatives=["n1", "n2"], split=split,
                                name="pairs", instruction="Find it.")
        assert summary["rows_written"] == 3 and summary["negatives_columns"] == 2
        blobs[label] = (out / "pairs.parquet").read_bytes()
    assert len(set(blobs.values())) == 1, "all formats must give byte-identical parquet"
    table = pq.read_table(tmp_path / "out_csv" / "pairs.parquet").to_pylist()
    assert table[1] == {"query": RECORDS[1]["q"], "passage": RECORDS[1]["pos"], "negative_1": "x", "negative_2": None}
    spec = find_sources(tmp_path / "out_csv")[0]
    assert (spec.name, spec.task, spec.instruction) == ("pairs", "retrieval", "Find it.")


def test_list_negatives_defaults_and_manifest_merge(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.yaml").write_text("other: clustering\n")
    rows = [{"query": "a", "passage": "b", "hard": ["c", "d", "e"]}, {"query": "f", "passage": "g", "hard": []}]
    summary = import_source(str(_write_jsonl(tmp_path / "my-data.jsonl", rows)), out, negatives=["hard"],
                            task="classification")
    assert summary["name"] == "my_data" and summary["negatives_columns"] == 3 and "note" in summary
    manifest = yaml.safe_load((out / "manifest.yaml").read_text())
    assert manifest == {"other": "clustering", "my_data": {"task": "classification"}}
    plain = [{"query": "a", "passage": "b", "negative_2": "y", "negative_1": "x"}]
    import_source(str(_write_jsonl(tmp_path / "plain.jsonl", plain)), out)  # negative_N found by default
    assert pq.read_table(out / "plain.parquet").column_names == ["query", "passage", "negative_1", "negative_2"]


def test_skip_counts_per_reason(tmp_path: Path) -> None:
    rows = [{"query": "ok", "passage": "p"}, {"query": "", "passage": "p"}, {"query": "x", "passage": None},
            {"query": " ", "passage": "p"}]
    summary = import_source(str(_write_jsonl(tmp_path / "s.jsonl", rows)), tmp_path / "o", on_error="skip")
    assert summary["rows_written"] == 1 and summary["skipped"] == 3
    assert summary["skipped_per_reason"] == {"query: empty text": 2,
                                             "passage: query without a positive passage (missing)": 1}


def test_missing_datasets_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "dataset_info.json").write_text("{}")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'f2jax\[import\]'"):
        import_source(str(tmp_path / "hf"), tmp_path / "out")


def test_jsonl_and_csv_work_without_datasets(tmp_path: Path) -> None:
    src = _write_csv(tmp_path / "in.csv", RECORDS)
    code = ("import sys; sys.modules['datasets'] = None; from f2jax.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "data", "import", str(src), str(tmp_path / "o"),
                           "--query", "q", "--passage", "pos"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows_written"] == 3


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """(CLI args, expected 'row N, column C' fragment) for each malformed input."""
    ok = {"query": "q", "passage": "p"}
    def jsonl(name: str, rows: list[dict]) -> str:
        return str(_write_jsonl(tmp / name, rows))

    cases = [
        ([jsonl("missing.jsonl", [{"query": "q", "text": "p"}])], "header, column 'passage'"),
        ([jsonl("empty.jsonl", [ok, {"query": "  ", "passage": "p"}])], "row 1, column 'query'"),
        ([jsonl("nopos.jsonl", [ok, ok, {"query": "q"}])], "row 2, column 'passage'"),
    ]
    (tmp / "bad.jsonl").write_bytes(b'{"query": "q", "passage": "p"}\n{"query": "q", "passage": "caf\xe9"}\n')
    cases.append(([str(tmp / "bad.jsonl")], "row 1, column 'passage'"))
    (tmp / "bad.csv").write_bytes(b"query,passage\nq,p\n\xff\xfeq,p\n")
    cases.append(([str(tmp / "bad.csv")], "row 1, column 'query'"))
    cases.append(([str(_write_csv(tmp / "nopos.csv", [ok, {"query": "q", "passage": ""}]))], "row 1, column 'passage'"))
    cases.append(([str(_write_csv(tmp / "cols.csv", [ok])), "--passage", "doc"], "header, column 'doc'"))
    pd.DataFrame([ok, {"query": None, "passage": "p"}]).to_parquet(tmp / "null.parquet")
    cases.append(([str(tmp / "null.parquet")], "row 1, column 'query'"))
    return cases


def test_malformed_inputs_one_line_through_cli(tmp_path: Path) -> None:
    for args, where in _bad_inputs(tmp_path):
        proc = _run(args[0], str(tmp_path / "out"), *args[1:])
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("f2jax:")]
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
        assert args[0] in lines[0] and where in lines[0], (where, lines[0])
    assert not (tmp_path / "out" / "manifest.yaml").exists()  # nothing half-written


def test_dataset_dict_needs_split_and_hub_unreachable(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(RECORDS)}).save_to_disk(str(tmp_path / "dd"))
    proc = _run(str(tmp_path / "dd"), str(tmp_path / "out"), "--query", "q", "--passage", "pos")
    assert proc.returncode == 2 and "choose one with --split" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("someone/not_a_local_dataset", str(tmp_path / "out"), env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "someone/not_a_local_dataset: not on disk and the Hugging Face Hub is unreachable" in proc.stderr
    proc = _run(str(tmp_path / "nowhere.jsonl"), str(tmp_path / "out"))
    assert proc.returncode == 2 and "nowhere.jsonl does not exist" in proc.stderr
