"""The demo's closing report: held-out retrieval with the trained model against the same model
untrained (step 0), plus the validation metrics logged during the run.

Everything printed comes from the run directory: its resolved `config.yaml`, its newest
checkpoint, its `metrics.jsonl`, and the held-out rows of its data (the rows
`f2jax.data.schedule.split_rows` held out of training). The untrained model is rebuilt exactly
as the trainer built it at step 0 (`model.init` + `model.init_seed`, or `model.path`). The
example queries are chosen by a fixed rule, the first `n_examples` held-out queries of the
source in row order, never picked by their outcome.

Each held-out query is ranked against every held-out document of its source: all held-out
positives and all of their hard negatives (deduplicated by text), a larger corpus than the
hard negatives per query of the in-training metrics. Besides ranks, it prints how far the right
document's score is above the best other document's (the "gap"), and how similar two different
documents look on average ("doc cos"): a model that bunches every text together ranks by
margins of a few thousandths. Chance levels follow each source's task type (`top1_chance`), and
a source where the demo model cannot gain says so beside its row (`EXPECTED`).

    python -m f2jax.demo_report RUN_DIR [--source NAME] [--examples 3]

`main` also writes RUN_DIR/curves.png (`f2jax.plot`) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from f2jax.data.tasks import instruct
from f2jax.paths import Path
from f2jax.retrieval_metrics import evaluate_retrieval

__all__ = ["HeldOut", "held_out_corpus", "untrained_encoder", "trained_encoder", "report", "main"]

#: Why a bundled demo source shows no gain after the demo's training, printed beside its rows.
EXPECTED = {
    "cldr_bitext": "no gain expected: matching a name to its translation needs knowledge of other languages "
                   "and scripts, which a 2-layer model trained from scratch on ~1,600 pairs does not get "
                   "(a pretrained Qwen3 backbone has it)",
}


@dataclass
class HeldOut:
    """One source's held-out retrieval task: queries (with their instruction), a corpus, and
    the index of each query's own positive in that corpus."""

    source: str
    instruction: str | None
    queries: list[str]
    docs: list[str]
    relevant: list[int]


def _config(run_dir: Path) -> Any:
    from f2jax.config import load_config

    path = run_dir / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (not a run directory?)")
    return load_config(path, [])


def _raw_dir(cfg: Any, raw: str | Path | None) -> Path:
    if raw is not None:
        return Path(raw)
    if cfg.data.raw is None:
        raise ValueError("the run has no data.raw (it trained on tokenised data); pass raw=its parquet folder")
    if cfg.data.raw == "demo":
        from f2jax.data import demo_data_dir

        return demo_data_dir()
    return Path(cfg.data.raw)


def held_out_corpus(cfg: Any, raw: str | Path | None = None, max_queries: int | None = None) -> dict[str, HeldOut]:
    """The held-out rows of every retrieval source, as the run split them (the first
    `max_queries` of each in row order, with their documents, when given)."""
    from f2jax.data import schedule
    from f2jax.data.sources import find_sources
    from f2jax.data.tasks import DEFAULT_NEGATIVES, INBATCH
    from f2jax.data.validate import validate_source

    needed = {**DEFAULT_NEGATIVES, **(cfg.data.negatives or {})}
    out = {}
    for spec in find_sources(_raw_dir(cfg, raw)):
        if not INBATCH.get(spec.task, False):
            continue
        clean = validate_source(spec.path, spec.task, needed[spec.task])
        _, val = schedule.split_rows(spec.name, len(clean.query), cfg.data.holdout)
        val = val[:max_queries]
        doc_index: dict[str, int] = {}
        relevant = [doc_index.setdefault(clean.passage[i], len(doc_index)) for i in val]
        for i in val:
            for neg in clean.negatives[i]:
                if neg is not None:
                    doc_index.setdefault(neg, len(doc_index))
        out[spec.name] = HeldOut(spec.name, spec.instruction if cfg.data.instructions else None,
                                 [clean.query[i] for i in val], list(doc_index), relevant)
    return out


def untrained_encoder(cfg: Any) -> Any:
    """The model the trainer started from (step 0), rebuilt from the run's config."""
    from flax import nnx

    from f2jax.encode import Encoder
    from f2jax.sharding import make_mesh
    from f2jax.tokenizer import load_tokenizer
    from f2jax.train import setup

    tokenizer = load_tokenizer(setup.tokenizer_dir(cfg))
    qcfg = setup.model_config(cfg, vocab_size=len(tokenizer))
    opts = setup.model_options(cfg.model, "model")
    mesh = make_mesh(1, -1, 1)
    graphdef, params = setup.build_params(qcfg, opts, mesh, path=cfg.model.path, seed=cfg.model.init_seed)
    return Encoder(nnx.merge(graphdef, params), tokenizer, max_length=cfg.data.max_length, mesh=mesh)


