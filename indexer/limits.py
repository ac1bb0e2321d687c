"""How much one untrusted file may cost to parse: unpacked bytes, nesting, seconds, memory,
records and reply size; and how long one build may spend parsing all its files.

Uploads come from clients the server does not control. A 1 MB DOCX can inflate to
gigabytes, a 220 KB page can nest 20,000 elements deep and a 1.3 MB JSON lines file of
`{"text": "a"}` is 100,000 documents (a 30 MB reply from the parse worker, 135 MB in the
process that receives it), so every bound that keeps one file from taking down the process
that indexes it lives here, in one record that the CLI, the server and the parse worker
share (README, "The index", lists the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024

# libxml2 stops parsing, silently, at this depth even with huge_tree (256 without it):
# a deeper limit than this cannot be honoured, so such files are skipped, never truncated.
LIBXML2_MAX_DEPTH = 2048


@dataclass(frozen=True)
class ParseLimits:
    """The bounds a file is read under; a file over one is skipped with the reason.

    `isolated` runs every parse in a separate worker process whose address space is capped
    at `memory_bytes` and which the parent kills after `seconds`: the only way to bound a
    parser's memory and time that no input can get around. The size, depth and record limits
    hold in-process too; `max_reply_bytes` bounds what the parent reads back from the worker.
    `job_seconds` is shared by all the files of one build (one server job): once it is
    spent, the file being parsed is stopped and the rest are skipped, so that one upload of
    many slow files cannot hold the job queue for hours (N files x `seconds`).
    """

    max_member_bytes: int = 200 * MiB  # unpacked size of one archive member (DOCX parts)
    max_unpacked_bytes: int = 500 * MiB  # unpacked size of all members of one archive
    max_depth: int = 1024  # element nesting in HTML
    seconds: float = 30.0  # wall-clock time one file may take in the worker
    memory_bytes: int = 2048 * MiB  # the worker's address space (RLIMIT_AS)
    max_records: int = 50_000  # documents (JSON records, SQuAD articles) in one file
    max_reply_bytes: int = 128 * MiB  # the worker's reply for one file (JSON, UTF-8)
    job_seconds: float = 600.0  # parse time of one build or job, all its files together
    isolated: bool = True

    def __post_init__(self) -> None:
        for name in ("max_member_bytes", "max_unpacked_bytes", "max_depth", "memory_bytes",
                     "max_records", "max_reply_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("seconds", "job_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


DEFAULT_LIMITS = ParseLimits()


def megabytes(size: int) -> str:
    """200 * MiB -> "200 MB": how the limits are named in skip reasons."""
    return f"{size / MiB:g} MB"
