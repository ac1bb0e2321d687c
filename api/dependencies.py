"""FastAPI dependencies the routers share: the app's parts from `app.state`, and the API
key checks that decide who may call a route and what paths the caller sees.

A route names what it needs by type (`qa: QADep`), so the routers hold no state of their
own and one process can serve several apps (the tests do).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from .auth import HEADER, KeyStore, how_to_create
from .feedback import FeedbackStore
from .jobs import JobQueue
from .microbatch import MicroBatcher
from .prometheus import Metrics
from .qa import QA
from .service import Service
from .settings import Settings

# ------------------------------------------------------------------ the app's parts
# (async: FastAPI would run a plain function on its thread pool, for an attribute read)


async def get_qa(request: Request) -> QA:
    return request.app.state.qa


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


async def get_jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


async def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys


async def get_feedback(request: Request) -> FeedbackStore:
    return request.app.state.feedback


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


QADep = Annotated[QA, Depends(get_qa)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

# ------------------------------------------------------------------ API keys

key_header = APIKeyHeader(name=HEADER, auto_error=False,
                          description="an API key from `spanqa keys create`")
KeyHeader = Annotated[str | None, Security(key_header)]


def check_key(keys: KeyStore, key: str | None, why: str = "") -> dict:
    """The record of a valid key, else a 401 saying what is missing (without the keys
    file's path: the caller has no key and need not learn the server's layout)."""
    if not keys.configured():
        raise HTTPException(401, "this endpoint needs an API key, and no API keys are "
                                 f"configured on this server: {how_to_create()}")
    if not key:
        raise HTTPException(401, f"this endpoint needs an API key in the {HEADER} header{why}")
    record = keys.verify(key)
    if record is None:
        raise HTTPException(401, f"invalid API key in the {HEADER} header")
    return record


def key_name(keys: KeyStore, key: str | None, why: str = "") -> str:
    """The name of a valid key ("" for a record without one), else the 401."""
    return str(check_key(keys, key, why).get("name") or "")


async def write_key(keys: KeysDep, key: KeyHeader) -> str:
    return key_name(keys, key)


async def read_key(keys: KeysDep, settings: SettingsDep, key: KeyHeader) -> str | None:
    """The caller's key name, None without a key (it decides what paths it sees); a wrong
    key is a 401 even where none is needed (a typo must not quietly turn its caller
    anonymous)."""
    return key_name(keys, key) if key or settings.protect_all else None


async def feedback_key(keys: KeysDep, settings: SettingsDep, key: KeyHeader) -> str | None:
    """None for an anonymous post the operator allows; else the key's name or a 401."""
    if key or settings.protect_all or not settings.anonymous_feedback:
        return key_name(keys, key, " (this server takes no anonymous feedback)")
    return None


WRITE_AUTH = [Depends(write_key)]
READ_AUTH = [Depends(read_key)]
ReadCaller = Annotated[str | None, Depends(read_key)]
FeedbackCaller = Annotated[str | None, Depends(feedback_key)]
