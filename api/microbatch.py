"""Micro-batching: questions that arrive together share one reader forward pass.

Each /v1/ask request, once its passages are retrieved, submits them and awaits its future.
One asyncio worker collects requests until `max_batch` are waiting or `max_wait_ms` have
passed (a little longer while the last batch's clients are expected back), then runs
`qa.read` on them in ONE dedicated thread: the model never runs in two threads at once,
so two cores are not oversubscribed, and while a batch is being read the next one fills
up, which is where batches larger than one come from.

A batch that raises is retried one request at a time, so a bad question fails only its
own request (a ValueError becomes that request's 422), never its neighbours'.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

REGROUP_FRACTION = 0.05  # of the last batch's time, waited for its clients to come back
MAX_REGROUP_SECONDS = 0.1
MAX_EXPECT_SECONDS = 0.1  # waited for questions still being retrieved (a few ms each)


class Overloaded(RuntimeError):
    """Too many requests are waiting; the client should retry later (503)."""


@dataclass
class _Pending:
    request: Any
    future: asyncio.Future
    arrived: float  # loop time


class MicroBatcher:
    def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], *,
                 max_batch: int = 8, max_wait_ms: float = 5.0, max_pending: int = 1024,
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        self.run_batch = run_batch
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.max_pending = max_pending
        self.on_batch = on_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanqa-model")
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stats_lock = threading.Lock()
        self._expected = 0  # questions on their way (being retrieved), not yet submitted
        self.batches = 0
        self.requests = 0
        self.largest = 0
        self.retried = 0
        self.sizes: collections.Counter[int] = collections.Counter()
        self.busy_seconds = 0.0
        self._last_size, self._last_seconds = 0, 0.0

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._worker(), name="spanqa-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(Overloaded("the server is shutting down"))
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- use

    async def submit(self, request: Any) -> Any:
        """The request's result, or the exception its question raised."""
        if self._task is None or self._arrived is None:
            raise RuntimeError("the batcher is not running")
        if len(self._pending) >= self.max_pending:
            raise Overloaded(f"{len(self._pending)} questions are waiting; try again shortly")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Pending(request, future, loop.time()))
        self._arrived.set()
        return await future

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Around the work that precedes `submit` (retrieval): while it runs, a filling batch
        waits for this question too, so questions retrieved one after another still share
        a reader pass. Leave it right before `submit`, with no await in between.
        Overloaded is raised here already, before any retrieval is spent on the question."""
        if len(self._pending) + self._expected >= self.max_pending:
            raise Overloaded(f"{len(self._pending) + self._expected} questions are waiting; "
                             "try again shortly")
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            if self._arrived is not None:
                self._arrived.set()  # re-decide: a question that failed will not come

    def stats(self) -> dict:
        with self._stats_lock:
            return {
                "max_batch": self.max_batch,
                "max_wait_ms": self.max_wait * 1000,
                "batches": self.batches,
                "requests": self.requests,
                "mean_batch_size": round(self.requests / self.batches, 3) if self.batches else 0.0,
                "largest_batch": self.largest,
                "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
                "retried_one_by_one": self.retried,
                "pending": len(self._pending),
                "busy_seconds": round(self.busy_seconds, 3),
            }

    # ---------------------------------------------------------------- worker

    async def _worker(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        free_at = loop.time()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            # Wait for company: at most max_wait after the oldest request arrived or the
            # model became free, whichever is later. While fewer requests wait than the last
            # batch held, its clients are probably about to send their next question (they
            # are reading their answers), so wait a little longer for them: a few per cent
            # of the last batch's time. Without this, 8 clients settle into alternating
            # batches of 1 and 7.
            while len(self._pending) < self.max_batch:
                start = max(self._pending[0].arrived, free_at)
                patience = self.max_wait
                if len(self._pending) < self._last_size:
                    patience = max(patience, min(REGROUP_FRACTION * self._last_seconds,
                                                 MAX_REGROUP_SECONDS))
                if self._expected:
                    patience = max(patience, MAX_EXPECT_SECONDS)
                remaining = start + patience - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = []
            while self._pending and len(batch) < self.max_batch:
                item = self._pending.popleft()
                if not item.future.done():  # a client that went away is not answered
                    batch.append(item)
            if batch:
                began = loop.time()
                try:
                    await self._run(batch)
                except Exception:  # never let the worker die: fail the batch instead
                    log.exception("micro-batch failed unexpectedly")
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(RuntimeError("the batch failed"))
                except asyncio.CancelledError:  # stop(): nobody is left waiting forever
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(Overloaded("the server is shutting down"))
                    raise
                free_at = loop.time()
                self._last_size, self._last_seconds = len(batch), free_at - began

    async def _run(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        requests = [item.request for item in batch]
        began = time.perf_counter()
        try:
            outcomes: list[Any] = list(
                await loop.run_in_executor(self.executor, self.run_batch, requests))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(batch)} questions gave {len(outcomes)} results")
        except Exception as exc:
            if len(batch) == 1:
                outcomes = [exc]
            else:
                log.info("a batch of %d failed (%s); answering its questions one by one",
                         len(batch), exc, extra={"batch_size": len(batch)})
                outcomes = await loop.run_in_executor(self.executor, self._one_by_one, requests)
                with self._stats_lock:
                    self.retried += 1
        with self._stats_lock:
            self.batches += 1
            self.requests += len(batch)
            self.largest = max(self.largest, len(batch))
            self.sizes[len(batch)] += 1
            self.busy_seconds += time.perf_counter() - began
        if self.on_batch is not None:
            self.on_batch(len(batch))
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    def _one_by_one(self, requests: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for request in requests:
            try:
                out.append(self.run_batch([request])[0])
            except Exception as exc:
                out.append(exc)
        return out
