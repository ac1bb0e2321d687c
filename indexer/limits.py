"""How much one untrusted file may cost to parse: unpacked bytes, nesting, seconds, memory.

Uploads come from clients the server does not control. A 1 MB DOCX can inflate to
gigabytes and a 220 KB page can nest 20,000 elements deep, so every bound that keeps one
file from taking down the process that indexes it lives here, in one record that the CLI,
the server and the parse worker share (README, "The index", lists the defaults).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024

# libxml2 stops parsing, silently, at this depth even with huge_tree (256 without it):
# a deeper limit than this cannot be honoured, so such files are skipped, never truncated.
LIBXML2_MAX_DEPTH = 2048


@dataclass(frozen=True)
class ParseLimits:
    """The bounds a file is read under; a file over one is skipped with the reason.

    `isolated` runs every parse in a separate worker process whose address space is capped
    at `memory_bytes` and which the parent kills after `seconds`: the only way to bound a
    parser's memory and time that no input can get around. The size and depth limits hold
    in-process too.
    """

    max_member_bytes: int = 200 * MiB  # unpacked size of one archive member (DOCX parts)
    max_unpacked_bytes: int = 500 * MiB  # unpacked size of all members of one archive
    max_depth: int = 1024  # element nesting in HTML
    seconds: float = 30.0  # wall-clock time one file may take in the worker
    memory_bytes: int = 2048 * MiB  # the worker's address space (RLIMIT_AS)
    isolated: bool = True

    def __post_init__(self) -> None:
        for name in ("max_member_bytes", "max_unpacked_bytes", "max_depth", "memory_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParseLimits:
        return cls(**data)


DEFAULT_LIMITS = ParseLimits()


def megabytes(size: int) -> str:
    """200 * MiB -> "200 MB": how the limits are named in skip reasons."""
    return f"{size / MiB:g} MB"
