"""`f2jax data ...` subcommands; the main CLI calls `add_data_parser(subparsers)`."""

from __future__ import annotations

import argparse
import json
import logging


def _tokenize(args: argparse.Namespace) -> int:
    from f2jax.data.tokenize import tokenize_sources

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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

    print(build(args.output))
    return 0


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register `data tokenize IN OUT [--tokenizer DIR] [--max-length N]` and `data demo`."""
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
    return data


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `python -m f2jax.data.cli data tokenize IN OUT`."""
    parser = argparse.ArgumentParser(prog="f2jax")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
