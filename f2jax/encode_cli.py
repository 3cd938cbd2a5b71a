"""`f2jax encode MODEL --input FILE --output FILE.npy`: embed a file of texts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from f2jax.errors import InputNotFoundError, UserInputError


def add_encode_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encode", help="embed texts (one per line, or a .jsonl with 'text') to a .npy")
    p.add_argument("model", help="Hugging Face / f2jax export directory, or an f2jax run directory")
    p.add_argument("--input", required=True, help="text file, one text per line")
    p.add_argument("--output", required=True, help="output .npy path")
    p.add_argument("--prompt", default=None, help="literal prompt prepended to every text")
    p.add_argument("--prompt-name", default=None, help="named prompt from the model (e.g. query)")
    p.add_argument("--dim", type=int, default=None, help="Matryoshka dimension")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=run_encode)


def read_texts(path: Path) -> list[str]:
    """Texts of a plain file (one per line) or a .jsonl with a string field 'text' per row."""
    if not path.is_file():
        raise InputNotFoundError(f"--input {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserInputError(f"--input {path}: not UTF-8 text (byte {err.start})") from None
    if path.suffix != ".jsonl":
        return lines
    texts = []
    for row, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserInputError(f"{path}: row {row} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserInputError(f"{path}: row {row} has no string field 'text'")
        texts.append(record["text"])
    return texts


def run_encode(args: argparse.Namespace) -> int:
    import numpy as np

    import f2jax

    texts = read_texts(Path(args.input))
    encoder = f2jax.load(args.model, dtype=args.dtype, max_length=args.max_length)
    vectors = encoder.encode(texts, prompt=args.prompt, prompt_name=args.prompt_name, dim=args.dim,
                             batch_size=args.batch_size)
    np.save(args.output, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {args.output}")
    return 0
