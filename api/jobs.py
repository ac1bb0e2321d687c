"""Background index updates: one worker thread runs the queued jobs in order.

An upload job adds its saved files (`update_index(add=...)`), a removal job drops
documents (`update_index(remove=...)`); either ends with `qa.reload()`, so the next
questions see the new generation while those already being answered finish on the old one.
When idle, the worker also follows generations other writers publish.

When another process holds the index's writer lock (`spanqa index add` from a shell), the
job waits and retries with backoff, saying so in its message. No upload is ever lost:
files stay in their upload folder whatever happens, a failed job records its error, and
each upload folder keeps a small job file so that jobs a stopped server had not finished
are queued again when it starts.

A job the server died in the middle of (its file still says "running") is resumed once; if
the server dies in it again it is marked failed at the next start, not resumed: a file
that kills the server must not kill it at every start. (Files are parsed in a worker
process under limits, indexer/isolation.py, so that should not happen; this is the
second line of defence.) A stop in order (Ctrl-C, SIGTERM) is no crash, even when the
process exits before the running job reaches its next look at the stop flag (it may be
writing a large generation): from the moment the stop begins, the job's file says
"queued", so only a real crash (kill -9, out of memory) leaves it saying "running".

A job can be cancelled: a queued one never runs, a running one stops at the next file, or
at once if a file is being parsed (its worker is killed), and publishes nothing, so the
index stays on the generation it had. A cancel asked for before the server stopped holds
at the next start: the job is cancelled, not resumed.

Job files are written by the job thread and by request threads (a cancel) alike: one lock
per queue orders the writes, and each write takes its snapshot of the job under it, so the
last write holds the latest state.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_json_atomic
from ..index.layout import IndexBusyError, IndexDir
from ..indexer.build import BuildReport, update_index
from ..indexer.isolation import Cancelled
from ..indexer.limits import DEFAULT_LIMITS, ParseLimits

log = logging.getLogger(__name__)

JOB_FILE = ".spanqa-job.json"  # hidden: folder walks in the indexer skip it
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
MAX_RESUMES = 1  # times a job the server died in is run again
KEEP_FINISHED = 1000  # finished jobs remembered in memory
STOPPED = "interrupted by a server stop; queued again at start"
EMBED_CHUNK = 32  # passages embedded per turn, so questions are not starved of the model


@dataclass
class Job:
    id: str
    kind: str  # "add" | "remove"
    files: list[str]  # upload: saved file names; removal: document ids
    status: str = "queued"
    message: str = "queued"
    progress: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    upload_dir: str | None = None
    paths: list[str] = field(default_factory=list)  # what update_index is given
    crashes: int = 0  # server deaths while this job ran (see requeue_unfinished)
    cancel_requested: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "files": list(self.files),
                "message": self.message, "progress": dict(self.progress),
                "report": self.report, "error": self.error, "created": self.created,
                "started": self.started, "finished": self.finished,
                "upload_dir": self.upload_dir, "crashes": self.crashes,
                "cancel_requested": self.cancel_requested}


class JobFinishedError(Exception):
    """The job cannot be cancelled: it has finished (the message says how)."""


class _Interrupted(Exception):
    """The server is stopping: the job stays queued (on disk) for the next start."""


class SharedEmbedder:
    """The retriever's embedding model, shared by query encoding (the retrieval thread) and
    index updates (the job thread), one caller at a time: fast tokenizers are not safe to
    call from two threads at once, and one model on two cores gains nothing from it."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.lock = threading.Lock()
        self.name = getattr(inner, "name", "")
        self.backend = getattr(inner, "backend", "auto")
        self.dim = getattr(inner, "dim", 0)
        self.batch_size = getattr(inner, "batch_size", 64)

    @property
    def model(self) -> Any:
        return self.inner.model

    def swap(self, inner: Any) -> None:
        """Another embedder from now on (the index was rebuilt with another model)."""
        with self.lock:
            self.inner = inner
            self.name = getattr(inner, "name", "")
            self.backend = getattr(inner, "backend", "auto")
            self.dim = getattr(inner, "dim", 0)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        with self.lock:
            return self.inner.encode(texts, progress=progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            encode = getattr(self.inner, "encode_queries", self.inner.encode)
            return encode(texts)


class _JobEmbedder:
    """Embeds a job's passages in small turns, reporting progress, so a question's query
    embedding waits for one turn, not for a whole upload."""

    def __init__(self, shared: Any, job: Job, set_progress: Callable[[Job, dict], None],
                 cancelled: Callable[[], bool] = lambda: False):
        self.shared, self.job, self.set_progress = shared, job, set_progress
        self.cancelled = cancelled
        self.name = getattr(shared, "name", "")
        self.backend = getattr(shared, "backend", "auto")
        self.dim = getattr(shared, "dim", 0)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return self.shared.encode([], progress=False)
        pieces = []
        for begin in range(0, len(texts), EMBED_CHUNK):
            if self.cancelled():
                raise Cancelled("cancelled while embedding passages")
            pieces.append(self.shared.encode(texts[begin:begin + EMBED_CHUNK], progress=False))
            self.set_progress(self.job, {"passages_embedded": min(begin + EMBED_CHUNK, len(texts)),
                                         "passages_to_embed": len(texts)})
        return np.concatenate(pieces)


def report_dict(report: BuildReport, names: dict[str, str] | None = None) -> dict[str, Any]:
    """The job's report; skipped upload paths are shown by their file names."""
    names = names or {}
    return {
        "added": report.added, "unchanged": report.unchanged, "removed": report.removed,
        "skipped": [{"path": names.get(s.path, s.path), "reason": s.reason}
                    for s in report.skipped],
        "not_found": list(report.not_found), "documents": report.documents,
        "passages": report.passages, "embedded": report.embedded,
        "generation": report.generation, "seconds": round(report.seconds, 3),
    }


class JobQueue:
    def __init__(self, qa: Any, *, index: Path, embedder: Any | None = None,
                 max_file_bytes: int | None = None, retry_initial_s: float = 0.2,
                 retry_max_s: float = 5.0, lock_timeout_s: float = 3600.0,
                 on_finish: Callable[[Job], None] | None = None, watch_s: float = 2.0,
                 limits: ParseLimits = DEFAULT_LIMITS):
        self.qa, self.index = qa, Path(index)
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        self.limits = limits
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.lock_timeout_s = lock_timeout_s
        self.on_finish = on_finish
        self.watch_s = watch_s  # how often, when idle, the index on disk is checked
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one job-file write at a time (see _save)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="spanqa-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the running job (an index update is atomic, so a job cut off by the
        process exiting leaves the previous generation live and is re-queued at start).
        The running job's file is rewritten first, saying "queued" (see _record): if the
        process exits before the job reaches its next look at the stop flag, the next start
        resumes it as stopped in order, not as a crash."""
        self._stop.set()
        self._queue.put(None)
        with self._lock:
            running = [job for job in self._jobs.values() if job.status == "running"]
        for job in running:
            self._save(job)
        if self._thread is not None:
            self._thread.join(timeout)

    def requeue_unfinished(self, uploads: Path) -> list[Job]:
        """Queue again the upload jobs a previous server run had not finished; a job it died
        in the middle of is resumed once (MAX_RESUMES), and failed the next time."""
        jobs = []
        for job_file in sorted(Path(uploads).glob(f"*/{JOB_FILE}")):
            try:
                data = json.loads(job_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("unreadable job file %s: %s", job_file, exc)
                continue
            if data.get("status") not in ("queued", "running"):
                continue
            paths = [p for p in data.get("paths", []) if isinstance(p, str)]
            crashes = data.get("crashes") if isinstance(data.get("crashes"), int) else 0
            died = data.get("status") == "running"  # a stop in order leaves it "queued"
            job = Job(id=str(data.get("id") or uuid.uuid4().hex), kind="add",
                      files=[str(f) for f in data.get("files", [])], paths=paths,
                      upload_dir=str(job_file.parent), crashes=crashes + died,
                      message="queued again after a server restart")
            if data.get("cancel_requested") is True:  # the cancel outlives the server
                job.cancel_requested = True
                job.status, job.finished = "cancelled", time.time()
                job.message = ("cancelled (asked for before the server stopped); nothing was "
                               "published")
                self._remember(job)
                continue
            if job.crashes > MAX_RESUMES:
                self._fail_after_crashes(job)
                continue
            if died:
                job.message = ("queued again: the server stopped while running it (resumed "
                               f"at most {MAX_RESUMES} time{'s' * (MAX_RESUMES != 1)})")
            jobs.append(self._enqueue(job))
            log.info("re-queued upload job %s (%d files)", job.id, len(paths),
                     extra={"job_id": job.id})
        return jobs

    def _fail_after_crashes(self, job: Job) -> None:
        job.status, job.finished = "failed", time.time()
        job.error = (f"the server stopped while running this job {job.crashes} times; it is "
                     "not resumed again, since one of its files may be what stops it")
        job.message = f"failed; the uploaded files are kept in {job.upload_dir}"
        self._remember(job)
        log.warning("job %s failed: %s", job.id, job.error, extra={"job_id": job.id})

    # ---------------------------------------------------------------- use

    def submit_add(self, paths: Sequence[Path], files: Sequence[str], upload_dir: Path) -> Job:
        job = Job(id=uuid.uuid4().hex, kind="add", files=list(files),
                  paths=[str(p) for p in paths], upload_dir=str(upload_dir))
        return self._enqueue(job)

    def submit_remove(self, document_ids: Sequence[str]) -> Job:
        job = Job(id=uuid.uuid4().hex, kind="remove", files=list(document_ids),
                  paths=list(document_ids))
        return self._enqueue(job)

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancels a job (None: no such job; JobFinishedError: it has finished). A queued
        job is cancelled at once; a running one when its build next looks (see jobs'
        docstring), so its status says "running" until then."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status in FINISHED:
                raise JobFinishedError(f"job {job_id!r} has already finished ({job.status})")
            job.cancel_requested = True
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
                job.message = "cancelled before it started; the index is unchanged"
            else:
                job.message = "cancelling: stops at the next file (a file being parsed is " \
                              "stopped at once)"
            public = job.public()
        self._save(job)
        log.info("job %s: cancel requested (%s)", job_id, public["status"],
                 extra={"job_id": job_id})
        return public

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.public() if job else None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            return [j.public() for j in reversed(self._jobs.values())][:limit]

    def counts(self) -> dict[str, int]:
        with self._lock:
            counter = collections.Counter(j.status for j in self._jobs.values())
        return {status: counter.get(status, 0) for status in STATUSES}

    # ---------------------------------------------------------------- internals

    def _remember(self, job: Job) -> None:
        """Known to the API from now on, and recorded in its file."""
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._save(job)

    def _enqueue(self, job: Job) -> Job:
        self._remember(job)
        self._queue.put(job)
        return job

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.status in FINISHED]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[key]

    def _update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(job, name, value)
        if "status" in changes:
            self._save(job)

    def _set_progress(self, job: Job, progress: dict) -> None:
        self._update(job, progress=progress,
                     message=f"embedding passages ({progress['passages_embedded']}/"
                             f"{progress['passages_to_embed']})")

    def _record(self, job: Job) -> dict[str, Any]:
        """What the job file says (call under self._lock). Once a stop has begun, a
        running job is recorded as queued: stopped in order, to be resumed, not a crash."""
        record = {**job.public(), "paths": list(job.paths)}
        if job.status == "running" and self._stop.is_set():
            record.update(status="queued", started=None, message=STOPPED)
        return record

    def _save(self, job: Job) -> None:
        """The job file in its upload folder: what a restarted server re-queues. The job
        thread and request threads (cancel) both save: under the save lock, one write at
        a time, each with the snapshot taken under it, so the last write is the latest."""
        if not job.upload_dir:
            return
        folder = Path(job.upload_dir)
        with self._save_lock:
            with self._lock:
                record = self._record(job)
            try:
                write_json_atomic(folder / JOB_FILE, record)
            except OSError as exc:
                log.warning("could not record job %s in %s: %s", job.id, folder, exc,
                            extra={"job_id": job.id})

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=self.watch_s)
            except queue.Empty:
                self._follow_other_writers()
                continue
            if job is None:
                break
            try:
                self._run(job)
            except Cancelled:
                self._update(job, status="cancelled", finished=time.time(),
                             message="cancelled; nothing was published, the index is unchanged")
                log.info("job %s cancelled", job.id, extra={"job_id": job.id})
            except _Interrupted:
                self._update(job, status="queued", started=None, message=STOPPED)
                continue
            except Exception as exc:  # the worker thread must survive any job
                log.exception("job %s failed", job.id, extra={"job_id": job.id})
                kept = f"; the uploaded files are kept in {job.upload_dir}" if job.upload_dir \
                    else ""
                self._update(job, status="failed", finished=time.time(),
                             error=f"{type(exc).__name__}: {exc}", message=f"failed{kept}")
            if self.on_finish is not None:
                try:
                    self.on_finish(job)
                except Exception:
                    log.exception("job callback failed")

    def _follow_other_writers(self) -> None:
        """Swap in a generation another writer (`spanqa index add`) published meanwhile:
        its documents become answerable, and the generation this server pinned is not
        left to be cleaned away under it."""
        try:
            live = IndexDir(self.index).current().name
            if live != self.qa.retriever.generation.name and self.qa.reload():
                log.info("the index changed on disk (another writer): now on %s", live)
        except Exception as exc:  # a half-written pointer, a missing folder: try again later
            log.warning("could not follow the index on disk: %s", exc)

    def _begin(self, job: Job) -> bool:
        """queued -> running, unless a cancel came first (under the lock: not both)."""
        with self._lock:
            if job.status != "queued":
                return False
            job.status, job.started = "running", time.time()
            job.message = ("adding files to the index" if job.kind == "add"
                           else "removing documents from the index")
        self._save(job)
        return True

    def _stopping(self, job: Job) -> bool:
        """What the build asks between files: a cancel, or a server stop."""
        return job.cancel_requested or self._stop.is_set()

    def _run(self, job: Job) -> None:
        if not self._begin(job):
            return
        stopping = partial(self._stopping, job)
        kwargs: dict[str, Any] = {"progress": False, "limits": self.limits,
                                  "cancelled": stopping}
        if job.kind == "add":
            kwargs["add"] = job.paths
        else:
            kwargs["remove"] = job.paths
        if self.embedder is not None:
            kwargs["embedder"] = _JobEmbedder(self.embedder, job, self._set_progress, stopping)
        if self.max_file_bytes is not None:
            kwargs["max_file_bytes"] = self.max_file_bytes
        began, delay, attempt = time.monotonic(), self.retry_initial_s, 0
        while True:
            try:
                report = update_index(self.index, **kwargs)
                break
            except Cancelled:
                if job.cancel_requested:
                    raise
                raise _Interrupted from None  # the server stops: run it again at start
            except IndexBusyError as exc:
                attempt += 1
                if attempt == 1:
                    log.info("job %s waits for the index lock: %s", job.id, exc,
                             extra={"job_id": job.id})
                if time.monotonic() - began > self.lock_timeout_s:
                    raise IndexBusyError(
                        f"gave up after waiting {self.lock_timeout_s:.0f} s for the index "
                        f"lock: {exc}") from exc
                self._update(job, message=f"waiting for index lock (another writer holds it; "
                                          f"attempt {attempt}, next try in {delay:.1f} s)")
                if self._stop.wait(delay):
                    raise _Interrupted from exc
                if job.cancel_requested:
                    raise Cancelled("cancelled while waiting for the index lock") from exc
                delay = min(delay * 2, self.retry_max_s)
        self._update(job, message="loading the new index generation")
        self.qa.reload()
        names = {p: Path(p).name for p in job.paths} if job.kind == "add" else {}
        result = report_dict(report, names)
        summary = (f"done: {report.added} added, {report.unchanged} unchanged, "
                   f"{report.removed} removed, {len(report.skipped)} skipped; "
                   f"generation {report.generation}")
        if job.cancel_requested:  # asked for after the last look, before it was published
            summary += " (the cancel came after the new generation was published)"
        self._update(job, status="done", finished=time.time(), report=result, message=summary)
        log.info("job %s %s", job.id, summary, extra={"job_id": job.id})
