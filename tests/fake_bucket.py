"""An offline `gs://` for tests: fsspec's in-memory filesystem behind epath's gs:// backend.

epath sends gs:// I/O to fsspec (no TensorFlow installed); registering this class as fsspec's
`gs`/`gcs` implementation makes every `gs://bucket/...` read and write in f2jax go through the
same code path as on a pod, with a dict in this process as the bucket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import fsspec
from etils.epath import backend as epath_backend
from fsspec.implementations.memory import MemoryFileSystem


class FakeGCS(MemoryFileSystem):
    protocol = ("gs", "gcs")
    root_marker = ""
    store: dict = {}  # noqa: RUF012 (fsspec's MemoryFileSystem keeps its files on the class)
    pseudo_dirs = [""]  # noqa: RUF012

    def __init__(self, *args, finalize_on_close: bool = False, **kwargs):
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        """`bucket/key`, as gcsfs names objects (no protocol, no leading slash)."""
        path = super()._strip_protocol(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return path.strip("/")


@contextlib.contextmanager
def fake_bucket() -> Iterator[type[FakeGCS]]:
    """gs:// served from memory for the duration of the block (emptied before and after)."""
    for name in FakeGCS.protocol:
        fsspec.register_implementation(name, FakeGCS, clobber=True)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    FakeGCS.clear_instance_cache()
    FakeGCS.store.clear()
    FakeGCS.pseudo_dirs[:] = [""]
    try:
        yield FakeGCS
    finally:
        FakeGCS.store.clear()
        epath_backend.fsspec_backend._get_filesystem.cache_clear()
