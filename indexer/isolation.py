"""Reading files in a parse worker process that can be killed, so no file can sink its caller.

A zip bomb or a page that sends a parser into quadratic time costs the process doing the
parsing its memory or its time. In the server that process also answers questions, so
each file is parsed in a worker (parse_worker.py) with a capped address space, and the
parent stops waiting after `ParseLimits.seconds`, kills the worker and skips the file with
the reason; the next file gets a fresh worker. One worker serves every file of a build,
so the cost per file is two pipe writes and a JSON round trip, not a process start.

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
from functools import partial
from pathlib import Path

from indexer.limits import ParseLimits, megabytes
from indexer.parse_worker import MEMORY_EXIT, READY, decode_results
from indexer.readers import MAX_FILE_BYTES, read_file
from indexer.records import Document, Skipped

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


class IsolatedReader:
    """`read_file` in a persistent worker process, restarted after it crashes or is killed.

    Used by one thread at a time (a build reads its files in order). `cancelled` is asked
    while a file is being parsed: when it says yes, the worker is killed and Cancelled
    raised, so a cancelled job does not wait out a 30-second file. `command` starts the
    worker (tests start one that misbehaves on purpose).
    """

    def __init__(self, limits: ParseLimits, *, max_bytes: int = MAX_FILE_BYTES,
                 cancelled: Callable[[], bool] | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.limits, self.max_bytes = limits, max_bytes
        self.cancelled = cancelled or (lambda: False)
        # -P: the working directory (which may hold anything) is not on the worker's path
        self.command = list(command or [sys.executable, "-P", "-m", "indexer.parse_worker"])
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # workers started so far: one, unless files crashed them

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, path: str | Path) -> list[Result]:
        path = Path(path)
        request = json.dumps({"path": str(path), "max_bytes": self.max_bytes}) + "\n"
        proc = self._send(request.encode("ascii"))
        try:
            reply = self._receive(proc, time.monotonic() + self.limits.seconds)
        except _TimedOut:
            self._kill()
            log.warning("parsing %s took longer than %g s: worker killed", path,
                        self.limits.seconds)
            return [Skipped(str(path), f"took longer than {self.limits.seconds:g} s")]
        except _Exited:
            return [Skipped(str(path), self._death_reason())]
        return decode_results(reply)

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
        for attempt in (1, 2):
            proc = self._worker()
            try:
                assert proc.stdin is not None
                proc.stdin.write(request)
                return proc
            except BrokenPipeError:
                self._discard()
                if attempt == 2:
                    raise WorkerStartError("the parse worker exits as soon as it is asked "
                                           "for a file") from None
        raise AssertionError("unreachable")

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._discard()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                          env.get("PYTHONPATH")]))
        proc = subprocess.Popen([*self.command, json.dumps(self.limits.to_dict())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                env=env)
        self._proc = proc
        self.started += 1
        try:
            ready = self._receive(proc, time.monotonic() + START_TIMEOUT_S) + b"\n"
        except (_TimedOut, _Exited) as exc:
            self._kill()
            raise WorkerStartError(
                f"the parse worker ({' '.join(self.command)}) did not start: "
                f"{'timed out' if isinstance(exc, _TimedOut) else 'it exited'}; its error "
                "output is in this process's stderr") from exc
        if ready != READY:
            self._kill()
            raise WorkerStartError(f"the parse worker said {ready[:80]!r}, not ready")
        return proc

    def _receive(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
        """One reply line, waited for in short slices so that a cancel is seen."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        chunks: list[bytes] = []
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
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise _Exited
            end = chunk.find(b"\n")
            if end >= 0:  # one request in flight: nothing can follow its reply
                chunks.append(chunk[:end])
                return b"".join(chunks)
            chunks.append(chunk)

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


@contextlib.contextmanager
def open_reader(limits: ParseLimits, *, max_bytes: int = MAX_FILE_BYTES,
                cancelled: Callable[[], bool] | None = None
                ) -> Iterator[Callable[[Path], list[Result]]]:
    """What reads each file of a build: the isolated worker, or `read_file` in this process
    when `limits.isolated` is off (trusted files; the size and depth limits still hold)."""
    if not limits.isolated:
        yield partial(read_file, max_bytes=max_bytes, limits=limits)
        return
    with IsolatedReader(limits, max_bytes=max_bytes, cancelled=cancelled) as reader:
        yield reader
