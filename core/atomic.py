"""Writing files so that no reader, and no crash, ever sees half of one.

Every file SpanQA replaces in place (API keys, calibrations, job records, the BM25 arrays,
the index's CURRENT pointer) is written under a temporary name in the same folder, flushed
to disk, then renamed over the old one. The rename is atomic on POSIX: a reader sees the
old file or the new one, and a crash leaves one of them whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces `path` when the block ends without error.

    The temporary name is new for every write (created with O_EXCL), so two threads or
    processes writing the same file at once never share one: the file ends as one of their
    writes, whole. `mode` applies from the first byte, less the umask (API key hashes are
    never world-readable; mkstemp is not used because its files start at 0o600 and a chmod
    afterwards would ignore the umask). On an error the temporary file is removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str, *, mode: int = 0o644) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) in one atomic rename."""
    with atomic_file(path, mode=mode) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(path: str | Path, data: object, *, mode: int = 0o644) -> Path:
    """Replace `path` with `data` as indented strict JSON: a NaN or Infinity is refused
    before anything is written, since other JSON readers (browsers, SQLite) reject them."""
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"not writing {path}: {exc} (strict JSON has no NaN or Infinity)"
                         ) from exc
    return write_atomic(path, text + "\n", mode=mode)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (the names a rename changed) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """Flush every file under `path`, then every folder's entries: before a folder written
    by other code (save_pretrained, an index build) is published by a rename."""
    path = Path(path)
    for child in path.rglob("*"):
        if child.is_file():
            with open(child, "rb") as f:
                os.fsync(f.fileno())
    for folder in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        fsync_dir(folder)
