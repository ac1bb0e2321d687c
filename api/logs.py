"""Structured logs for the HTTP service: one JSON object per line on stderr.

Every line carries the request id of the request it belongs to (taken from the client's
X-Request-ID header or generated), so one grep finds everything a request did, including
the traceback of a failure that the client saw as a 500 with the same id.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from ..core.strictjson import finite

REQUEST_ID: ContextVar[str | None] = ContextVar("spanqa_request_id", default=None)

# Fields a record may carry through `extra=`; written when present.
EXTRA_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "route", "client",
                "job_id", "batch_size")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def request_id() -> str:
    """The id of the request being served ("" outside one): response bodies carry it so a
    client can quote it, and the log lines of that request carry the same."""
    return REQUEST_ID.get() or ""


def request_id_from(header: str | None) -> str:
    """The client's id when it is short and printable (it is echoed into headers and logs),
    else a fresh one: a hostile header must not inject lines or bytes into either."""
    if header and _CLIENT_ID.match(header):
        return header
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the request fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if "request_id" not in data and (rid := REQUEST_ID.get()):
            data["request_id"] = rid
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(data, ensure_ascii=False, default=str, allow_nan=False)
        except ValueError:  # a NaN somewhere, however deep: null, and the line stays strict
            return json.dumps(finite(data), ensure_ascii=False, default=str, allow_nan=False)


def configure_json_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Route every logger (uvicorn's included) through one JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    quieten_libraries()


def quieten_libraries() -> None:
    """Libraries that log every model load or HTTP call at INFO drown the useful lines."""
    for noisy in ("faiss.loader", "sentence_transformers", "httpx", "multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
