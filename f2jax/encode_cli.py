"""`f2jax encode MODEL --input FILE --output FILE.npy`: embed a file of texts."""

from __future__ import annotations

import argparse
import json
from typing import Any

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


def read_texts(path: Any) -> list[str]:
    """Texts of a plain file (one per line) or a .jsonl with a string field 'text' per row."""
    from f2jax.paths import existing

    if not existing(path, "--input").is_file():
        raise InputNotFoundError(f"--input {path}: a directory, not a file of texts")
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
    from f2jax.paths import as_path, existing
    from f2jax.storage import publish_file

    texts = read_texts(as_path(args.input))
    existing(args.model, "MODEL")
    encoder = f2jax.load(args.model, dtype=args.dtype, max_length=args.max_length)
    vectors = encoder.encode(texts, prompt=args.prompt, prompt_name=args.prompt_name, dim=args.dim,
                             batch_size=args.batch_size)
    with publish_file(args.output) as local, local.open("wb") as handle:  # no half file on a kill
        np.save(handle, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {args.output}")
    return 0
