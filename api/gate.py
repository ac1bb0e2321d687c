"""The ASGI middleware every request passes through: request id, security headers, body
size limit, access log, metrics, and a JSON 500 carrying the request id for anything
unexpected."""

from __future__ import annotations

import logging
import time

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import REQUEST_ID, request_id_from
from .prometheus import Metrics

log = logging.getLogger("spanqa.api")
access_log = logging.getLogger("spanqa.access")

MiB = 1024 * 1024
DRAIN_LIMIT = 64 * MiB  # an oversized body is read and dropped up to this much, so that the
# client, still sending, gets its 413 instead of a connection reset
UPLOAD_ROUTE = "/v1/documents"

# The page and its static files: scripts and styles from this server only, never inline
# (documents may hold markup; the page puts their text in as text, and the policy is the
# second line), nothing from elsewhere, and no framing (clickjacking).
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'")
# FastAPI's /docs and /redoc pages run inline script and load Swagger UI / ReDoc from a CDN:
# served only when the operator turns them on (`spanqa serve --api-docs`), and then they
# get only the framing rule; otherwise those paths are 404s under the API's policy.
DOCS_POLICY = "frame-ancestors 'none'"
DOCS_ROUTES = ("/docs", "/docs/oauth2-redirect", "/redoc")
# Everything else is JSON or text: nothing in it may run, load or be framed.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"


def security_headers(path: str, docs_pages: bool = False) -> dict[str, str]:
    """The headers every response gets: no MIME sniffing (a JSON answer quoting a document
    must never be taken for HTML), no framing, and the content policy for its kind
    (`docs_pages`: FastAPI's docs pages are served, and need their weaker policy)."""
    if path == "/" or path.startswith("/static/"):
        policy = PAGE_POLICY
    elif docs_pages and path in DOCS_ROUTES:
        policy = DOCS_POLICY
    else:
        policy = API_POLICY
    return {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY"}


class PayloadTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body too large: the limit is {limit} bytes "
                              f"({limit / MiB:.1f} MiB)")


class RequestGate:
    """Pure ASGI middleware around every request: request id, the security headers (see
    security_headers: on every response, errors and 413s included, so no route can forget
    them), body size limit, access log, metrics, and the last line of defence that turns an
    unexpected exception into a JSON 500 carrying the request id (logged with its
    traceback)."""

    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_upload_bytes: int,
                 metrics: Metrics, docs_pages: bool = False):
        self.app, self.metrics = app, metrics
        self.max_json_bytes, self.max_upload_bytes = max_json_bytes, max_upload_bytes
        self.docs_pages = docs_pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = request_id_from(headers.get("x-request-id"))
        token = REQUEST_ID.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        began = time.perf_counter()
        method, path = scope["method"], scope["path"]
        limit = (self.max_upload_bytes if method == "POST" and path == UPLOAD_ROUTE
                 else self.max_json_bytes)
        sent = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"], sent["started"] = message["status"], True
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = rid
                for name, value in security_headers(path, self.docs_pages).items():
                    out[name] = value
            await send(message)

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_LIMIT)
                    raise PayloadTooLarge(limit)
            return message

        try:
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                await _drain(receive, DRAIN_LIMIT)
                await _send_json(send_with_id, 413, {"detail": PayloadTooLarge(limit).detail,
                                                     "request_id": rid})
            else:
                await self.app(scope, counting_receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", method, path,
                          extra={"request_id": rid, "method": method, "path": path})
            if not sent["started"]:
                await _send_json(send_with_id, 500, {
                    "detail": "internal server error; the server log has the details under "
                              "this request id", "request_id": rid})
            sent["status"] = 500
        finally:
            seconds = time.perf_counter() - began
            route = _route_label(scope)
            status = sent["status"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            access_log.log(logging.WARNING if status >= 500 else logging.INFO, "request",
                           extra={"request_id": rid, "method": method, "path": path,
                                  "status": status, "duration_ms": round(seconds * 1000, 2),
                                  "route": route})
            REQUEST_ID.reset(token)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _drain(receive: Receive, budget: int) -> None:
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_json(send: Send, status: int, content: dict) -> None:
    response = JSONResponse(content, status_code=status)
    await send({"type": "http.response.start", "status": status,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _route_label(scope: Scope) -> str:
    """The route template ("/v1/jobs/{job_id}"), never the raw path: bounded label values."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    if scope["path"].startswith("/static/"):
        return "/static"
    return "unmatched"
