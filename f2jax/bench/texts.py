"""A deterministic corpus of real, varied-length English texts: Python stdlib docstrings.

Throughput depends on the length distribution (bucketing, padding), so the encode benchmark
needs natural text rather than repeated strings, and it must be available offline.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import warnings

MODULES = (
    "argparse",
    "asyncio",
    "collections",
    "csv",
    "datetime",
    "decimal",
    "email",
    "functools",
    "http.client",
    "inspect",
    "itertools",
    "json",
    "logging",
    "os",
    "pathlib",
    "pickle",
    "random",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "zipfile",
)
_WS = re.compile(r"\s+")


def _docstrings(module_name: str) -> list[str]:
    with warnings.catch_warnings():  # reading typing.io / typing.re's docs warns they are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return _read_docstrings(module_name)


def _read_docstrings(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    docs = [inspect.getdoc(module) or ""]
    for name in sorted(vars(module)):
        obj = getattr(module, name)
        if name.startswith("_") or getattr(obj, "__module__", module_name) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            docs.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                docs += [
                    inspect.getdoc(v) or ""
                    for k, v in sorted(vars(obj).items())
                    if not k.startswith("_") and inspect.isfunction(v)
                ]
    return docs


def stdlib_texts(n: int, min_chars: int = 20, max_chars: int = 2000, seed: int = 0) -> list[str]:
    """`n` distinct docstring paragraphs (whitespace-collapsed), cycled if the corpus is short."""
    seen: set[str] = set()
    corpus: list[str] = []
    for module_name in MODULES:
        for doc in _docstrings(module_name):
            for para in doc.split("\n\n"):
                text = _WS.sub(" ", para).strip()[:max_chars]
                if len(text) >= min_chars and text not in seen:
                    seen.add(text)
                    corpus.append(text)
    if not corpus:
        raise RuntimeError("no stdlib docstrings found (running with -OO?)")
    random.Random(seed).shuffle(corpus)  # mix modules and lengths; fixed seed keeps it repeatable
    return [corpus[i % len(corpus)] for i in range(n)]
