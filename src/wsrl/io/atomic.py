"""The one way files are replaced: written beside their final name, renamed into place only once complete."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path` to write to; when the block completes it replaces `path` in one
    rename. A kill leaves the old file (and at most a `.tmp`); an error (full disk, Ctrl-C) leaves no `.tmp`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
