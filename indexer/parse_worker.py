"""The parse worker: a process of its own that reads untrusted files under resource limits.

    python -m indexer.parse_worker '<ParseLimits as JSON>'

It says "ready" once its parsers are imported, then answers one JSON line on stdout for
each request line on stdin ({"path", "max_bytes"}): the file's Documents and Skipped
records. Its address space is capped (RLIMIT_AS), so a file that needs more memory than the
limit fails here with MemoryError, and the worker exits with MEMORY_EXIT, instead of
growing the server; the parent (isolation.py) enforces the wall-clock limit by killing it.

Replies are strict JSON in UTF-8, not pickle: the parent decodes what a process that has
just parsed hostile bytes sends it, and JSON cannot run code; the parent also reads at most
`ParseLimits.max_reply_bytes` of it and checks every record (isolation.py). Non-ASCII text is
sent as it is, not as \\u escapes (six bytes for a Cyrillic letter), so that a reply is
about the size of the text it carries; lone surrogates, which JSON records may hold, travel
as their UTF-8 forms ("surrogatepass" at both ends).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from dataclasses import asdict
from typing import Any

from ..index.records import Document, Skipped
from .limits import ParseLimits

READY = b"ready\n"
MEMORY_EXIT = 3  # the exit status that means "over the memory limit"
_CPU_SLACK_S = 5  # the worker's own CPU cap per file, beyond twice the parent's wall limit


def encode_results(results: list[Document | Skipped]) -> bytes:
    """One reply line (without its newline): a JSON list of {"document": ...} and
    {"skipped": ...} items, strict (the readers refuse NaN; should one get through, this
    fails here rather than in the parent or the index)."""
    items: list[dict[str, Any]] = []
    for item in results:
        if isinstance(item, Document):
            items.append({"document": asdict(item)})
        else:
            items.append({"skipped": {"path": item.path, "reason": item.reason}})
    return json.dumps(items, ensure_ascii=False, allow_nan=False).encode("utf-8",
                                                                        "surrogatepass")


def _preload() -> None:
    """The parsers' imports happen before the limits apply and before the first file's
    clock starts: importing them is not the file's cost."""
    import docx  # noqa: F401  (formats.py imports these two when it meets a file)
    import pypdfium2  # noqa: F401

    from . import formats  # noqa: F401


def _limit_memory(memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no gigabyte core files


def _limit_cpu(seconds: float) -> None:
    """A backstop the kernel enforces should the parent die without killing the worker:
    a file may use this much more CPU time before SIGXCPU ends the worker."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(usage.ru_utime + usage.ru_stime + 2 * seconds + _CPU_SLACK_S)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    limits = ParseLimits(**json.loads(args[0]))
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what stops
    # (it kills the worker, or closes its stdin, which ends the loop below).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies
    _preload()
    _limit_memory(limits.memory_bytes)
    from .formats import read_file

    replies.write(READY)
    replies.flush()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        _limit_cpu(limits.seconds)
        try:
            results = read_file(request["path"], max_bytes=request["max_bytes"], limits=limits)
            reply = encode_results(results)
        except MemoryError:
            os._exit(MEMORY_EXIT)  # no clean-up: the heap may be too full for it
        replies.write(reply)
        replies.write(b"\n")  # apart: `reply + b"\n"` would copy a reply of up to 128 MB
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
