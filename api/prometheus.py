"""Prometheus metrics of the HTTP API: counters and histograms updated per request, and
gauges read from the live service at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from .jobs import JobQueue
from .microbatch import MicroBatcher
from .qa import QA


class Metrics:
    """Prometheus metrics in a registry of their own, so several apps can live in one
    process (tests) without clashing in the global registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("spanqa_http_requests_total", "HTTP requests",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("spanqa_http_request_duration_seconds",
                                 "HTTP request latency", ["route"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram("spanqa_reader_batch_size", "Questions per reader pass",
                                    registry=self.registry,
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
        self.jobs_finished = Counter("spanqa_jobs_finished_total", "Index jobs finished",
                                     ["kind", "status"], registry=self.registry)

    def add_live(self, qa: QA, jobs: JobQueue, batcher: MicroBatcher) -> None:
        self.registry.register(_LiveCollector(qa, jobs, batcher))


class _LiveCollector:
    """Values read at scrape time: job counts, the live index, the batcher's queue."""

    def __init__(self, qa: QA, jobs: JobQueue, batcher: MicroBatcher):
        self.qa, self.jobs, self.batcher = qa, jobs, batcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("spanqa_jobs", "Index jobs by status", labels=["status"])
        for status, count in self.jobs.counts().items():
            jobs.add_metric([status], count)
        yield jobs
        retriever = self.qa.retriever
        yield GaugeMetricFamily("spanqa_index_documents", "Documents in the live index",
                                value=retriever.manifest.get("documents", 0))
        yield GaugeMetricFamily("spanqa_index_passages", "Passages in the live index",
                                value=retriever.passages)
        yield GaugeMetricFamily("spanqa_batcher_pending", "Questions waiting for the model",
                                value=self.batcher.stats()["pending"])
