"""Reading files in a parse worker process that can be killed, so no file can sink its caller.

A zip bomb or a page that sends a parser into quadratic time costs the process doing the
parsing its memory or its time. In the server that process also answers questions, so
each file is parsed in a worker (parse_worker.py) with a capped address space, and the
parent stops waiting after `ParseLimits.seconds`, kills the worker and skips the file with
the reason; the next file gets a fresh worker. One worker serves every file of a build,
so the cost per file is two pipe writes and a JSON round trip, not a process start.

The worker's reply is what a process that has just parsed hostile bytes says, so the parent
trusts none of it: it reads at most `ParseLimits.max_reply_bytes` (a file of 100,000 tiny
JSON records made a 30 MB reply, and 135 MB of records here), and checks every record
before it becomes a Document: strict JSON, the fields and types read_file gives, the path
asked for, and the id that path gives, so that a worker gone wrong cannot replace other
documents of the index. A reply that fails is the worker's fault: it is killed and the file
skipped ("parse worker sent an invalid reply").

A build's files share one parse-time budget (`ParseLimits.job_seconds`, `ParseBudget`):
once it is spent the file being parsed is stopped and the rest are skipped, so one upload
of many slow files cannot hold the server's job queue for hours.

`open_reader` gives the callable `iter_documents` reads each file with: this worker, or
plain `read_file` when isolation is turned off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..core.strictjson import strict_loads
from ..index.records import Document, Section, Skipped
from .formats import MAX_FILE_BYTES, content_hash, document_id, read_file
from .limits import ParseLimits, megabytes
from .parse_worker import MEMORY_EXIT, READY

log = logging.getLogger(__name__)

Result = Document | Skipped
START_TIMEOUT_S = 120.0  # importing the parsers on a loaded machine; not a file's time
_POLL_S = 0.1  # how often a wait looks at `cancelled`
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class Cancelled(Exception):
    """The caller asked for the build to stop; nothing it had read is published."""


class WorkerStartError(RuntimeError):
    """The worker could not start: the installation's fault, not a file's."""


class _TimedOut(Exception):
    pass


class _Exited(Exception):
    pass


class _TooLarge(Exception):
    """The reply went past its byte limit before its end."""


class _InvalidReply(Exception):
    """The reply is not what read_file could have returned for the file asked for."""


class ParseBudget:
    """The parse time one build (one server job) may spend, all its files together: files
    asked for once it is spent are skipped, and the isolated reader stops the file that
    spends it. Time the worker takes to start is not counted: that is not a file's."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.used = seconds, 0.0

    @property
    def left(self) -> float:
        return self.seconds - self.used

    def skip(self, path: Path) -> Skipped:
        return Skipped(str(path), f"the job's parse budget of {self.seconds:g} s is spent")

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.used += time.monotonic() - began


