"""`f2jax` command line: train | export | encode | eval | data | bench.

Each sub-command lives beside the code it drives and registers itself here through an
`add_*_parser(subparsers)` function; heavy imports happen only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_encode_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encode", help="embed texts (one per line, or a .jsonl with 'text') to a .npy")
    p.add_argument("model", help="Hugging Face / f2jax export directory")
    p.add_argument("--input", required=True, help="text file, one text per line")
    p.add_argument("--output", required=True, help="output .npy path")
    p.add_argument("--prompt", default=None, help="literal prompt prepended to every text")
    p.add_argument("--prompt-name", default=None, help="named prompt from the model (e.g. query)")
    p.add_argument("--dim", type=int, default=None, help="Matryoshka dimension")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    import f2jax

    path = Path(args.input)
    if not path.exists():
        raise SystemExit(f"--input {path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        texts = []
        for row, line in enumerate(lines, start=1):
            record = json.loads(line)
            if not isinstance(record.get("text"), str):
                raise SystemExit(f"{path}: row {row} has no string field 'text'")
            texts.append(record["text"])
    else:
        texts = lines
    encoder = f2jax.load(args.model, dtype=args.dtype, max_length=args.max_length)
    vectors = encoder.encode(texts, prompt=args.prompt, prompt_name=args.prompt_name, dim=args.dim,
                             batch_size=args.batch_size)
    np.save(args.output, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f2jax", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_encode_parser(subparsers)
    for module, name in (("f2jax.data.cli", "add_data_parser"), ("f2jax.train.cli", "add_train_parser"),
                         ("f2jax.train.cli", "add_export_parser"),
                         ("f2jax.eval.cli", "add_eval_parser"), ("f2jax.bench.cli", "add_bench_parser")):
        try:
            mod = __import__(module, fromlist=[name])
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        getattr(mod, name)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from f2jax.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"f2jax: configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
