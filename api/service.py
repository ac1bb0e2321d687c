"""The state the routes share beyond app.state's named parts, on one plain object
(`app.state.service`): the retrieval thread, the anonymous-feedback limiter, the uploads
folder, the start time, and what keyless callers see of the live generation's paths.

It also opens the live generation's SQLite for request threads (`generation_db`): they must
not share the retriever's connection, which the retrieval thread uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from ..index import store
from .paths import PathView, collection_root
from .qa import QA
from .ratelimit import ClientRateLimiter


@contextlib.contextmanager
def generation_db(qa: QA) -> Iterator[tuple[sqlite_utils.Database, str]]:
    """A private read-only connection to the live generation's SQLite, with the
    generation's name; follows a generation that another writer replaced and cleaned up."""
    for attempt in range(3):
        retriever = qa.retriever
        try:
            db = store.open_db(retriever.generation)
            store.check_readable(db)
        except sqlite3.OperationalError:
            if attempt == 2:
                raise
            with contextlib.suppress(Exception):
                qa.reload()
            time.sleep(0.05)
            continue
        try:
            yield db, retriever.generation.name
        finally:
            db.conn.close()
        return


@dataclass
class Service:
    """What the routes share, built once per app by `create_app`."""

    qa: QA
    uploads_root: Path  # resolved: what public paths are taken relative to
    # Retrieval runs as each question arrives, on its own thread; the micro-batcher then
    # reads the passages of the questions that arrived together in one reader pass.
    retrieval: ThreadPoolExecutor
    anonymous_posts: ClientRateLimiter
    started_at: float = field(default_factory=time.time)
    # (generation, its collection root): replaced whole, in one assignment, and read once
    # per use, so a request thread never sees one generation's name with another's root.
    live_root: tuple[str, Path | None] | None = None

    def cached_path_view(self) -> PathView | None:
        """The live generation's view if its root is known already (no query), else None."""
        cached = self.live_root
        if cached is not None and cached[0] == self.qa.retriever.generation.name:
            return PathView(self.uploads_root, cached[1])
        return None

    def path_view(self) -> PathView:
        """What keyless callers see of paths, for the live generation (its collection root
        is looked up once per generation: a distinct-path scan of its documents)."""
        view = self.cached_path_view()
        if view is not None:
            return view
        with generation_db(self.qa) as (db, name):
            paths = store.document_paths(db)
        root = collection_root(paths, self.uploads_root)
        self.live_root = (name, root)
        return PathView(self.uploads_root, root)

    async def path_view_async(self) -> PathView:
        """path_view for the async routes: the scan, when one is due, runs off the event
        loop (it takes as long as the documents table is big)."""
        return self.cached_path_view() or await asyncio.to_thread(self.path_view)
