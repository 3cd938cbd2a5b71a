"""`f2jax config show [--config FILE] [key=value ...]`: every config key with its default, type and
meaning, then the resolved config.

The table is generated from the typed dataclasses of `f2jax.config` (each key's meaning is the
`help` metadata beside its field), so it lists exactly the keys `f2jax train` accepts.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, NamedTuple


class KeyInfo(NamedTuple):
    """One dotted config key, as `config show` prints it."""

    key: str
    type: str
    default: Any
    meaning: str


def type_name(hint: Any) -> str:
    """A short readable form of a field's type: `int | null`, `cosine|constant`, `list[int]`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(hint))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(hint))}]"
    return "any" if hint is Any else getattr(hint, "__name__", str(hint))


def config_keys(cls: type | None = None, prefix: str = "") -> list[KeyInfo]:
    """Every dotted key of the typed config (sections recursed), in declaration order."""
    from f2jax.config import RunConfig

    cls = cls or RunConfig
    hints = typing.get_type_hints(cls)
    out: list[KeyInfo] = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out.extend(config_keys(hint, f"{prefix}{field.name}."))
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        out.append(KeyInfo(f"{prefix}{field.name}", type_name(hint), default, field.metadata.get("help", "")))
    return out


def _value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def show(config: str | None, overrides: list[str], out: Any) -> None:
    """Print the key table, then the resolved config (`config` + `overrides` over the defaults)."""
    import yaml

    from f2jax.config import load_config

    cfg = load_config(config, overrides)  # a bad key fails here, with the closest known one
    rows = [(k.key, _value(k.default), k.type, k.meaning) for k in config_keys()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print("every config key (set in YAML or as key=value): default, type, meaning", file=out)
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3],
              file=out)
    source = " + ".join([config or "defaults", *overrides])
    print(f"\nresolved config ({source}):", file=out)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip(), file=out)


def _run(args: argparse.Namespace) -> int:
    import sys

    show(args.config, args.overrides, sys.stdout)
    return 0


def add_config_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="list every config key (default, type, meaning) and a resolved config")
    sub = p.add_subparsers(dest="config_command", required=True)
    show_p = sub.add_parser("show", help="every config key, then the config resolved from --config and overrides",
                            description=__doc__.split("\n\n")[0])
    show_p.add_argument("--config", default=None, help="YAML config (default: only the defaults)")
    show_p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100")
    show_p.set_defaults(func=_run)
