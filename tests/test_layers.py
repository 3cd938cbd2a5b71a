"""Imports only point down: each f2jax module may import modules of its own layer or below.

The order, lowest first, is written here once. Command-line modules (`cli.py`, `*_cli.py`,
`cli_*.py`) form the top layer whatever their package; imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "f2jax"
LAYERS = [
    {"errors", "paths", "storage", "distributed", "sharding", "compiled_memory", "losses", "retrieval_metrics",
     "logs", "lazy"},
    {"model"},
    {"hf"},
    {"tokenizer"},
    {"data", "testing"},
    {"encode"},
    {"config"},
    {"train"},
    {"__init__"},  # f2jax.load: the front door, over the Encoder and run directories
    {"eval"},
    {"prune"},
    {"jobs"},
    {"demo_report", "plot"},
    {"bench"},
    {"cli"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _is_cli(parts: tuple[str, ...]) -> bool:
    name = parts[-1]
    return name == "cli" or name.endswith("_cli") or name.startswith("cli_")


def unit_of(module: str) -> str:
    """The layer unit of a dotted f2jax module name (`f2jax.train.step` -> `train`)."""
    parts = tuple(module.split("."))
    if _is_cli(parts):
        return "cli"
    if len(parts) == 1 or parts[1] == "__init__":
        return "__init__"
    return parts[1]


def _module_name(file: Path) -> str:
    parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)


def imports_of(source: str) -> list[tuple[int, str]]:
    """(line, f2jax module) for every import in `source`; `from f2jax import x` names f2jax.x
    when x is a module, else f2jax itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "f2jax"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "f2jax":
            if node.module == "f2jax":
                for alias in node.names:
                    sub = PACKAGE / alias.name
                    is_module = sub.is_dir() or sub.with_suffix(".py").exists()
                    found.append((node.lineno, f"f2jax.{alias.name}" if is_module else "f2jax"))
            else:
                found.append((node.lineno, node.module))
    return found


def package_sources() -> list[tuple[str, str]]:
    return [(_module_name(f), f.read_text(encoding="utf-8")) for f in sorted(PACKAGE.rglob("*.py"))]


def upward_imports(sources: list[tuple[str, str]]) -> list[str]:
    """`module:line (layer) imports module (layer)` for each import of a higher layer."""
    bad = []
    for name, source in sources:
        src = unit_of(name)
        for line, module in imports_of(source):
            dst = unit_of(module)
            if RANK[dst] > RANK[src]:
                bad.append(f"{name}:{line} ({src}) imports {module} ({dst})")
    return bad


def test_every_unit_has_a_layer():
    units = {unit_of(_module_name(f)) for f in PACKAGE.rglob("*.py")}
    assert units - set(RANK) == set()


def test_imports_point_down():
    assert upward_imports(package_sources()) == []


def test_the_check_sees_an_upward_import():
    probe = [("f2jax.data._probe", "import numpy\n\ndef f():\n    from f2jax.train import step\n"),
             ("f2jax.data.cli", "from f2jax.jobs.mine import mine_source\n")]  # a CLI may import anything
    assert upward_imports(probe) == ["f2jax.data._probe:4 (data) imports f2jax.train (train)"]
