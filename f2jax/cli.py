"""`f2jax` command line: train | export | encode | eval | data | prune | bench | config | plot.

Each sub-command lives beside the code it drives and is registered here explicitly through its
`add_*_parser(subparsers)` function. The modules that define the parsers import nothing heavy
(no JAX, transformers or torch; `tests/test_cli_help.py` guards it), so `f2jax --help` is quick;
heavy imports happen only when a command runs.

`key=value` overrides may come anywhere after the command, before or after its options.

Errors caused by the user's input (`f2jax.errors.F2JaxError`) print one line,
`f2jax: <kind>: <message naming file, row, column or config key>`, and exit 2; `--debug` (or
`F2JAX_DEBUG=1`) shows their traceback too. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from f2jax.bench.cli import add_bench_parser
from f2jax.config_cli import add_config_parser
from f2jax.data.cli import add_data_parser
from f2jax.encode_cli import add_encode_parser
from f2jax.errors import F2JaxError, one_line
from f2jax.eval.cli import add_eval_parser
from f2jax.logs import setup_logging
from f2jax.plot import add_plot_parser
from f2jax.prune.cli import add_prune_parser
from f2jax.train.cli import add_export_parser, add_train_parser

USER_ERROR_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f2jax", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of input errors too (also F2JAX_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (add_train_parser, add_export_parser, add_encode_parser, add_eval_parser, add_data_parser,
                add_prune_parser, add_bench_parser, add_config_parser, add_plot_parser):
        add(subparsers)
    return parser


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get("F2JAX_DEBUG", "") not in ("", "0")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, except that a command's `key=value` overrides may also follow its options
    (`train --config X train.steps=3 --run-dir R b=2`): argparse alone takes one run of positionals."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and not any(a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging()
    try:
        return int(args.func(args) or 0)
    except F2JaxError as err:
        if debug_requested(args):
            raise
        print(f"f2jax: {err.kind}: {one_line(err)}", file=sys.stderr)
        distributed = sys.modules.get("f2jax.distributed")  # only commands that may join a group import it
        if distributed is not None and distributed.group() is not None:
            sys.stderr.flush()  # leave now: JAX's exit barrier would wait for the peers
            os._exit(USER_ERROR_EXIT)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
