"""Run tasks through `mteb.evaluate`, write its result files, summarise the main scores."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from f2jax.paths import Path
from f2jax.storage import publish_dir


def evaluate(model: Any, tasks: Iterable[Any], *, output: str | Path | None = None,
             batch_size: int = 32, show_progress_bar: bool = False,
             raise_error: bool = True) -> Any:
    """`mteb.evaluate` with results written under `output` (mteb's cache layout) or nowhere.

    Always re-runs (overwrite_strategy "always"): a local task folder may change between runs
    while its name stays the same. With raise_error=False, failed tasks are listed in the
    result's `exceptions` instead of raising.
    """
    import mteb

    def run(cache_dir: Path | None) -> Any:
        cache = mteb.ResultCache(cache_path=os.fspath(cache_dir)) if cache_dir is not None else None
        return mteb.evaluate(model, list(tasks), cache=cache, overwrite_strategy="always",
                             encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
                             show_progress_bar=show_progress_bar, co2_tracker=False, raise_error=raise_error)

    if output is None:
        return run(None)
    with publish_dir(output, last=()) as local:  # `output` may be a URL
        return run(local)


def main_scores(result: Any, tasks: Iterable[Any] = ()) -> list[tuple[str, str, str, str, float]]:
    """(task, split, subset, metric, value) for every task result in a ModelResult."""
    metric = {t.metadata.name: t.metadata.main_score for t in tasks}
    rows = []
    for task_result in result.task_results:
        name = task_result.task_name
        for split, subsets in task_result.scores.items():
            for scores in subsets:
                rows.append((name, split, scores["hf_subset"], metric.get(name, "main_score"),
                             float(scores["main_score"])))
    return rows


def format_table(rows: Sequence[tuple[str, str, str, str, float]]) -> str:
    """A plain-text table, one line per (task, split, subset)."""
    header = ("task", "split", "subset", "metric", "score")
    cells = [header] + [(t, s, sub, m, f"{v:.4f}") for t, s, sub, m, v in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
