"""Strict JSON for the API: `finite` (what a value must become before it is written as
JSON) and `write_json_atomic` (small files: keys, calibrations, job records, written so no
reader sees half of one). JSON has no NaN or Infinity, and other JSON readers (browsers,
SQLite's JSON functions) reject them, so nothing here writes them."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every NaN and infinity, however deeply nested in dicts, lists and
    tuples, made null: the one conversion the responses and the log lines share, so that
    both stay strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_json_atomic(path: str | Path, data: object, *, mode: int = 0o644) -> Path:
    """Write to a private temporary file, fsync, then rename over `path`.

    The rename is atomic on POSIX, so a crash leaves either the old file or the new one.
    The temporary file's name is new for every write (created with O_EXCL, as mkstemp
    does), so two threads or processes writing the same file at once never write into one
    temporary file: the file ends as one of their writes, whole. `mode` applies from the
    first byte, less the umask (API key hashes are never world-readable; mkstemp itself is
    not used because its files start at 0o600, and a chmod afterwards would ignore the
    umask). Written as strict JSON: a NaN or Infinity is refused before anything is
    written.
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"not writing {path}: {exc} (strict JSON has no NaN or Infinity)"
                         ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
