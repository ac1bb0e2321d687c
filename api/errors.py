"""How the API answers an error: `{"detail": ..., "request_id": ...}` for every 4xx, the
422s listing each invalid field without echoing what was sent (it may be 100k characters,
or bytes that are not UTF-8). The 500s and the 413s for bodies over the limit come from
the middleware (api/gate.py) in the same shape."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .logs import request_id


def clean_errors(errors: Any) -> list[dict]:
    """Validation errors without the offending input and with JSON-safe context values."""
    out = []
    for error in errors:
        item = {k: v for k, v in dict(error).items() if k not in ("input", "url")}
        if isinstance(item.get("ctx"), dict):
            item["ctx"] = {k: v if isinstance(v, int | float | str | bool | None) else str(v)
                           for k, v in item["ctx"].items()}
        item["loc"] = [p if isinstance(p, int | str) else str(p) for p in item.get("loc", ())]
        out.append(item)
    return out


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, "request_id": request_id()},
                        status_code=exc.status_code, headers=exc.headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": jsonable_encoder(clean_errors(exc.errors())),
                         "request_id": request_id()}, status_code=422)


EXCEPTION_HANDLERS = {StarletteHTTPException: http_error,
                      RequestValidationError: validation_error}