def trained_encoder(run_dir: str | Path) -> tuple[int, Any]:
    """(step, Encoder) of the run's newest valid checkpoint."""
    from f2jax.train.export import encoder_from_checkpoint

    return encoder_from_checkpoint(run_dir)


def _instructed(task: HeldOut) -> str | None:
    return instruct(task.instruction, "") if task.instruction else None


def score_gaps(scores: np.ndarray, relevant: list[int]) -> np.ndarray:
    """Per query, the right document's score minus the best other document's: > 0 when it ranks
    first, and by how much (ranks alone hide that bunched embeddings win by 0.001)."""
    rows = np.arange(len(relevant))
    others = scores.copy()
    others[rows, relevant] = -np.inf
    return scores[rows, relevant] - others.max(axis=1)


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine between two different (unit) vectors: near 1 = every text embedded alike."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    total = float(np.sum(vectors @ vectors.T)) - float(np.sum(vectors * vectors))
    return total / (n * (n - 1))


def rank_all(encoder: Any, task: HeldOut) -> tuple[np.ndarray, dict[str, float]]:
    """(cosine scores [queries, docs], retrieval metrics + mean `score_gap` and `doc_cosine`)."""
    q = encoder.encode(task.queries, prompt=_instructed(task))
    d = encoder.encode(task.docs)
    metrics = evaluate_retrieval(q, d, [{r: 1.0} for r in task.relevant], ks=(1, 10))
    scores = q @ d.T
    metrics["score_gap"] = float(np.mean(score_gaps(scores, task.relevant)))
    metrics["doc_cosine"] = mean_pairwise_cosine(d)
    return scores, metrics


def _rank_of(row: np.ndarray, doc: int) -> int:
    order = np.argsort(-row, kind="stable")
    return int(np.flatnonzero(order == doc)[0]) + 1


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _validation_table(run_dir: Path, negatives: dict[str, int] | None) -> tuple[list[str], dict[str, float]]:
    """(table lines, chance top-1 per source)."""
    from f2jax.train.metrics import chance_top1, read_metrics

    records = read_metrics(run_dir)
    chance = chance_top1(records, negatives)
    rows = [r for r in records if r.get("split") == "validation"]
    if not rows:
        return ["  (no validation records: train.eval_every=0)"], chance
    lines = [f"  {'step':>5}  {'source':22s} {'loss':>7} {'top-1':>6} {'chance':>6} {'nDCG@10':>8} {'MRR':>6}"]
    for r in rows:
        cell = {key: f"{r[key]:.3f}" if key in r else "-" for key in ("loss", "acc_hard", "ndcg_at_10", "mrr")}
        odds = f"{chance[r['source']]:.3f}" if r["source"] in chance else "-"
        lines.append(f"  {r['step']:5d}  {r['source']:22s} {cell['loss']:>7} {cell['acc_hard']:>6} {odds:>6} "
                     f"{cell['ndcg_at_10']:>8} {cell['mrr']:>6}")
    lines += [f"  {name}: {why}" for name, why in EXPECTED.items() if any(r["source"] == name for r in rows)]
    return lines, chance


