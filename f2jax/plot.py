"""`f2jax plot RUN_DIR [--output FILE]`: a run's curves as one PNG (default RUN_DIR/curves.png).

Three panels from `metrics.jsonl`: training loss per source, and per source the validation
nDCG@10 (retrieval sources) and top-1 accuracy against the source's hard negatives, each with
its chance line (1 / (1 + hard negatives of the source's task type)). matplotlib comes from
the optional `plot` extra (`pip install 'f2jax[plot]'`); without it the command says so.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from f2jax.errors import require_extra

FILENAME = "curves.png"
INSTALL_HINT = "pip install 'f2jax[plot]' (or `bash launch/setup.sh plot`), then `f2jax plot RUN_DIR`"


def matplotlib_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def run_chance(run_dir: Any, records: list[dict[str, Any]]) -> dict[str, float]:
    """Chance top-1 per source of a run, with its `data.negatives` (from its config.yaml)."""
    from f2jax.config import load_config
    from f2jax.paths import as_path
    from f2jax.train.metrics import chance_top1

    config = as_path(run_dir) / "config.yaml"
    return chance_top1(records, load_config(config).data.negatives if config.exists() else None)


def _series(records: list[dict[str, Any]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for r in records:
        if key in r and "source" in r:
            out[r["source"]][0].append(int(r["step"]))
            out[r["source"]][1].append(float(r[key]))
    return dict(out)


def plot_run(run_dir: Any, output: Any = None) -> Any:
    """Write the run's curves; returns the PNG's path."""
    require_extra("matplotlib", "plot", "f2jax plot")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from f2jax.paths import as_path
    from f2jax.train.metrics import read_metrics

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("split", "train") == "train"]
    val = [r for r in records if r.get("split") == "validation"]
    chance = run_chance(run_dir, records)
    colors = {src: f"C{i}" for i, src in enumerate(sorted({r["source"] for r in records if "source" in r}))}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = ((axes[0], train, "loss", "training loss"), (axes[1], val, "ndcg_at_10", "validation nDCG@10"),
              (axes[2], val, "acc_hard", "validation top-1 vs hard negatives"))
    for ax, rows, key, title in panels:
        for src, (steps, values) in sorted(_series(rows, key).items()):
            color = colors[src]  # one colour per source in every panel
            ax.plot(steps, values, marker="o" if rows is val else None, ms=3, color=color, label=src)
            if key == "acc_hard" and src in chance:
                ax.axhline(chance[src], color=color, ls=":", lw=1, label=f"chance {src} ({chance[src]:.3g})")
        ax.set_title(title)
        ax.set_xlabel("step")
        if key != "loss":
            ax.set_ylim(0, 1)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no records (train.eval_every=0?)", ha="center", transform=ax.transAxes)
    fig.suptitle(f"{as_path(run_dir).name}: dotted lines = chance")
    fig.tight_layout()
    out = as_path(output) if output is not None else as_path(run_dir) / FILENAME
    with out.open("wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return out


def _run(args: argparse.Namespace) -> int:
    print(f"curves written to {plot_run(args.run_dir, args.output)}")
    return 0


def add_plot_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="a run's loss and validation curves as one PNG (needs f2jax[plot])",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="run directory of `f2jax train` (holds metrics.jsonl)")
    p.add_argument("--output", default=None, metavar="FILE", help=f"PNG path (default: RUN_DIR/{FILENAME})")
    p.set_defaults(func=_run)
