"""Local task folders, the `f2jax eval` command and the mteb throughput bench."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import EXAMPLES

from f2jax.bench.mteb_throughput import bench_mteb_throughput
from f2jax.cli import main
from f2jax.eval.local_tasks import load_local_tasks, local_instructions


def test_examples_load_as_three_task_types():
    tasks = {t.metadata.name: t for t in load_local_tasks(EXAMPLES)}
    assert {n: t.metadata.type for n, t in tasks.items()} == {
        "F2jaxExampleBitext": "BitextMining", "F2jaxExampleSTS": "STS",
        "F2jaxExampleScienceQA": "Retrieval"}
    assert len(tasks["F2jaxExampleBitext"].metadata.eval_langs) == 6
    sts = tasks["F2jaxExampleSTS"]
    assert (sts.min_score, sts.max_score) == (0, 5)
    for task in tasks.values():
        task.load_data()
    split = tasks["F2jaxExampleScienceQA"].dataset["default"]["test"]
    assert len(split["queries"]) == 24 and len(split["corpus"]) == 32
    assert split["relevant_docs"]["q3"] == {"d3": 1, "d20": 1}
    assert tasks["F2jaxExampleBitext"].dataset["test"]["deu_Latn"][4] == "Heute regnet es."


def test_bad_folders_are_refused(tmp_path):
    bad = tmp_path / "bad_qrels"
    shutil.copytree(EXAMPLES / "science_qa", bad)
    with (bad / "qrels.tsv").open("a") as f:
        f.write("q1\tnope\t1\n")
    with pytest.raises(ValueError, match="unknown ids"):
        load_local_tasks(bad)[0].load_data()
    sts = tmp_path / "bad_sts"
    sts.mkdir()
    (sts / "sts.tsv").write_text("a\tb\tscore\nx\ty\t1\n")
    with pytest.raises(ValueError, match="header"):
        load_local_tasks(sts)
    (tmp_path / "empty" / "nothing_here").mkdir(parents=True)
    with pytest.raises(ValueError, match="no task folders"):
        load_local_tasks(tmp_path / "empty")


def test_task_json_instruction(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(EXAMPLES / "everyday_sts", folder)
    (folder / "task.json").write_text(json.dumps({"name": "MySTS", "instruction": "Compare."}))
    tasks = load_local_tasks(folder)
    assert tasks[0].metadata.name == "MySTS"
    assert local_instructions(tasks) == {"MySTS": "Compare."}


def test_cli_local_writes_results_and_table(tiny, tmp_path, capsys):
    _, model_dir = tiny
    out = tmp_path / "results"
    rc = main(["eval", str(model_dir), "--local", str(EXAMPLES / "everyday_sts"),
               "--dim", "16", "--output", str(out), "--name", "tiny"])
    assert rc == 0
    files = list(out.rglob("F2jaxExampleSTS.json"))
    assert len(files) == 1 and "dim_16" in str(files[0])
    saved = json.loads(files[0].read_text())["scores"]["test"][0]["main_score"]
    table = capsys.readouterr().out
    assert "F2jaxExampleSTS" in table and "cosine_spearman" in table
    assert f"{saved:.4f}" in table


def test_cli_errors_are_clear(tiny, capsys):
    _, model_dir = tiny
    for argv, expected in (
        (["--tasks", "NoSuchTask"], "NoSuchTask"),
        ([], "--tasks, --benchmark or --local"),
        (["--local", str(model_dir / "missing")], "--local: " + str(model_dir / "missing") + " does not exist"),
    ):
        assert main(["eval", str(model_dir), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("f2jax: ") and expected in err and "\n" not in err


def test_bench_counts_the_same_texts(tiny):
    _, model_dir = tiny
    result = bench_mteb_throughput(model_dir, EXAMPLES / "everyday_sts", repeats=1,
                                   torch_threads=1)
    assert result["f2jax"]["texts"] == result["sentence_transformers"]["texts"] == 60
    assert all(r["texts_per_s"] > 0 for r in result.values())