def report(run_dir: str | Path, *, source: str | None = None, n_examples: int = 3, top: int = 3,
           raw: str | Path | None = None, sources: list[str] | None = None, max_queries: int | None = None,
           out: Any = None) -> dict[str, Any]:
    """Print the report and return its numbers: {"step", "metrics": {source: {"untrained",
    "trained"}}, "examples": [{"query", "rank_untrained", "rank_trained", ...}]}. `sources`
    limits the metrics table to those retrieval sources (default: all; `source` is always in);
    `max_queries` keeps the first held-out queries of each (default: all)."""
    out = out or sys.stdout
    run_dir = Path(run_dir)
    cfg = _config(run_dir)
    tasks = held_out_corpus(cfg, raw, max_queries)
    if not tasks:
        raise ValueError(f"{run_dir}: the run's data has no retrieval source")
    source = source or ("code_search_python" if "code_search_python" in tasks else sorted(tasks)[0])
    if source not in tasks:
        raise ValueError(f"source {source!r} is not a retrieval source of the run ({sorted(tasks)})")
    if sources is not None:
        tasks = {name: task for name, task in tasks.items() if name in {*sources, source}}
    step, trained = trained_encoder(run_dir)
    untrained = untrained_encoder(cfg)
    p = lambda *a: print(*a, file=out)

    from f2jax.data.tasks import DEFAULT_NEGATIVES

    per_task = ", ".join(f"{task} {k}" for task, k in {**DEFAULT_NEGATIVES, **(cfg.data.negatives or {})}.items())
    p("\nvalidation during training (nDCG@10, MRR: retrieval sources, corpus = held-out positives + their "
      f"sampled hard negatives; top-1 = query vs its positive and its K hard negatives, K by task type: {per_task}; "
      "chance = 1/(K+1))")
    lines, chance = _validation_table(run_dir, cfg.data.negatives)
    for line in lines:
        p(line)

    results: dict[str, Any] = {"step": step, "chance": chance, "metrics": {}, "examples": []}
    scores = {}
    p(f"\nheld-out retrieval, untrained (step 0) vs trained (step {step}): each held-out query ranked "
      "against every held-out document of its source (all positives and all their hard negatives)")
    p("  gap = right document's score minus the best other document's (mean over queries; > 0: ranked first); "
      "doc cos = mean cosine between two different documents (near 1: embeddings bunched together)")
    p(f"  {'source':22s} {'queries':>7} {'docs':>5}   {'top-1':>13} {'nDCG@10':>13} {'MRR':>13} "
      f"{'gap':>15} {'doc cos':>13}")
    for name, task in sorted(tasks.items()):
        s0, m0 = rank_all(untrained, task)
        s1, m1 = rank_all(trained, task)
        scores[name] = (s0, s1)
        results["metrics"][name] = {"untrained": m0, "trained": m1}
        cells = "".join(f"  {m0[k]:.3f} → {m1[k]:.3f}" for k in ("recall_at_1", "ndcg_at_10", "mrr"))
        cells += f"  {m0['score_gap']:+.3f} → {m1['score_gap']:+.3f}  {m0['doc_cosine']:.3f} → {m1['doc_cosine']:.3f}"
        p(f"  {name:22s} {len(task.queries):7d} {len(task.docs):5d} {cells}")
        if name in EXPECTED:
            p(f"    ↳ {EXPECTED[name]}")

    task = tasks[source]
    s0, s1 = scores[source]
    p(f"\nthe first {min(n_examples, len(task.queries))} held-out queries of {source} (row order), "
      f"top {top} of {len(task.docs)} documents; ✓ = the query's own document")
    for i in range(min(n_examples, len(task.queries))):
        right = task.relevant[i]
        ex = {"query": task.queries[i], "document": task.docs[right],
              "rank_untrained": _rank_of(s0[i], right), "rank_trained": _rank_of(s1[i], right)}
        results["examples"].append(ex)
        p(f"\n  query: {_short(task.queries[i], 100)}")
        for label, row, rank in (("untrained", s0[i], ex["rank_untrained"]), ("trained", s1[i], ex["rank_trained"])):
            gap = float(score_gaps(row[None], [right])[0])
            ex[f"gap_{label}"] = gap
            p(f"    {label}: right document at rank {rank}, score {row[right]:.3f}, "
              f"{'ahead of' if gap > 0 else 'behind'} the best other document by {abs(gap):.3f}")
            for j in np.argsort(-row, kind="stable")[:top]:
                mark = "✓" if j == right else " "
                p(f"      {mark} {row[j]:.3f}  {_short(task.docs[j], 80)}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f2jax.demo_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--source", default=None, help="retrieval source for the examples")
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--raw", default=None, help="raw parquet folder (default: the run's data.raw)")
    args = parser.parse_args(argv)
    import logging

    from f2jax.logs import setup_logging

    setup_logging(logging.WARNING)  # a report on stdout: f2jax's progress records would interleave
    report(args.run_dir, source=args.source, n_examples=args.examples, raw=args.raw)
    print(f"\n{curves(args.run_dir)}")
    return 0


def curves(run_dir: str | Path) -> str:
    """Write the run's curves PNG (f2jax.plot) and say where, or say how to get it."""
    from f2jax import plot

    if not plot.matplotlib_available():
        return f"curves: matplotlib is not installed; {plot.INSTALL_HINT}"
    return f"curves (training loss, validation nDCG@10 and top-1 vs chance): {plot.plot_run(run_dir)}"


if __name__ == "__main__":
    raise SystemExit(main())
