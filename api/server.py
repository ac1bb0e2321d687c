"""The HTTP API behind `spanqa serve` (FastAPI): ask, search, upload, feedback, metrics.

    app = create_app(QA("data/index", "data/readers/demo"), Settings())
    uvicorn.run(app)

Each question is retrieved as it arrives (on a retrieval thread), then goes through a
micro-batcher (api/batching.py) that reads concurrent questions' passages in one reader
pass on one model thread; uploads and removals are queued as background
index jobs (api/jobs.py) whose new generation is swapped in when they finish, while the
questions already in flight finish on the generation they started with.

Bad input is always a 4xx with a message naming what was wrong, never a 500: schema errors
are 422s naming the field, oversized bodies 413 (Content-Length and counted bytes), files
of unknown types 415. A failure inside the pipeline is logged with the request id and
answered with a 500 carrying the same id.

Callers without an API key see server paths relative to the collection (api/paths.py); a
valid key shows the full paths. Feedback is training data, so it needs a key unless the
operator allows anonymous feedback, which is then rate-limited per client, size-capped,
capped in rows and marked, and left out of the export unless asked for.

The request bodies live in api/schemas.py, the middleware every request passes through in
api/gate.py, the Prometheus metrics in api/metrics.py; this module holds the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, Security, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.strictjson import finite
from ..index import store
from ..indexer.formats import SUPPORTED
from ..indexer.limits import DEFAULT_LIMITS, ParseLimits
from ..retriever.search import Filters
from ..runtime.device import release_openmp_workers
from .auth import HEADER, KeyStore, how_to_create
from .feedback import FeedbackFull, FeedbackStore
from .gate import MiB, RequestGate
from .jobs import JobFinishedError, JobQueue, SharedEmbedder
from .logs import REQUEST_ID
from .microbatch import MicroBatcher, Overloaded
from .paths import PathView, collection_root, public_name
from .prometheus import Metrics
from .qa import QA, AskRequest
from .ratelimit import ClientRateLimiter
from .schemas import AskIn, FeedbackIn, FiltersIn, SearchIn
from .uploads import safe_filename, unique_name

log = logging.getLogger("spanqa.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class Settings:
    """Server settings; paths left None default to siblings of the index directory."""

    index: Path | None = None
    uploads_dir: Path | None = None  # <index>/../uploads
    keys_file: Path | None = None  # <index>/../api_keys.json
    feedback_db: Path | None = None  # <index>/../feedback.db
    protect_all: bool = False  # every /v1 endpoint but health needs a key
    # Feedback without a key (else it needs one; protect_all wins): rate-limited per client
    # address, its fields capped (ANONYMOUS_MAX_CHARS), at most max_rows such rows kept.
    anonymous_feedback: bool = False
    anonymous_feedback_per_minute: float = 6.0
    anonymous_feedback_burst: int = 5
    anonymous_feedback_max_rows: int = 10_000
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    max_pending: int = 1024  # questions waiting for the model before 503s
    max_json_bytes: int = 1 * MiB
    max_upload_bytes: int = 50 * MiB
    reader_name: str | None = None
    static_dir: Path = STATIC_DIR
    lock_retry_max_s: float = 5.0
    lock_timeout_s: float = 3600.0
    watch_index_s: float = 2.0  # how often an idle server looks for other writers' updates
    parse_limits: ParseLimits = DEFAULT_LIMITS  # what one uploaded file may cost to parse
    # FastAPI's /docs and /redoc: off by default, since they load their script from a CDN
    # onto the origin where the page keeps its API key (/openapi.json is always served).
    api_docs: bool = False

    def resolve(self, qa: QA) -> Settings:
        index = Path(self.index or qa.index)
        home = index.resolve().parent
        out = Settings(**{**self.__dict__})
        out.index = index
        out.uploads_dir = Path(self.uploads_dir or home / "uploads")
        out.keys_file = Path(self.keys_file or home / "api_keys.json")
        out.feedback_db = Path(self.feedback_db or home / "feedback.db")
        out.reader_name = self.reader_name or reader_name(qa)
        return out


def reader_name(qa: QA) -> str:
    config = getattr(getattr(qa.reader, "model", None), "config", None)
    return str(getattr(config, "_name_or_path", "") or type(qa.reader).__name__)


class _StaticFiles(StaticFiles):
    """A missing static folder is a 404, not a 500 (the page ships separately)."""

    async def check_config(self) -> None:
        if self.directory is None or not Path(self.directory).is_dir():
            raise StarletteHTTPException(404, "no static files on this server")
        await super().check_config()


# Feedback fields from callers without a key: a question as long as the page allows, a
# short answer and comment (the schema's own limits are for callers with a key).
ANONYMOUS_MAX_CHARS = {"question": 1000, "answer": 500, "comment": 500}

PLACEHOLDER = """<!doctype html><html lang="en"><meta charset="utf-8"><title>SpanQA</title>
<body><h1>SpanQA</h1><p>The web page is not installed on this server. The API is described
in <a href="/openapi.json">/openapi.json</a>.</p></body></html>"""


# ------------------------------------------------------------------------- helpers


def request_id() -> str:
    return REQUEST_ID.get() or ""


def clean_errors(errors: Any) -> list[dict]:
    """Validation errors without the offending input (it may be 100k characters, or bytes
    that are not UTF-8) and with JSON-safe context values."""
    out = []
    for error in errors:
        item = {k: v for k, v in dict(error).items() if k not in ("input", "url")}
        if isinstance(item.get("ctx"), dict):
            item["ctx"] = {k: v if isinstance(v, int | float | str | bool | None) else str(v)
                           for k, v in item["ctx"].items()}
        item["loc"] = [p if isinstance(p, int | str) else str(p) for p in item.get("loc", ())]
        out.append(item)
    return out


@contextlib.contextmanager
def generation_db(qa: QA) -> Iterator[Any]:
    """A private read-only connection to the live generation's SQLite (request threads must
    not share the retriever's connection with the retrieval thread)."""
    for attempt in range(3):
        retriever = qa.retriever
        try:
            db = store.open_db(retriever.generation)
            db.execute("select 1 from documents limit 1")
        except sqlite3.OperationalError:
            if attempt == 2:
                raise
            # The generation was replaced and cleaned up (by another writer): follow it.
            with contextlib.suppress(Exception):
                qa.reload()
            time.sleep(0.05)
            continue
        try:
            yield db, retriever.generation.name
        finally:
            db.conn.close()
        return


