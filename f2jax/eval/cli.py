"""`f2jax eval MODEL (--tasks A,B | --benchmark NAME | --local DIR) [--dim D] [--output DIR]`.

mteb tasks download their data from the Hugging Face Hub; without network access they fail,
and the failure is reported per task. `--local DIR` runs file-defined tasks offline (layout in
`f2jax.eval.local_tasks`). Results are mteb's JSON files under `--output`
(`results/<org>__<name>/<revision>/<Task>.json`), and a table of main scores is printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from f2jax.errors import UserInputError, require_extra


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model with mteb (hub tasks or local files)")
    p.add_argument("model", help="Hugging Face / f2jax export directory")
    p.add_argument("--tasks", default=None, help="comma-separated mteb task names")
    p.add_argument("--benchmark", default=None, help="mteb benchmark name, e.g. 'MTEB(eng, v2)'")
    p.add_argument("--local", default=None, metavar="DIR",
                   help="a local task folder, or a folder of them (see f2jax.eval.local_tasks)")
    p.add_argument("--dim", type=int, default=None, help="Matryoshka dimension")
    p.add_argument("--output", default=None, metavar="DIR", help="where mteb writes result files")
    p.add_argument("--name", default=None, help="model name in results (default f2jax/<dir name>)")
    p.add_argument("--instruction", action="append", default=[], metavar="KEY=TEXT",
                   help="instruction for a task name or type (repeatable), '' for none")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=run_eval)


def _instructions(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"--instruction {pair!r}: expected KEY=TEXT")
        out[key] = text
    return out


def _hub_tasks(args: argparse.Namespace) -> list[Any]:
    import mteb

    tasks: list[Any] = []
    try:
        if args.tasks:
            names = [n.strip() for n in args.tasks.split(",") if n.strip()]
            tasks.extend(mteb.get_tasks(tasks=names))
        if args.benchmark:
            tasks.extend(mteb.get_benchmark(args.benchmark).tasks)
    except KeyError as err:
        raise UserInputError(f"--tasks/--benchmark: {err.args[0] if err.args else err}") from None
    return tasks


def run_eval(args: argparse.Namespace) -> int:
    require_extra("mteb", "eval", "f2jax eval")
    if not (args.tasks or args.benchmark or args.local):
        raise UserInputError("f2jax eval: give --tasks, --benchmark or --local")
    from f2jax.paths import absolute, display_name, existing_dir

    existing_dir(args.model, "MODEL")
    import f2jax
    from f2jax.eval.local_tasks import load_local_tasks, local_instructions
    from f2jax.eval.model import MTEBModel
    from f2jax.eval.runner import evaluate, format_table, main_scores

    tasks = _hub_tasks(args)
    if args.local:
        tasks.extend(load_local_tasks(args.local))
    prompts = {**local_instructions(tasks), **_instructions(args.instruction)}
    encoder = f2jax.load(args.model, dtype=args.dtype, max_length=args.max_length)
    model = MTEBModel(encoder, dim=args.dim, prompts=prompts, batch_size=args.batch_size,
                      name=args.name or display_name(absolute(args.model)))
    result = evaluate(model, tasks, output=args.output, batch_size=args.batch_size,
                      raise_error=False)
    rows = main_scores(result, tasks)
    if rows:
        print(format_table(rows))
    for error in result.exceptions or []:
        print(f"task {error.task_name} failed (offline? its data comes from the Hugging Face "
              f"Hub): {error.exception.strip().splitlines()[-1]}", file=sys.stderr)
    if args.output:
        print(f"results written under {args.output}")
    return 1 if result.exceptions else 0
