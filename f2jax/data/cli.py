"""`f2jax data ...` subcommands; the main CLI calls `add_data_parser(subparsers)`."""

from __future__ import annotations

import argparse
import json


def _tokenize(args: argparse.Namespace) -> int:
    from f2jax.data.tokenize import tokenize_sources

    meta = tokenize_sources(args.input, args.output, tokenizer_dir=args.tokenizer,
                            max_length=args.max_length, workers=args.workers,
                            on_error=args.on_error)
    summary = {k: {"rows": v["rows"], "skipped": v["skipped"], "task": v["task"]}
               for k, v in meta["sources"].items()}
    print(json.dumps({"output": str(args.output), "num_docs": meta["num_docs"],
                      "sources": summary}, indent=1))
    return 0


def _build_demo(args: argparse.Namespace) -> int:
    from f2jax.data.demo_build import build
    from f2jax.errors import require_extra

    require_extra("babel", "demo-build", "f2jax data demo")
    print(build(args.output))
    return 0


def _teacher_embed(args: argparse.Namespace) -> int:
    from f2jax.jobs.teacher_embed import precompute_teacher_embeddings

    out = precompute_teacher_embeddings(args.data_dir, args.teacher, dtype=args.dtype,
                                        batch_size=args.batch_size, storage=args.storage)
    print(json.dumps(json.loads((out / "meta.json").read_text()), indent=1))
    return 0


def _import(args: argparse.Namespace) -> int:
    from f2jax.data.importer import import_source

    summary = import_source(args.src, args.out, task=args.task, query=args.query, passage=args.passage,
                            negatives=args.negatives, split=args.split, name=args.name,
                            instruction=args.instruction, fmt=args.format, hub=args.hub,
                            config=args.config, on_error=args.on_error)
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    return 0


def _mine(args: argparse.Namespace) -> int:
    from f2jax.jobs.mine import MineParams, mine_source

    params = MineParams(top_k=args.top_k, skip=args.skip, max_score=args.max_score, margin=args.margin,
                        negatives=args.negatives)
    report = mine_source(args.model, args.pairs, args.out, params, source=args.source, prompt=args.prompt,
                         query_prompt_name=args.query_prompt_name, batch_size=args.batch_size,
                         query_block=args.query_block, block_size=args.block_size, dim=args.dim,
                         min_negatives=args.min_negatives, dtype=args.dtype, max_length=args.max_length,
                         on_error=args.on_error)
    keys = ("output", "rows", "unique_queries", "corpus", "dropped_per_rule", "kept_negatives", "throughput")
    summary = {k: report[k] for k in keys}
    summary["too_few"] = report["too_few"]["count"]
    summary["rows_dropped_below_min"] = report["rows_dropped_below_min"]["count"]
    print(json.dumps(summary, indent=1))
    return 0


def _add_import_parser(sub) -> None:
    imp = sub.add_parser("import", help="a Hugging Face dataset / parquet / JSONL / CSV -> an F2LLM-format source")
    imp.add_argument("src", help="saved HF dataset dir, parquet file/dir, .jsonl/.json, .csv/.tsv, or a Hub name")
    imp.add_argument("out", help="source folder to write OUT/{name}.parquet and merge OUT/manifest.yaml into")
    imp.add_argument("--task", choices=("retrieval", "clustering", "classification"), default="retrieval")
    imp.add_argument("--query", default="query", help="input column holding the query (default: query)")
    imp.add_argument("--passage", default="passage", help="input column holding the positive (default: passage)")
    imp.add_argument("--negatives", nargs="+", default=None, metavar="COL",
                     help="negative columns (text or list of texts); default: the input's negative_N columns")
    imp.add_argument("--split", default=None, help="split of a Hugging Face DatasetDict")
    imp.add_argument("--name", default=None, help="source name (default: the input's file name)")
    imp.add_argument("--instruction", default=None, help="query instruction stored in the manifest")
    imp.add_argument("--format", choices=("auto", "hf", "parquet", "jsonl", "csv"), default="auto")
    imp.add_argument("--hub", action="store_true", help="load SRC from the Hugging Face Hub")
    imp.add_argument("--config", default=None, help="Hub dataset configuration name")
    imp.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                     help="skip drops bad rows (counted per reason) instead of failing")
    imp.set_defaults(func=_import)


