"""`f2jax plot RUN_DIR`: one PNG of a run's curves, with chance lines per task type; without
matplotlib the demo report says how to get it instead of failing."""

from __future__ import annotations

import json
import sys

import pytest

from f2jax import demo_report, plot
from f2jax.cli import main
from f2jax.errors import MissingExtraError


@pytest.fixture
def run_dir(tmp_path):
    """A run directory's metrics.jsonl and config.yaml, as the trainer writes them (no training)."""
    records = []
    for step in range(1, 21):
        source, task = [("code_search_python", "retrieval"), ("cldr_language_id", "classification")][step % 2]
        records.append({"step": step, "source": source, "task": task, "loss": 5.0 / step})
        if step % 10 == 0:
            records.append({"step": step, "split": "validation", "source": "code_search_python", "task": "retrieval",
                            "loss": 2.0, "acc_hard": 0.3, "ndcg_at_10": 0.4, "mrr": 0.35})
            records.append({"step": step, "split": "validation", "source": "cldr_language_id",
                            "task": "classification", "loss": 0.7, "acc_hard": 0.6})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "config.yaml").write_text("data:\n  negatives: {classification: 3}\n")
    return tmp_path


def test_plot_writes_a_png(run_dir, capsys):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    chance = plot.run_chance(run_dir, records)  # the run's data.negatives over the defaults
    assert chance == {"code_search_python": 0.125, "cldr_language_id": 0.25}
    assert main(["plot", str(run_dir)]) == 0
    png = run_dir / plot.FILENAME
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out
    assert "curves (training loss" in demo_report.curves(run_dir)


def test_without_matplotlib_the_report_says_how(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec reports it absent
    assert "matplotlib is not installed; pip install 'f2jax[plot]'" in demo_report.curves(run_dir)
    with pytest.raises(MissingExtraError, match=r"f2jax\[plot\]"):
        plot.plot_run(run_dir)
