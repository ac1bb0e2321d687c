"""A span model's start/end logits computed by ONNX Runtime.

Why: reading is most of a question's latency and of a dev evaluation on a CPU. The fused
fp32 graph gives the same answers as PyTorch, faster; per-channel int8 weights are faster
still for a small loss (bench/reader.py measures both side by side with PyTorch).

Small batches, one single-threaded run per core at a time: a batch of a few windows keeps
its activations in the core's cache, and no core waits for the other at every operator.
On 2 cores that reads dev windows about 1.4x faster than batches of 64 on a two-threaded
session (bench/reader.py, the inference phase).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ..runtime.onnx import export_cached, graph_feeds, session
from .runner import Batch, Logits

OUTPUTS = ["start_logits", "end_logits"]
T = TypeVar("T")
R = TypeVar("R")
WINDOWS_PER_RUN = 4  # measured best on 2 cores for MiniLM at 256 tokens (2 to 8 are close)


class OnnxSpanModel:
    """Start and end logits of a question-answering model, from its cached ONNX export
    (a reader/runner.py `SpanRunner`)."""

    precision = None  # computes in what it was exported in: fp32, or int8 weights

    def __init__(self, model, tokenizer, *, quantize: bool, cache: Path | None = None,
                 threads: int | None = None):
        path = export_cached(model, export_samples(model, tokenizer), OUTPUTS,
                             lambda out: (out.start_logits, out.end_logits),
                             quantize=quantize, per_channel=True, cache=cache)
        self.path = path
        self.workers = threads or torch.get_num_threads()
        self.session = session(path, threads=1)  # one session, run from several threads
        self.inputs = [i.name for i in self.session.get_inputs()]
        self._pool = self._solo = None
        self._local = threading.local()  # the pool's threads run the one-thread session
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-reader",
                                            initializer=self._join_pool)
            # A single batch (a question over one short passage) is read on every core, by
            # the calling thread: a session of its own (a copy of the weights), so its
            # latency is not one core's.
            self._solo = session(path, threads=self.workers)

    def _join_pool(self) -> None:
        self._local.session = self.session

    def batch_size(self, windows: int, requested: int | None) -> int:
        """Windows per run: small, and never so many that a core has nothing to read."""
        size = requested or WINDOWS_PER_RUN
        return max(1, min(size, math.ceil(windows / self.workers)))

    def batching(self, windows: int, requested: int | None) -> tuple[int, None]:
        # Its runs are spread over the cores, a few windows each: full batches balance them.
        return self.batch_size(windows, requested), None

    def reading(self) -> contextlib.AbstractContextManager[Callable[[Batch], Logits]]:
        return contextlib.nullcontext(self.logits)

    def map(self, read: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`read` over `items`, results in order, one item per core in flight (`read`
        calls `logits`; ORT releases the GIL while it computes)."""
        items = list(items)
        if self._pool is None or len(items) == 1:
            return map(read, items)
        return self._pool.map(read, items)

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        feeds = graph_feeds(batch, self.inputs)
        runner = getattr(self._local, "session", None) or self._solo or self.session
        start, end = runner.run(OUTPUTS, feeds)
        return start, end


def export_samples(model, tokenizer) -> list[dict[str, torch.Tensor]]:
    """Two input batches of odd shapes, to trace a span model and check its export on.

    Segment ids whenever the model takes them: the reader always sends them, even for
    tokenizers that would not return them by default."""
    segments = "token_type_ids" in inspect.signature(model.forward).parameters
    return [dict(tokenizer(questions, contexts, padding=True, return_tensors="pt",
                           return_token_type_ids=segments))
            for questions, contexts in (
                (["a question", "another, longer question?"],
                 ["a short context", "a context with some more words in it"]),
                (["who?", "what is it", "and where, then?"],
                 ["a context of other lengths", "x", "the third and last context"]))]
