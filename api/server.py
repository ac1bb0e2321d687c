"""The HTTP API behind `spanqa serve` (FastAPI): ask, search, upload, feedback, metrics.

    app = create_app(QA("data/index", "data/readers/demo"), Settings())
    uvicorn.run(app)

Each question is retrieved as it arrives (on a retrieval thread), then goes through a
micro-batcher (api/microbatch.py) that reads concurrent questions' passages in one reader
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

This module builds the app from its parts: the routes are in api/routes/, their response
bodies in api/responses.py, the request bodies in api/schemas.py, the dependencies that
hand the routes the app's parts and check API keys in api/dependencies.py, the middleware
every request passes through in api/gate.py, the error bodies in api/errors.py, the
Prometheus metrics in api/prometheus.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI

from ..runtime.device import release_openmp_workers
from .auth import HEADER, KeyStore
from .errors import EXCEPTION_HANDLERS
from .feedback import FeedbackStore
from .gate import RequestGate
from .jobs import JobQueue, SharedEmbedder
from .microbatch import MicroBatcher
from .prometheus import Metrics
from .qa import QA
from .ratelimit import ClientRateLimiter
from .routes import documents, feedback, jobs, page, questions, status
from .service import Service
from .settings import Settings

__all__ = ["Settings", "create_app"]

log = logging.getLogger("spanqa.api")

DESCRIPTION = ("Retrieval-augmented extractive question answering: answers are exact spans "
               "of your documents, with their sources. Write endpoints need an API key in "
               f"the `{HEADER}` header.")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings, qa, batcher, queue = state.settings, state.qa, state.batcher, state.jobs
    # The model was loaded on this thread and is read on the batcher's: this thread's
    # idle OpenMP workers would slow every forward pass (see release_openmp_workers).
    release_openmp_workers()
    await batcher.start()
    queue.start()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    queue.requeue_unfinished(settings.uploads_dir)
    log.info("serving %s (generation %s, %d passages) with reader %s", settings.index,
             qa.retriever.generation.name, qa.retriever.passages, settings.reader_name)
    yield
    await batcher.stop()
    state.service.retrieval.shutdown(wait=False, cancel_futures=True)
    await asyncio.to_thread(queue.stop)
    state.feedback.close()


def create_app(qa: QA, settings: Settings | None = None) -> FastAPI:
    settings = (settings or Settings()).resolve(qa)
    assert settings.uploads_dir and settings.keys_file and settings.feedback_db
    metrics = Metrics()
    # One embedding model, shared by queries and index updates, one caller at a time.
    retriever = qa.retriever
    if not isinstance(retriever.loaded_embedder, SharedEmbedder):
        retriever.use_embedder(SharedEmbedder(retriever.embedder))
    batcher = MicroBatcher(qa.read, max_batch=settings.max_batch,
                           max_wait_ms=settings.batch_wait_ms,
                           max_pending=settings.max_pending,
                           on_batch=lambda n: metrics.batch_size.observe(n))
    queue = JobQueue(qa, index=settings.index, embedder=retriever.loaded_embedder,
                     max_file_bytes=settings.max_upload_bytes,
                     retry_max_s=settings.lock_retry_max_s,
                     lock_timeout_s=settings.lock_timeout_s, watch_s=settings.watch_index_s,
                     limits=settings.parse_limits,
                     on_finish=lambda j: metrics.jobs_finished.labels(j.kind, j.status).inc())
    metrics.add_live(qa, queue, batcher)

    app = FastAPI(title="SpanQA", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs" if settings.api_docs else None,
                  redoc_url="/redoc" if settings.api_docs else None,
                  exception_handlers=EXCEPTION_HANDLERS)
    app.state.qa, app.state.settings, app.state.metrics = qa, settings, metrics
    app.state.batcher, app.state.jobs = batcher, queue
    app.state.keys = KeyStore(settings.keys_file)
    app.state.feedback = FeedbackStore(settings.feedback_db)
    app.state.service = Service(
        qa=qa, uploads_root=Path(settings.uploads_dir).resolve(),
        retrieval=ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanqa-retrieve"),
        anonymous_posts=ClientRateLimiter(settings.anonymous_feedback_per_minute,
                                          settings.anonymous_feedback_burst))
    app.add_middleware(RequestGate, max_json_bytes=settings.max_json_bytes,
                       max_upload_bytes=settings.max_upload_bytes, metrics=metrics,
                       docs_pages=settings.api_docs)
    for routes in (questions, documents, jobs, feedback, status, page):
        app.include_router(routes.router)
    app.mount("/static", page.StaticFolder(directory=settings.static_dir, check_dir=False),
              name="static")
    return app