def _add_mine_parser(sub) -> None:
    mine = sub.add_parser("mine", help="mine hard negatives for (query, passage) pairs with an embedding model")
    mine.add_argument("model", help="embedding model dir (Hugging Face Qwen3, f2jax export or run dir)")
    mine.add_argument("pairs", help="F2LLM-format source: a parquet file or a folder holding one")
    mine.add_argument("out", help="folder for OUT/{name}.parquet, its manifest entry and {name}.mining.json")
    mine.add_argument("--source", default=None, help="which source of a PAIRS folder with several")
    mine.add_argument("--top-k", type=int, default=100, help="passages retrieved per query (default 100)")
    mine.add_argument("--skip", type=int, default=5, help="top ranks skipped as likely false negatives")
    mine.add_argument("--max-score", type=float, default=0.8, help="keep scores below this (default 0.8)")
    mine.add_argument("--margin", type=float, default=0.95, help="keep scores below margin x positive score")
    mine.add_argument("--negatives", type=int, default=24, help="negatives kept per query (default 24)")
    mine.add_argument("--min-negatives", type=int, default=None,
                      help="drop rows with fewer (default: what the task trains on, e.g. 7 for retrieval)")
    mine.add_argument("--prompt", default=None, help="query prompt text (default: manifest instruction, "
                      "else the model's 'query' prompt)")
    mine.add_argument("--query-prompt-name", default=None, help="name of one of the model's prompts")
    mine.add_argument("--batch-size", type=int, default=64, help="encode batch size")
    mine.add_argument("--query-block", type=int, default=256, help="queries per top-k device call")
    mine.add_argument("--block-size", type=int, default=4096, help="corpus passages per scoring block")
    mine.add_argument("--dim", type=int, default=None, help="Matryoshka dimension (default: full)")
    mine.add_argument("--max-length", type=int, default=None, help="token limit (default: the model's)")
    mine.add_argument("--dtype", default="float32", help="compute dtype (float32 or bfloat16)")
    mine.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                      help="skip drops invalid input rows (counted in the report)")
    mine.set_defaults(func=_mine)


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register `data tokenize IN OUT [--tokenizer DIR] [--max-length N]`, `data demo`,
    `data teacher-embed DATA_DIR --teacher MODEL_DIR`, `data import SRC OUT` and
    `data mine MODEL PAIRS OUT`."""
    data = subparsers.add_parser("data", help="prepare training data")
    sub = data.add_subparsers(dest="data_command", required=True)
    tok = sub.add_parser("tokenize", help="validate + tokenise a folder of parquet sources")
    tok.add_argument("input", help="folder of {source}.parquet files (+ optional manifest.yaml)")
    tok.add_argument("output", help="output folder (TFDS ArrayRecord + index arrays)")
    tok.add_argument("--tokenizer", default=None, help="tokenizer dir (default: bundled Qwen3)")
    tok.add_argument("--max-length", type=int, default=1024)
    tok.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    tok.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                     help="skip drops bad rows (counted per source) instead of failing")
    tok.set_defaults(func=_tokenize)
    demo = sub.add_parser("demo", help="rebuild the bundled demo sources")
    demo.add_argument("output", nargs="?", default=None)
    demo.set_defaults(func=_build_demo)
    emb = sub.add_parser("teacher-embed", help="precompute a teacher's embeddings into DATA_DIR/teacher "
                         "(for teacher.embeddings=true)")
    emb.add_argument("data_dir", help="tokenised data folder (`data tokenize` output)")
    emb.add_argument("--teacher", required=True, help="teacher model dir (Hugging Face Qwen3 or f2jax export)")
    emb.add_argument("--dtype", default="bfloat16", help="teacher compute dtype (default bfloat16)")
    emb.add_argument("--batch-size", type=int, default=64)
    emb.add_argument("--storage", choices=("float16", "float32"), default=None,
                     help="stored vector dtype (default: float32 for a float32 teacher, else float16)")
    emb.set_defaults(func=_teacher_embed)
    _add_import_parser(sub)
    _add_mine_parser(sub)
    return data