# ------------------------------------------------------------------------- the app


def create_app(qa: QA, settings: Settings | None = None) -> FastAPI:
    settings = (settings or Settings()).resolve(qa)
    assert settings.uploads_dir and settings.keys_file and settings.feedback_db
    started_at = time.time()
    metrics = Metrics()
    keys = KeyStore(settings.keys_file)
    feedback = FeedbackStore(settings.feedback_db)
    anonymous_posts = ClientRateLimiter(settings.anonymous_feedback_per_minute,
                                        settings.anonymous_feedback_burst)
    uploads_root = Path(settings.uploads_dir).resolve()
    # (generation, its collection root): replaced whole, in one assignment, and read once
    # per use, so a request thread never sees one generation's name with another's root.
    live_root: tuple[str, Path | None] | None = None

    # One embedding model, shared by queries and index updates, one caller at a time.
    retriever = qa.retriever
    if not isinstance(retriever.loaded_embedder, SharedEmbedder):
        retriever.use_embedder(SharedEmbedder(retriever.embedder))
    shared_embedder = retriever.loaded_embedder

    # Retrieval runs as each question arrives, on its own thread; the micro-batcher then
    # reads the passages of the questions that arrived together in one reader pass.
    retrieval = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanqa-retrieve")
    batcher = MicroBatcher(qa.read, max_batch=settings.max_batch,
                           max_wait_ms=settings.batch_wait_ms,
                           max_pending=settings.max_pending,
                           on_batch=lambda n: metrics.batch_size.observe(n))
    jobs = JobQueue(qa, index=settings.index, embedder=shared_embedder,
                    max_file_bytes=settings.max_upload_bytes,
                    retry_max_s=settings.lock_retry_max_s,
                    lock_timeout_s=settings.lock_timeout_s, watch_s=settings.watch_index_s,
                    limits=settings.parse_limits,
                    on_finish=lambda j: metrics.jobs_finished.labels(j.kind, j.status).inc())
    metrics.add_live(qa, jobs, batcher)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # The model was loaded on this thread and is read on the batcher's: this thread's
        # idle OpenMP workers would slow every forward pass (see release_openmp_workers).
        release_openmp_workers()
        await batcher.start()
        jobs.start()
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        jobs.requeue_unfinished(settings.uploads_dir)
        log.info("serving %s (generation %s, %d passages) with reader %s", settings.index,
                 qa.retriever.generation.name, qa.retriever.passages, settings.reader_name)
        yield
        await batcher.stop()
        retrieval.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(jobs.stop)
        feedback.close()

    app = FastAPI(
        title="SpanQA", version="0.1.0", lifespan=lifespan,
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        description="Retrieval-augmented extractive question answering: answers are exact "
                    "spans of your documents, with their sources. Write endpoints need an "
                    f"API key in the `{HEADER}` header.")
    app.state.qa, app.state.settings, app.state.metrics = qa, settings, metrics
    app.state.batcher, app.state.jobs, app.state.keys = batcher, jobs, keys
    app.state.feedback = feedback
    app.add_middleware(RequestGate, max_json_bytes=settings.max_json_bytes,
                       max_upload_bytes=settings.max_upload_bytes, metrics=metrics,
                       docs_pages=settings.api_docs)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "request_id": request_id()},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": jsonable_encoder(clean_errors(exc.errors())),
                             "request_id": request_id()}, status_code=422)

    # ------------------------------------------------------------------ auth

    key_header = APIKeyHeader(name=HEADER, auto_error=False,
                              description="an API key from `spanqa keys create`")

    def check_key(key: str | None, why: str = "") -> dict:
        """The record of a valid key, else a 401 saying what is missing (without the keys
        file's path: the caller has no key and need not learn the server's layout)."""
        if not keys.configured():
            raise HTTPException(401, "this endpoint needs an API key, and no API keys are "
                                     f"configured on this server: {how_to_create()}")
        if not key:
            raise HTTPException(401, f"this endpoint needs an API key in the {HEADER} "
                                     f"header{why}")
        record = keys.verify(key)
        if record is None:
            raise HTTPException(401, f"invalid API key in the {HEADER} header")
        return record

    def key_name(key: str | None, why: str = "") -> str:
        """The name of a valid key ("" for a record without one), else the 401."""
        return str(check_key(key, why).get("name") or "")

    # (Defaults, not Annotated: annotations are strings resolved in the module's globals.)
    async def write_key(key: str | None = Security(key_header)) -> str:
        return key_name(key)

    async def read_key(key: str | None = Security(key_header)) -> str | None:
        """The caller's key name, None without a key (it decides what paths it sees); a
        wrong key is a 401 even where none is needed (a typo must not quietly turn its
        caller anonymous)."""
        return key_name(key) if key or settings.protect_all else None

    async def feedback_key(key: str | None = Security(key_header)) -> str | None:
        """None for an anonymous post the operator allows; else the key's name or a 401."""
        if key or settings.protect_all or not settings.anonymous_feedback:
            return key_name(key, " (this server takes no anonymous feedback)")
        return None

    # ------------------------------------------------------------------ paths

    def cached_path_view() -> PathView | None:
        """The live generation's view if its root is known already (no query), else None."""
        cached = live_root
        if cached is not None and cached[0] == qa.retriever.generation.name:
            return PathView(uploads_root, cached[1])
        return None

    def path_view() -> PathView:
        """What keyless callers see of paths, for the live generation (its collection root
        is looked up once per generation: a distinct-path scan of its documents)."""
        nonlocal live_root
        view = cached_path_view()
        if view is not None:
            return view
        with generation_db(qa) as (db, name):
            paths = [r["path"] for r in db.query("select distinct path from documents")]
        root = collection_root(paths, uploads_root)
        live_root = (name, root)
        return PathView(uploads_root, root)

    async def path_view_async() -> PathView:
        """path_view for the async routes: the scan, when one is due, runs off the event
        loop (it takes as long as the documents table is big)."""
        return cached_path_view() or await asyncio.to_thread(path_view)

    def public_paths(items: list[dict], view: PathView) -> None:
        """Answers', hits' and documents' `path` (and a document's metadata path) made
        public in place; their text is left as it is (offsets point into it)."""
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                item["path"] = view.public(item["path"])
                metadata = item.get("metadata")
                if isinstance(metadata, dict) and isinstance(metadata.get("path"), str):
                    metadata["path"] = view.public(metadata["path"])

    async def server_filters(filters_in: FiltersIn | None, caller: str | None
                             ) -> Filters | None:
        """The request's filters with its path prefix turned into a server path, or a 422
        naming the field."""
        filters = filters_in.to_filters() if filters_in else None
        if filters is None or not filters.path_prefix:
            return filters
        try:
            prefix = (await path_view_async()).server_prefix(filters.path_prefix,
                                                             keyed=caller is not None)
        except ValueError as exc:
            raise RequestValidationError([{
                "loc": ("body", "filters", "path_prefix"), "msg": str(exc),
                "type": "value_error"}]) from exc
        return replace(filters, path_prefix=prefix)

    write_auth = [Depends(write_key)]
    read_auth = [Depends(read_key)]

    # ------------------------------------------------------------------ questions

    @app.post("/v1/ask", dependencies=read_auth, tags=["questions"],
              summary="answer a question with spans from the indexed documents")
    async def ask(body: AskIn, caller: str | None = Depends(read_key)) -> dict:
        filters = await server_filters(body.filters, caller)
        request = AskRequest(question=body.question, top_k=body.top_k,
                             retrieval_k=body.retrieval_k, filters=filters, mode=body.mode)
        loop = asyncio.get_running_loop()
        try:
            with batcher.expecting():
                retrieved = await loop.run_in_executor(retrieval, qa.retrieve, [request])
            result = await batcher.submit(retrieved[0])
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except Overloaded as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
        out = {**finite(result.to_dict()), "request_id": request_id()}
        if caller is None:
            public_paths([*out["answers"], *out["passages"], out["best_guess"]],
                         await path_view_async())
        return out

    @app.post("/v1/search", dependencies=read_auth, tags=["questions"],
              summary="the top passages for a question, without reading them")
    async def search(body: SearchIn, caller: str | None = Depends(read_key)) -> dict:
        retriever = qa.retriever
        filters = await server_filters(body.filters, caller)
        try:
            hits = await asyncio.get_running_loop().run_in_executor(retrieval, partial(
                retriever.search, body.question, body.top_k, mode=body.mode or qa.mode,
                filters=filters))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        found = [finite(asdict(h)) for h in hits]
        if caller is None:
            public_paths(found, await path_view_async())
        return {"hits": found, "generation": retriever.generation.name,
                "request_id": request_id()}

    # ------------------------------------------------------------------ documents

    @app.post("/v1/documents", status_code=202, dependencies=write_auth, tags=["documents"],
              summary="upload files to index (multipart field `files`, repeatable)")
    def upload(files: Annotated[list[UploadFile], File(
            description=f"one or more files: {', '.join(SUPPORTED)}")]) -> dict:
        names: list[str] = []
        for item in files:
            name = safe_filename(item.filename)
            suffix = Path(name).suffix.lower()
            if suffix not in SUPPORTED:
                shown = item.filename or "(a file without a name)"
                raise HTTPException(415, f"{shown!r}: unsupported file type "
                                         f"{suffix or '(no extension)'}; supported types: "
                                         f"{', '.join(SUPPORTED)}")
            names.append(unique_name(name, set(names)))
        upload_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)
        folder = settings.uploads_dir / upload_id
        folder.mkdir(parents=True)
        paths = []
        for item, name in zip(files, names, strict=True):
            path = folder / name
            with path.open("wb") as out:
                item.file.seek(0)
                shutil.copyfileobj(item.file, out, 1024 * 1024)
            paths.append(path.resolve())
        job = jobs.submit_add(paths, names, folder)
        log.info("upload %s: %d files queued as job %s", upload_id, len(paths), job.id,
                 extra={"job_id": job.id})
        return {"job_id": job.id, "upload_id": upload_id, "files": names,
                "status_url": f"/v1/jobs/{job.id}", "request_id": request_id()}

    @app.get("/v1/documents", dependencies=read_auth, tags=["documents"],
             summary="the documents in the live index, by path")
    def list_documents(limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                       offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
                       caller: str | None = Depends(read_key)) -> dict:
        with generation_db(qa) as (db, generation):
            total = next(iter(db.query("select count(*) as n from documents")))["n"]
            rows = list(db.query(
                "select d.id, d.path, d.title, d.metadata, d.length, d.mtime, "
                "(select count(*) from passages p where p.document_id = d.id) as passages "
                "from documents d order by d.path, d.id limit ? offset ?", [limit, offset]))
        documents = []
        for row in rows:
            try:
                metadata = store.strict_loads(row["metadata"]) if row["metadata"] else {}
            except ValueError:
                metadata = {}
            documents.append({"id": row["id"], "path": row["path"], "title": row["title"],
                              "passages": row["passages"], "length": row["length"],
                              "mtime": row["mtime"], "metadata": metadata})
        if caller is None:
            public_paths(documents, path_view())
        return {"documents": documents, "total": total, "limit": limit, "offset": offset,
                "generation": generation}

    @app.delete("/v1/documents/{document_id}", status_code=202, dependencies=write_auth,
                tags=["documents"], summary="remove a document from the index (a job)")
    def delete_document(document_id: str) -> dict:
        with generation_db(qa) as (db, _):
            found = list(db.query("select id from documents where id = ?", [document_id]))
        if not found:
            raise HTTPException(404, f"no document with id {document_id!r} in the index")
        job = jobs.submit_remove([document_id])
        return {"job_id": job.id, "status_url": f"/v1/jobs/{job.id}",
                "request_id": request_id()}

    @app.get("/v1/jobs/{job_id}", dependencies=read_auth, tags=["documents"],
             summary="the state of an indexing job")
    def get_job(job_id: str, caller: str | None = Depends(read_key)) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id {job_id!r}")
        return job if caller is not None else path_view().scrub(job)

    @app.delete("/v1/jobs/{job_id}", status_code=202, dependencies=write_auth,
                tags=["documents"], summary="cancel an indexing job (409 once it has finished)")
    def cancel_job(job_id: str) -> dict:
        try:
            job = jobs.cancel(job_id)
        except JobFinishedError as exc:
            raise HTTPException(409, str(exc)) from exc
        if job is None:
            raise HTTPException(404, f"no job with id {job_id!r}")
        return {**job, "request_id": request_id()}

    @app.get("/v1/jobs", dependencies=read_auth, tags=["documents"],
             summary="recent indexing jobs, newest first")
    def list_jobs(limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                  caller: str | None = Depends(read_key)) -> dict:
        recent = jobs.recent(limit)
        return {"jobs": recent if caller is not None else path_view().scrub(recent),
                "counts": jobs.counts()}

    # ------------------------------------------------------------------ feedback

    def check_anonymous(body: FeedbackIn, request: Request) -> None:
        """The limits on feedback without a key: field lengths (422 naming the field), then
        the client's rate (429 with Retry-After)."""
        too_long = [{"loc": ["body", name], "type": "string_too_long",
                     "msg": f"at most {limit} characters in feedback sent without an API key "
                            f"(got {len(value)})", "ctx": {"max_length": limit}}
                    for name, limit in ANONYMOUS_MAX_CHARS.items()
                    if len(value := getattr(body, name) or "") > limit]
        if too_long:
            raise HTTPException(422, too_long)
        # The connection's address: `spanqa serve` lets X-Forwarded-For replace it only for
        # the proxies --trusted-proxy names (serve_cli.uvicorn_options), else any client
        # could pick its own bucket; the limiter counts an IPv6 client by its /64.
        client = request.client.host if request.client else "unknown"
        wait = anonymous_posts.take(client)
        if wait:
            raise HTTPException(
                429, f"too much feedback from this client without an API key: at most "
                     f"{settings.anonymous_feedback_burst} posts at once and "
                     f"{settings.anonymous_feedback_per_minute:g} a minute; try again in "
                     f"{math.ceil(wait)} s, or send an API key",
                headers={"Retry-After": str(math.ceil(wait))})

    @app.post("/v1/feedback", status_code=201, tags=["feedback"],
              summary="was an answer right? (exported as SQuAD training data)",
              description=f"Needs an API key in the `{HEADER}` header unless the server takes "
                          "anonymous feedback (`spanqa serve --anonymous-feedback`), which is "
                          "rate-limited per client, capped and left out of the export unless "
                          "asked for.")
    def post_feedback(body: FeedbackIn, request: Request,
                      caller: str | None = Depends(feedback_key)) -> dict:
        if caller is None:
            check_anonymous(body, request)
        with generation_db(qa) as (db, generation):
            rows = list(db.query(
                "select p.id, p.document_id, p.title, p.text, d.path from passages p "
                "join documents d on d.id = p.document_id where p.id = ?", [body.passage_id]))
        if not rows:
            raise HTTPException(404, f"no passage with id {body.passage_id!r} in the index")
        passage = rows[0]
        text = passage["text"]
        if body.end > len(text):
            raise HTTPException(422, f"end ({body.end}) is past the end of the passage "
                                     f"({len(text)} characters)")
        if body.correct and text[body.start:body.end] != body.answer:
            raise HTTPException(422, f"the answer is not the passage's text[{body.start}:"
                                     f"{body.end}] ({text[body.start:body.end]!r})")
        try:
            feedback_id = feedback.add({
                "question": body.question, "answer": body.answer, "passage_id": passage["id"],
                "document_id": passage["document_id"], "title": passage["title"],
                "path": passage["path"], "context": text, "start": body.start, "end": body.end,
                "correct": body.correct, "comment": body.comment, "request_id": request_id(),
                "generation": generation, "key_name": caller,
            }, max_anonymous=settings.anonymous_feedback_max_rows)
        except FeedbackFull as exc:
            raise HTTPException(507, str(exc)) from exc
        return {"id": feedback_id, "anonymous": caller is None, "request_id": request_id()}

    @app.get("/v1/feedback/export", dependencies=write_auth, tags=["feedback"],
             summary="answers marked correct, as SQuAD v1.1 JSON")
    def export_feedback(include_anonymous: Annotated[bool, Query(
            description="also the feedback sent without an API key (and feedback stored "
                        "before keys were recorded); left out by default: this is "
                        "training data")] = False) -> dict:
        return feedback.export_squad(include_anonymous=include_anonymous)

    # ------------------------------------------------------------------ service

    @app.get("/v1/health", tags=["service"], summary="liveness and the live index")
    def health(key: str | None = Security(key_header)) -> dict:
        retriever = qa.retriever
        keyed = keys.verify(key) is not None  # never a 401 here: probes send no key
        # Probes call this often: the reader's name without a look at the index.
        reader = settings.reader_name if keyed else public_name(settings.reader_name)
        return {"status": "ok", "generation": retriever.generation.name,
                "documents": retriever.manifest.get("documents", 0),
                "passages": retriever.passages, "reader": reader}

    @app.get("/v1/stats", dependencies=read_auth, tags=["service"],
             summary="index, reader, calibration, batching and job statistics")
    def stats(caller: str | None = Depends(read_key)) -> dict:
        calibration = asdict(qa.calibration)
        calibration["source"] = "fitted" if qa.calibration.fitted else "defaults"
        out = finite({
            "index": qa.retriever.stats(),
            "reader": {"name": settings.reader_name,
                       "device": str(getattr(qa.reader, "device", "")),
                       "backend": getattr(qa.reader, "backend", "torch"),
                       "dtype": getattr(qa.reader, "dtype_name", "float32")},
            "retrieval": {"mode": qa.mode, "retrieval_k": qa.retrieval_k},
            "reading": {"adaptive": qa.adaptive and qa.calibration.fitted,
                        "first_read": qa.first_read or qa.calibration.first_read},
            "calibration": calibration,
            "batching": batcher.stats(),
            "jobs": jobs.counts(),
            "feedback": feedback.counts(),
            "auth": {"keys": len(keys.records()), "protect_all": settings.protect_all,
                     "anonymous_feedback": settings.anonymous_feedback
                     and not settings.protect_all},
            "uptime_s": round(time.time() - started_at, 1),
        })
        return out if caller is not None else path_view().scrub(out)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def index_page() -> Response:
        page = Path(settings.static_dir) / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(PLACEHOLDER)

    app.mount("/static", _StaticFiles(directory=settings.static_dir, check_dir=False),
              name="static")
    return app
