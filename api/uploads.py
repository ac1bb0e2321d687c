"""Names for uploaded files: whatever a client calls its file, what lands on disk is a
plain, unique name inside the uploads folder."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str | None) -> str:
    """A file name that is safe to create: no folders, only [A-Za-z0-9._-], no leading dot,
    at most ~120 characters with its extension kept."""
    base = (name or "").replace("\\", "/").split("/")[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", base).strip("._-")
    base = re.sub(r"_+", "_", base)
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem.strip("._-")[:100] or "upload"
    return f"{stem}.{suffix[:16]}" if suffix else stem


def unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    n = 2
    while True:
        candidate = f"{stem}-{n}" + (f".{suffix}" if suffix else "")
        if candidate not in taken:
            return candidate
        n += 1
