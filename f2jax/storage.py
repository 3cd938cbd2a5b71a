"""Inputs read from URLs and outputs written to them, for libraries that only see local files.

Inputs (`local_copy`): a URL is staged once per host into a local cache (`F2JAX_STAGE_DIR`,
default `~/.cache/f2jax/staged`) and the local copy is returned; a local path is returned as
is. safetensors memory-maps its files, tokenizers and ArrayRecord open local paths, so a
local copy keeps their speed and today's peak host memory (the copy streams in 16 MiB
pieces). The copy is checked against the URL's listing (each file's size and mtime) on every
use, so a restart after preemption reuses it and a changed source is staged again. One
process per host copies (a file lock); the others wait for it.

Outputs (`publish_dir`, `publish_file`): written into a local directory first, then moved
(local: a rename) or uploaded (URL: one object each) file by file, the file every loader
opens first (`config.json` of a model, `meta.json` of data) removed before and written last,
so a writer killed half way leaves a directory no loader accepts, never a half model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence

from etils import epath

from f2jax.paths import PathLike, as_path, display_name, is_url

log = logging.getLogger(__name__)

STAGE_DIR_ENV = "F2JAX_STAGE_DIR"
MANIFEST = ".f2jax-staged.json"
_CHUNK = 16 << 20
_staged: dict[str, epath.Path] = {}  # URL -> local copy, checked once per process


def stage_root() -> epath.Path:
    return as_path(os.environ.get(STAGE_DIR_ENV) or os.path.join("~", ".cache", "f2jax", "staged"))


def listing(src: epath.Path) -> dict[str, list[int]]:
    """{relative file path: [size, mtime]} of a file or of every file under a directory."""
    if not src.is_dir():
        stat = src.stat()
        return {src.name: [int(stat.length), int(stat.mtime)]}
    files = {}
    pending = [(src, "")]
    while pending:  # iterdir, not walk: epath's walk drops the gs:// of the paths it yields
        folder, prefix = pending.pop()
        for child in folder.iterdir():
            if child.is_dir():
                pending.append((child, f"{prefix}{child.name}/"))
            else:
                stat = child.stat()
                files[prefix + child.name] = [int(stat.length), int(stat.mtime)]
    return dict(sorted(files.items()))


@contextlib.contextmanager
def _host_lock(target: epath.Path) -> Iterator[None]:
    lock = target.parent / f"{target.name}.lock"
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process on this host to stage %s", target)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_manifest(dest: epath.Path) -> dict | None:
    try:
        return json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def copy_file(src: epath.Path, dst: epath.Path) -> None:
    """One file, streamed (either side may be a URL)."""
    with src.open("rb") as reader, dst.open("wb") as writer:
        shutil.copyfileobj(reader, writer, _CHUNK)


def _stage(url: str, src: epath.Path, files: dict[str, list[int]], dest: epath.Path) -> None:
    start = time.perf_counter()
    partial = dest.parent / f"{dest.name}.partial-{os.getpid()}"
    if partial.exists():
        partial.rmtree()
    single = not src.is_dir()
    for rel, (size, _) in files.items():
        target = partial / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_file(src if single else src / rel, target)
        if target.stat().length != size:
            raise OSError(f"{url}/{rel}: copied {target.stat().length} bytes, expected {size}")
    (partial / MANIFEST).write_text(json.dumps({"url": url, "files": files}))
    if dest.exists():
        dest.rmtree()
    os.replace(partial, dest)
    total = sum(size for size, _ in files.values())
    log.info("staged %s (%d files, %.1f MB) into %s in %.1f s", url, len(files), total / 1e6, dest,
             time.perf_counter() - start)


def local_copy(path: PathLike, only: Sequence[str] | None = None) -> epath.Path:
    """`path` itself when local; for a URL, its copy in this host's stage directory (with
    `only`: just those files of the directory, e.g. a model's tokenizer files).

    Raises FileNotFoundError naming the URL when it does not exist."""
    if not is_url(path):
        return as_path(path)
    url = os.fspath(path).rstrip("/")
    key = url if only is None else f"{url}|{','.join(sorted(only))}"
    if key in _staged:
        return _staged[key]
    src = as_path(url)
    if not src.exists():
        raise FileNotFoundError(f"{url} does not exist")
    files = listing(src)
    if only is not None:
        files = {rel: stat for rel, stat in files.items() if rel in only}
    dest = stage_root() / f"{display_name(url)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _host_lock(dest):
        if _read_manifest(dest) != {"url": url, "files": files}:
            _stage(url, src, files, dest)
    _staged[key] = dest if src.is_dir() else dest / src.name
    return _staged[key]


def _publish(local: epath.Path, out: epath.Path, last: Sequence[str], replace: Sequence[str] = ()) -> None:
    """Move (local `out`) or upload (URL) every file under `local` into `out`, `last` last;
    entries of `out` matching a `replace` pattern are removed first."""
    names, folders = [], []
    for folder, subdirs, files in os.walk(local):
        names += [os.path.relpath(os.path.join(folder, name), local) for name in files]
        folders += [os.path.relpath(os.path.join(folder, name), local) for name in subdirs]
    for pattern in replace:
        for stale in out.glob(pattern):
            stale.rmtree() if stale.is_dir() else stale.unlink(missing_ok=True)
    for folder in folders:  # empty ones too (sentence-transformers' 2_Normalize)
        (out / folder).mkdir(parents=True, exist_ok=True)
    for name in sorted(names, key=lambda n: (n in last, n)):
        if is_url(out):
            copy_file(local / name, out / name)  # one object: an upload is atomic
        else:
            os.replace(local / name, out / name)


@contextlib.contextmanager
def _scratch(out: epath.Path) -> Iterator[epath.Path]:
    """A local scratch directory: beside `out` when local (so publishing is a rename)."""
    near = None if is_url(out) else os.fspath(out.parent)
    if near is not None:
        os.makedirs(near, exist_ok=True)
    scratch = epath.Path(tempfile.mkdtemp(prefix=f".{display_name(out)}.partial-", dir=near))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def publish_dir(out: PathLike, last: Sequence[str], replace: Sequence[str] = ()) -> Iterator[epath.Path]:
    """A local directory to write `out`'s files into; published into `out` when the block ends
    without an error: `replace` matches removed, each file renamed or uploaded whole, `last`
    (the file a reader opens first) last. Other files already in `out` are kept."""
    out = as_path(out)
    with _scratch(out) as scratch:
        yield scratch
        out.mkdir(parents=True, exist_ok=True)
        _publish(scratch, out, last, replace)


@contextlib.contextmanager
def publish_file(out: PathLike) -> Iterator[epath.Path]:
    """A local file path to write; it becomes `out` (renamed or uploaded) when the block ends."""
    out = as_path(out)
    with _scratch(out) as scratch:
        yield scratch / out.name
        out.parent.mkdir(parents=True, exist_ok=True)
        _publish(scratch, out.parent, ())