class IsolatedReader:
    """`read_file` in a persistent worker process, restarted after it crashes or is killed.

    Used by one thread at a time (a build reads its files in order), and for one build:
    its files share `budget`. `cancelled` is asked while a file is being parsed: when it
    says yes, the worker is killed and Cancelled raised, so a cancelled job does not wait
    out a 30-second file. `command` starts the worker (tests start one that misbehaves on
    purpose).
    """

    def __init__(self, limits: ParseLimits, *, max_bytes: int = MAX_FILE_BYTES,
                 cancelled: Callable[[], bool] | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.limits, self.max_bytes = limits, max_bytes
        self.cancelled = cancelled or (lambda: False)
        # -P: the working directory (which may hold anything) is not on the worker's path
        self.command = list(command or [sys.executable, "-P", "-m", "spanqa.indexer.parse_worker"])
        self.budget = ParseBudget(limits.job_seconds)
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # workers started so far: one, unless files crashed them

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, path: str | Path) -> list[Result]:
        path = Path(path)
        left = self.budget.left
        if left <= 0:
            return [self.budget.skip(path)]
        request = json.dumps({"path": str(path), "max_bytes": self.max_bytes}) + "\n"
        proc = self._send(request.encode("ascii"))
        seconds = min(self.limits.seconds, left)
        with self.budget.timing():
            try:
                reply = self._receive(proc, time.monotonic() + seconds,
                                      self.limits.max_reply_bytes)
                return _results(reply, path, self.limits.max_records)
            except _TimedOut:
                self._kill()
                if seconds < self.limits.seconds:  # the budget ran out first
                    log.warning("the parse budget ran out while parsing %s: worker killed",
                                path)
                    return [self.budget.skip(path)]
                log.warning("parsing %s took longer than %g s: worker killed", path, seconds)
                return [Skipped(str(path), f"took longer than {self.limits.seconds:g} s")]
            except _Exited:
                return [Skipped(str(path), self._death_reason())]
            except _TooLarge:
                self._kill()
                limit = megabytes(self.limits.max_reply_bytes)
                log.warning("the parse worker's reply for %s is over %s: worker killed",
                            path, limit)
                return [Skipped(str(path), f"parse result over the {limit} limit")]
            except _InvalidReply as exc:
                self._kill()
                log.warning("the parse worker sent an invalid reply for %s (%s): worker "
                            "killed", path, exc)
                return [Skipped(str(path), f"parse worker sent an invalid reply ({exc})")]

    def close(self) -> None:
        """Ends the worker: its stdin closes, so it finishes; killed if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    # ---------------------------------------------------------------- the worker

    def _send(self, request: bytes) -> subprocess.Popen[bytes]:
        """The request written to a live worker; one that died since its last reply (killed
        from outside) is replaced once, so its death is not blamed on this file."""
        try:
            return self._write(self._worker(), request)
        except BrokenPipeError:
            self._discard()
        try:  # the one retry, with a fresh worker
            return self._write(self._worker(), request)
        except BrokenPipeError:
            self._discard()
            raise WorkerStartError("the parse worker exits as soon as it is asked for a "
                                   "file") from None

    @staticmethod
    def _write(proc: subprocess.Popen[bytes], request: bytes) -> subprocess.Popen[bytes]:
        assert proc.stdin is not None
        proc.stdin.write(request)
        return proc

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._discard()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                          env.get("PYTHONPATH")]))
        proc = subprocess.Popen([*self.command, json.dumps(asdict(self.limits))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                env=env)
        self._proc = proc
        self.started += 1
        try:
            ready = self._receive(proc, time.monotonic() + START_TIMEOUT_S, len(READY)) + b"\n"
        except (_TimedOut, _Exited) as exc:
            self._kill()
            raise WorkerStartError(
                f"the parse worker ({' '.join(self.command)}) did not start: "
                f"{'timed out' if isinstance(exc, _TimedOut) else 'it exited'}; its error "
                "output is in this process's stderr") from exc
        except (_TooLarge, _InvalidReply) as exc:
            self._kill()
            raise WorkerStartError("the parse worker said more than that it is ready") from exc
        if ready != READY:
            self._kill()
            raise WorkerStartError(f"the parse worker said {ready[:80]!r}, not ready")
        return proc

    def _receive(self, proc: subprocess.Popen[bytes], deadline: float, limit: int
                 ) -> bytearray:
        """One reply line (without its newline), waited for in short slices so that a
        cancel is seen, and read into one buffer: never a byte more than `limit` (then
        _TooLarge), never a second copy."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        reply = bytearray()
        while True:
            if self.cancelled():
                self._kill()
                raise Cancelled("cancelled while a file was being parsed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _TimedOut
            readable, _, _ = select.select([fd], [], [], min(remaining, _POLL_S))
            if not readable:
                continue
            chunk = os.read(fd, min(1 << 20, limit + 1 - len(reply)))
            if not chunk:
                raise _Exited
            end = chunk.find(b"\n")
            if end >= 0:
                if end + 1 < len(chunk):  # one request in flight: nothing can follow its reply
                    raise _InvalidReply("bytes after the end of the reply")
                reply += memoryview(chunk)[:end]
                return reply
            reply += chunk
            if len(reply) > limit:
                raise _TooLarge

    def _death_reason(self) -> str:
        proc = self._proc
        code = proc.wait() if proc is not None else None
        self._discard()
        if code == MEMORY_EXIT:
            return f"parser exceeded its memory limit ({megabytes(self.limits.memory_bytes)})"
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return f"parser crashed (killed by {name})"
        return f"parser crashed (exit status {code})"

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._discard()

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# ---------------------------------------------------------------- the reply, checked

_DOCUMENT_FIELDS = frozenset(f.name for f in fields(Document))
_SECTION_FIELDS = frozenset(f.name for f in fields(Section))
_TEXT_FIELDS = ("id", "path", "title", "text", "content_hash")


def _results(reply: bytearray, path: Path, max_records: int) -> list[Result]:
    """The worker's reply for `path` as records, each checked to be what read_file could
    have returned for it (_InvalidReply otherwise). The reasons name fields and positions,
    never what the worker sent."""
    try:
        items = strict_loads(reply.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError too
        raise _InvalidReply("not strict JSON in UTF-8") from exc
    del reply[:]  # the text is decoded: its bytes are no longer needed while records build
    if not isinstance(items, list):
        raise _InvalidReply("not a list")
    if len(items) > max(1, max_records):
        raise _InvalidReply(f"{len(items)} records, over the {max_records}-record limit")
    resolved: list[str] = []  # the path every document must have, resolved once if needed
    results: list[Result] = []
    for number, item in enumerate(items):
        where = f"item {number}"
        if not isinstance(item, dict) or len(item) != 1:
            raise _InvalidReply(f"{where} is not one document or skip")
        ((kind, value),) = item.items()
        if kind == "skipped":
            results.append(_skipped(value, path, where))
        elif kind == "document":
            if not resolved:
                try:
                    resolved.append(str(path.resolve()))
                except (OSError, RuntimeError) as exc:
                    raise _InvalidReply(f"{where}: a document from a path that does not "
                                        "resolve") from exc
            results.append(_document(value, resolved[0], where))
        else:
            raise _InvalidReply(f"{where} is not one document or skip")
    return results


def _skipped(value: Any, path: Path, where: str) -> Skipped:
    if not (isinstance(value, dict) and value.keys() == {"path", "reason"}
            and isinstance(value["reason"], str)):
        raise _InvalidReply(f"{where}: not a skip's fields")
    if value["path"] != str(path):
        raise _InvalidReply(f"{where}: a skip of another path")
    return Skipped(str(path), value["reason"])


def _document(value: Any, resolved: str, where: str) -> Document:
    """A Document only if it is the one read_file would make: its path the file asked for
    (resolved), its id the one that path and its record id give (`document_id`), its hash
    its text's; ids of other files cannot come out of here."""
    if not isinstance(value, dict) or value.keys() != _DOCUMENT_FIELDS:
        raise _InvalidReply(f"{where}: not a document's fields")
    for name in _TEXT_FIELDS:
        if not isinstance(value[name], str):
            raise _InvalidReply(f"{where}: {name} is not a string")
    metadata, mtime = value["metadata"], value["mtime"]
    if not isinstance(metadata, dict):
        raise _InvalidReply(f"{where}: metadata is not an object")
    if not isinstance(mtime, int | float) or isinstance(mtime, bool):
        raise _InvalidReply(f"{where}: mtime is not a number")
    if value["path"] != resolved or metadata.get("path") != resolved:
        raise _InvalidReply(f"{where}: a document of another path")
    record_id = metadata.get("record_id")
    if record_id is not None and not isinstance(record_id, str):
        raise _InvalidReply(f"{where}: record_id is not a string")
    if value["id"] != document_id(resolved, record_id):
        raise _InvalidReply(f"{where}: an id that its path and record id do not give")
    if value["content_hash"] != content_hash(value["text"]):
        raise _InvalidReply(f"{where}: a content hash that is not its text's")
    return Document(id=value["id"], path=resolved, title=value["title"], text=value["text"],
                    content_hash=value["content_hash"], mtime=float(mtime), metadata=metadata,
                    sections=_sections(value["sections"], len(value["text"]), where))


def _sections(value: Any, length: int, where: str) -> list[Section]:
    if not isinstance(value, list):
        raise _InvalidReply(f"{where}: sections is not a list")
    sections: list[Section] = []
    for section in value:
        if not isinstance(section, dict) or section.keys() != _SECTION_FIELDS:
            raise _InvalidReply(f"{where}: not a section's fields")
        start, end, page = section["start"], section["end"], section["page"]
        if not (_is_int(start) and _is_int(end) and (page is None or _is_int(page))
                and 0 <= start <= end <= length):
            raise _InvalidReply(f"{where}: a section outside its text")
        sections.append(Section(start, end, page))
    return sections


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- one build's reader


@contextlib.contextmanager
def open_reader(limits: ParseLimits, *, max_bytes: int = MAX_FILE_BYTES,
                cancelled: Callable[[], bool] | None = None,
                command: Sequence[str] | None = None
                ) -> Iterator[Callable[[Path], list[Result]]]:
    """What reads each file of one build, within its parse budget: the isolated worker
    (started with `command`, see IsolatedReader), or `read_file` in this process when
    `limits.isolated` is off (trusted files; the size, depth and record limits still hold,
    and the budget between files, but no file is stopped)."""
    if limits.isolated:
        with IsolatedReader(limits, max_bytes=max_bytes, cancelled=cancelled,
                            command=command) as reader:
            yield reader
        return
    budget = ParseBudget(limits.job_seconds)

    def read_in_process(path: Path) -> list[Result]:
        if budget.left <= 0:
            return [budget.skip(path)]
        with budget.timing():
            return read_file(path, max_bytes=max_bytes, limits=limits)

    yield read_in_process
