"""Small JSON files (keys, calibrations, job records) written so no reader sees half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: str | Path, data: object, *, mode: int = 0o644) -> Path:
    """Write to a private temporary file, fsync, then rename over `path`.

    The rename is atomic on POSIX, so a crash leaves either the old file or the new one;
    `mode` applies from the first byte (API key hashes are never world-readable). Written
    as strict JSON: a NaN or Infinity is refused before anything is written, since other
    JSON readers (and SQLite's JSON functions) reject them.
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"not writing {path}: {exc} (strict JSON has no NaN or Infinity)"
                         ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
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
