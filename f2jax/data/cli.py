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
    from f2jax.data.teacher import precompute_teacher_embeddings

    out = precompute_teacher_embeddings(args.data_dir, args.teacher, dtype=args.dtype,
                                        batch_size=args.batch_size, storage=args.storage)
    print(json.dumps(json.loads((out / "meta.json").read_text()), indent=1))
    return 0


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register `data tokenize IN OUT [--tokenizer DIR] [--max-length N]`, `data demo` and
    `data teacher-embed DATA_DIR --teacher MODEL_DIR`."""
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
    return data

