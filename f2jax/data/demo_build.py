"""Build the bundled demo dataset (`python -m f2jax.data.demo_build [OUT]`): real text, small.

Sources (raw F2LLM parquet + manifest.yaml, committed so they do not depend on the local
Python/babel version):
  code_search_python  retrieval      docstring summary -> function code (Python stdlib);
                                     negatives = other functions, same module first
  cldr_bitext         retrieval      territory/language name in locale A -> same name in locale B
                                     (CLDR data shipped by babel); negatives = other names in B
  cldr_language_id    classification territory name in some locale -> that locale's language
                                     (English name); negative_1 = another language
Held-out rows come from the pipeline's 1% rule. Deterministic: fixed module/locale lists, a
seeded generator, sorted iteration.
"""

from __future__ import annotations

import ast
import importlib.util
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from f2jax.paths import Path

NEGATIVES = 24
MAX_CODE_CHARS = 600
MODULES = [
    "argparse", "ast", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "dis", "email.utils", "enum", "filecmp", "fnmatch", "fractions",
    "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "heapq", "hmac", "html.parser",
    "http.cookiejar", "imaplib", "inspect", "ipaddress", "json.decoder", "json.encoder",
    "locale", "logging", "mailbox", "mimetypes", "netrc", "ntpath", "numbers", "operator",
    "optparse", "os", "pathlib", "pickle", "pkgutil", "platform", "plistlib", "poplib",
    "posixpath", "pprint", "pydoc", "queue", "quopri", "random", "re", "shlex", "shutil",
    "smtplib", "socket", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "tokenize", "trace", "traceback", "typing", "urllib.parse",
    "urllib.request", "uuid", "warnings", "wave", "weakref", "zipfile"
]
LOCALES = [
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "ru", "uk", "tr", "ar", "fa", "hi",
    "bn", "zh", "ja", "ko", "vi", "th", "id", "el", "he"
]
INSTRUCTIONS = {
    "code_search_python": "Given a description of a Python function, retrieve its code.",
    "cldr_bitext": "Retrieve translations of the following text.",
    "cldr_language_id": "Classify the language of the given text.",
}


def demo_data_dir() -> Path:
    """The bundled raw demo sources (tokenise with `f2jax data tokenize`)."""
    return Path(__file__).parent / "demo"


def _functions(module: str) -> list[tuple[str, str]]:
    """(docstring summary, full source with its docstring) of a stdlib module's documented functions.

    The passage keeps its docstring (like CodeSearchNet's `original_string`): the query's words
    then appear in the passage, so even a model trained from scratch on this tiny set learns the
    task within the demo's few hundred steps, and the demo shows retrieval accuracy rising.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node)
        if not doc or node.name.startswith("__"):
            continue
        summary = " ".join(doc.strip().split("\n\n")[0].split())
        if len(summary) < 20:
            continue
        code = ast.unparse(node)[:MAX_CODE_CHARS]
        out.append((summary, code))
    return out


def _with_negatives(rng, pos: int, pools: list[list[int]], texts: list[str]) -> list[str]:
    """24 distinct negatives (texts != the positive), drawn from pools in order of preference."""
    chosen: list[int] = []
    seen = {texts[pos]}
    for pool in pools:
        for j in rng.permutation(pool):
            if len(chosen) == NEGATIVES:
                break
            if texts[j] not in seen:
                seen.add(texts[j])
                chosen.append(int(j))
    return [texts[j] for j in chosen]


def build_code(rng) -> list[dict]:
    pairs, module_of = [], []
    for m in MODULES:
        for summary, code in _functions(m):
            pairs.append((summary, code))
            module_of.append(m)
    codes = [c for _, c in pairs]
    by_module: dict[str, list[int]] = {}
    for i, m in enumerate(module_of):
        by_module.setdefault(m, []).append(i)
    everything = list(range(len(pairs)))
    rows, seen_q = [], set()
    for i in rng.permutation(len(pairs))[:1500]:
        q, p = pairs[i]
        if q in seen_q:
            continue
        seen_q.add(q)
        negs = _with_negatives(rng, i, [by_module[module_of[i]], everything], codes)
        rows.append({"query": q, "passage": p, "negatives": negs})
    return rows


def _names(locale: str) -> dict[str, str]:
    from babel import Locale

    loc = Locale.parse(locale)
    names = {f"T:{k}": v for k, v in loc.territories.items() if k.isalpha() and len(k) == 2}
    names |= {f"L:{k}": v for k, v in loc.languages.items() if k.isalpha() and len(k) == 2}
    return names


def build_bitext(rng) -> list[dict]:
    names = {loc: _names(loc) for loc in LOCALES}
    keys = sorted(set.intersection(*(set(n) for n in names.values())))
    rows = []
    for key in keys:
        for _ in range(4):
            a, b = rng.choice(len(LOCALES), size=2, replace=False)
            la, lb = LOCALES[a], LOCALES[b]
            q, p = names[la][key], names[lb][key]
            same_kind = [j for j, k in enumerate(keys) if k[0] == key[0]]
            texts = [names[lb][k] for k in keys]
            negs = _with_negatives(rng, keys.index(key), [same_kind], texts)
            if q != p:
                rows.append({"query": q, "passage": p, "negatives": negs})
    return rows


def build_language_id(rng) -> list[dict]:
    from babel import Locale

    english = Locale("en")
    labels = [english.languages[loc] for loc in LOCALES]
    names = {loc: _names(loc) for loc in LOCALES}
    rows = []
    for a, loc in enumerate(LOCALES):
        terr = sorted(k for k in names[loc] if k.startswith("T:"))
        for key in rng.permutation(terr)[:90]:
            other = labels[(a + 1 + rng.integers(len(LOCALES) - 1)) % len(LOCALES)]
            rows.append({"query": names[loc][key], "passage": labels[a], "negatives": [other]})
    return [rows[i] for i in rng.permutation(len(rows))]


def _write(rows: list[dict], path: Path) -> None:
    n = max(len(r["negatives"]) for r in rows)
    cols = {"query": [r["query"] for r in rows], "passage": [r["passage"] for r in rows]}
    for j in range(n):
        cols[f"negative_{j + 1}"] = [r["negatives"][j] for r in rows]
    pq.write_table(pa.table(cols), path, compression="zstd", compression_level=19)


def build(out_dir: str | Path | None = None, seed: int = 0) -> Path:
    out = Path(out_dir) if out_dir else demo_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    builders = {"code_search_python": build_code, "cldr_bitext": build_bitext,
                "cldr_language_id": build_language_id}
    tasks = {"code_search_python": "retrieval", "cldr_bitext": "retrieval",
             "cldr_language_id": "classification"}
    lines = ["# Demo sources: task type and query instruction per source (f2jax.data.demo_build)"]
    for i, (name, fn) in enumerate(builders.items()):
        rows = fn(np.random.default_rng([seed, i]))
        _write(rows, out / f"{name}.parquet")
        lines += [f"{name}:", f"  task: {tasks[name]}", f'  instruction: "{INSTRUCTIONS[name]}"']
        print(f"{name}: {len(rows)} rows", file=sys.stderr)
    (out / "manifest.yaml").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else None)
