"""The micro-batcher, in process: batching under closed-loop clients, and isolation."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from spanqa.api import microbatch as batching
from spanqa.api.microbatch import MicroBatcher


def record_waits(monkeypatch, note=lambda: None) -> list:
    """The timeouts the batcher waits for company with (its `asyncio.wait_for` calls), each
    with `note()` at the time: what it decided to wait, not how long this machine took."""
    waits: list = []
    real = asyncio.wait_for

    def wait_for(awaitable, timeout):
        if sys._getframe(1).f_globals.get("__name__") == batching.__name__:
            waits.append((timeout, note()))
        return real(awaitable, timeout)

    monkeypatch.setattr(batching.asyncio, "wait_for", wait_for)
    return waits


def run_clients(clients: int, questions: int, seconds_per_batch: float) -> MicroBatcher:
    def read(batch):
        time.sleep(seconds_per_batch)  # the model: its time barely depends on the batch
        return [q.upper() for q in batch]

    batcher = MicroBatcher(read, max_batch=8, max_wait_ms=5)

    async def client(c: int) -> None:
        for i in range(questions):
            assert await batcher.submit(f"q{c}-{i}") == f"Q{c}-{i}"
            await asyncio.sleep(0.004 * c)  # clients take 0-28 ms to send their next question

    async def main() -> None:
        await batcher.start()
        try:
            await asyncio.gather(*(client(c) for c in range(clients)))
        finally:
            await batcher.stop()

    asyncio.run(main())
    return batcher


def test_closed_loop_clients_share_full_batches():
    """8 clients that each ask again as soon as they are answered: almost every batch
    should hold all 8, not alternate between a straggler alone and the other seven."""
    batcher = run_clients(clients=8, questions=4, seconds_per_batch=1.0)
    stats = batcher.stats()
    assert stats["requests"] == 32
    assert stats["mean_batch_size"] >= 6, stats


def test_a_lone_client_is_not_kept_waiting(monkeypatch):
    # Regrouping (waiting for the last batch's clients to come back) would wait 100 ms here;
    # a lone client's next question must wait no longer than max_wait (5 ms).
    monkeypatch.setattr(batching, "REGROUP_FRACTION", 10.0)
    waits = record_waits(monkeypatch)
    batcher = run_clients(clients=1, questions=5, seconds_per_batch=0.05)
    assert batcher.stats()["batch_sizes"] == {"1": 5}
    assert all(timeout <= batcher.max_wait for timeout, _ in waits), waits


def test_questions_still_being_retrieved_join_the_batch(monkeypatch):
    """Questions retrieved one after another (one retrieval thread) reach the batcher 30 ms
    apart, far beyond its 5 ms wait: announced with `expecting`, they share one batch; a
    question whose retrieval fails is not waited for."""
    batches: list[list[str]] = []
    submitted = [0]
    waits = record_waits(monkeypatch, note=lambda: submitted[0])

    def read(batch):
        batches.append(list(batch))
        return [q.upper() for q in batch]

    batcher = MicroBatcher(read, max_batch=8, max_wait_ms=5)

    async def ask(q: str, retrieval_s: float) -> str:
        with batcher.expecting():
            await asyncio.sleep(retrieval_s)
            if q == "lost":
                raise ValueError("retrieval failed")
        submitted[0] += 1
        return await batcher.submit(q)

    async def main() -> list:
        await batcher.start()
        try:
            return await asyncio.gather(
                *(ask(f"q{i}", 0.03 * i) for i in range(3)), ask("lost", 0.045),
                return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results[:3] == ["Q0", "Q1", "Q2"] and isinstance(results[3], ValueError)
    assert batches == [["q0", "q1", "q2"]]
    # Once the three that came were in, it waited no longer than max_wait: not for the lost
    # one (still counted as on its way, it would have been waited for up to 100 ms more).
    assert all(timeout <= batcher.max_wait for timeout, n in waits if n == 3), waits


def test_too_many_waiting_questions_are_refused_before_retrieval():
    from spanqa.api.microbatch import Overloaded

    batcher = MicroBatcher(lambda batch: batch, max_batch=8, max_wait_ms=5, max_pending=2)
    with batcher.expecting(), batcher.expecting(), pytest.raises(Overloaded):
        batcher.expecting().__enter__()
    with batcher.expecting():  # the first two have left: there is room again
        pass
