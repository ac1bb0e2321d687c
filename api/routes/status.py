"""The service itself: liveness for probes, statistics for operators, Prometheus metrics.

/v1/health never needs a key (probes send none) and never queries the index; /metrics is
for Prometheus, outside the API description.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...core.strictjson import finite
from ..dependencies import (
    READ_AUTH,
    BatcherDep,
    FeedbackDep,
    JobsDep,
    KeyHeader,
    KeysDep,
    MetricsDep,
    QADep,
    ReadCaller,
    ServiceDep,
    SettingsDep,
)
from ..paths import public_name
from ..qa import QA
from ..responses import HealthResponse, StatsResponse, errors
from ..settings import Settings

router = APIRouter(tags=["service"])


@router.get("/v1/health", response_model=HealthResponse,
            summary="liveness and the live index")
def health(key: KeyHeader, qa: QADep, keys: KeysDep, settings: SettingsDep) -> dict[str, Any]:
    retriever = qa.retriever
    keyed = keys.verify(key) is not None  # never a 401 here: probes send no key
    # Probes call this often: the reader's name without a look at the index.
    reader = settings.reader_name if keyed else public_name(settings.reader_name or "")
    return {"status": "ok", "generation": retriever.generation.name,
            "documents": retriever.manifest.get("documents", 0),
            "passages": retriever.passages, "reader": reader}


def pipeline_stats(qa: QA, settings: Settings) -> dict[str, Any]:
    """How questions are answered: the reader, retrieval and reading defaults, calibration."""
    calibration = asdict(qa.calibration)
    calibration["source"] = "fitted" if qa.calibration.fitted else "defaults"
    return {
        "reader": {"name": settings.reader_name,
                   "device": str(getattr(qa.reader, "device", "")),
                   "backend": getattr(qa.reader, "backend", "torch"),
                   "dtype": getattr(qa.reader, "dtype_name", "float32")},
        "retrieval": {"mode": qa.mode, "retrieval_k": qa.retrieval_k},
        "reading": {"adaptive": qa.adaptive and qa.calibration.fitted,
                    "first_read": qa.first_read or qa.calibration.first_read},
        "calibration": calibration,
    }


# Manifests of older indexes lack some fields: they stay absent rather than turn null.
@router.get("/v1/stats", dependencies=READ_AUTH, response_model=StatsResponse,
            response_model_exclude_unset=True, responses=errors(401),
            summary="index, reader, calibration, batching and job statistics")
def stats(caller: ReadCaller, qa: QADep, settings: SettingsDep, service: ServiceDep,
          batcher: BatcherDep, jobs: JobsDep, feedback: FeedbackDep, keys: KeysDep
          ) -> dict[str, Any]:
    out = finite({
        "index": qa.retriever.stats(),
        **pipeline_stats(qa, settings),
        "batching": batcher.stats(),
        "jobs": jobs.counts(),
        "feedback": feedback.counts(),
        "auth": {"keys": len(keys.records()), "protect_all": settings.protect_all,
                 "anonymous_feedback": settings.anonymous_feedback
                 and not settings.protect_all},
        "uptime_s": round(time.time() - service.started_at, 1),
    })
    return out if caller is not None else service.path_view().scrub(out)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
