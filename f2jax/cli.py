"""`f2jax` command line: train | export | encode | eval | data | prune | bench.

Each sub-command lives beside the code it drives and is registered here explicitly through its
`add_*_parser(subparsers)` function; heavy imports happen only when a command runs.

Errors caused by the user's input (`f2jax.errors.F2JaxError`) print one line,
`f2jax: <kind>: <message naming file, row, column or config key>`, and exit 2; `--debug` (or
`F2JAX_DEBUG=1`) shows their traceback too. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from f2jax import distributed
from f2jax.bench.cli import add_bench_parser
from f2jax.data.cli import add_data_parser
from f2jax.encode_cli import add_encode_parser
from f2jax.errors import F2JaxError, one_line
from f2jax.eval.cli import add_eval_parser
from f2jax.prune.cli import add_prune_parser
from f2jax.train.cli import add_export_parser, add_train_parser

USER_ERROR_EXIT = 2


def setup_logging(level: int = logging.INFO) -> None:
    """f2jax's records on stderr at `level`. `force`: absl (imported by orbax/grain) installs a
    root handler first, which would otherwise swallow every INFO record."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f2jax", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of input errors too (also F2JAX_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (add_train_parser, add_export_parser, add_encode_parser, add_eval_parser, add_data_parser,
                add_prune_parser, add_bench_parser):
        add(subparsers)
    return parser


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(args.debug) or os.environ.get("F2JAX_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return int(args.func(args) or 0)
    except F2JaxError as err:
        if debug_requested(args):
            raise
        print(f"f2jax: {err.kind}: {one_line(err)}", file=sys.stderr)
        if distributed.group() is not None:  # leave now: JAX's exit barrier would wait for the peers
            sys.stderr.flush()
            os._exit(USER_ERROR_EXIT)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
