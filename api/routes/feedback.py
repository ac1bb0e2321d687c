"""Feedback: was an answer right? Stored with the passage it refers to (api/feedback.py) and
exported as SQuAD v1.1 training data.

Feedback is training data, so it needs an API key unless the operator allows anonymous
feedback, which is then rate-limited per client, size-capped, capped in rows, marked, and
left out of the export unless asked for.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from ...index import store
from ..auth import HEADER
from ..dependencies import (
    WRITE_AUTH,
    FeedbackCaller,
    FeedbackDep,
    QADep,
    ServiceDep,
    SettingsDep,
)
from ..feedback import FeedbackFull
from ..logs import request_id
from ..qa import QA
from ..responses import FeedbackResponse, SquadExport, errors
from ..schemas import FeedbackIn
from ..service import Service, generation_db
from ..settings import Settings

router = APIRouter(tags=["feedback"])

# Feedback fields from callers without a key: a question as long as the page allows, a
# short answer and comment (the schema's own limits are for callers with a key).
ANONYMOUS_MAX_CHARS = {"question": 1000, "answer": 500, "comment": 500}


def check_anonymous(body: FeedbackIn, request: Request, settings: Settings,
                    service: Service) -> None:
    """The limits on feedback without a key: field lengths (422 naming the field), then
    the client's rate (429 with Retry-After)."""
    too_long = [{"loc": ["body", name], "type": "string_too_long",
                 "msg": f"at most {limit} characters in feedback sent without an API key "
                        f"(got {len(value)})", "ctx": {"max_length": limit}}
                for name, limit in ANONYMOUS_MAX_CHARS.items()
                if len(value := getattr(body, name) or "") > limit]
    if too_long:
        raise HTTPException(422, too_long)
    # The connection's address: `spanqa serve` lets X-Forwarded-For replace it only for
    # the proxies --trusted-proxy names (serve_cli.uvicorn_options), else any client
    # could pick its own bucket; the limiter counts an IPv6 client by its /64.
    client = request.client.host if request.client else "unknown"
    wait = service.anonymous_posts.take(client)
    if wait:
        raise HTTPException(
            429, f"too much feedback from this client without an API key: at most "
                 f"{settings.anonymous_feedback_burst} posts at once and "
                 f"{settings.anonymous_feedback_per_minute:g} a minute; try again in "
                 f"{math.ceil(wait)} s, or send an API key",
            headers={"Retry-After": str(math.ceil(wait))})


def checked_passage(body: FeedbackIn, qa: QA) -> tuple[dict[str, Any], str]:
    """The passage the feedback is about, with the live generation's name; a 404 when the
    index has no such passage, a 422 when the answer's offsets do not fit it."""
    with generation_db(qa) as (db, generation):
        passage = store.passage_with_path(db, body.passage_id)
    if passage is None:
        raise HTTPException(404, f"no passage with id {body.passage_id!r} in the index")
    text = passage["text"]
    if body.end > len(text):
        raise HTTPException(422, f"end ({body.end}) is past the end of the passage "
                                 f"({len(text)} characters)")
    if body.correct and text[body.start:body.end] != body.answer:
        raise HTTPException(422, f"the answer is not the passage's text[{body.start}:"
                                 f"{body.end}] ({text[body.start:body.end]!r})")
    return passage, generation


@router.post("/v1/feedback", status_code=201, response_model=FeedbackResponse,
             responses=errors(401, 404, 413, 422, 429, 507),
             summary="was an answer right? (exported as SQuAD training data)",
             description=f"Needs an API key in the `{HEADER}` header unless the server takes "
                         "anonymous feedback (`spanqa serve --anonymous-feedback`), which is "
                         "rate-limited per client, capped and left out of the export unless "
                         "asked for.")
def post_feedback(body: FeedbackIn, request: Request, caller: FeedbackCaller, qa: QADep,
                  settings: SettingsDep, service: ServiceDep, feedback: FeedbackDep
                  ) -> dict[str, Any]:
    if caller is None:
        check_anonymous(body, request, settings, service)
    passage, generation = checked_passage(body, qa)
    text = passage["text"]
    try:
        feedback_id = feedback.add({
            "question": body.question, "answer": body.answer, "passage_id": passage["id"],
            "document_id": passage["document_id"], "title": passage["title"],
            "path": passage["path"], "context": text, "start": body.start, "end": body.end,
            "correct": body.correct, "comment": body.comment, "request_id": request_id(),
            "generation": generation, "key_name": caller,
        }, max_anonymous=settings.anonymous_feedback_max_rows)
    except FeedbackFull as exc:
        raise HTTPException(507, str(exc)) from exc
    return {"id": feedback_id, "anonymous": caller is None, "request_id": request_id()}


@router.get("/v1/feedback/export", dependencies=WRITE_AUTH, response_model=SquadExport,
            responses=errors(401, 422), summary="answers marked correct, as SQuAD v1.1 JSON")
def export_feedback(feedback: FeedbackDep, include_anonymous: Annotated[bool, Query(
        description="also the feedback sent without an API key (and feedback stored "
                    "before keys were recorded); left out by default: this is "
                    "training data")] = False) -> dict[str, Any]:
    return feedback.export_squad(include_anonymous=include_anonymous)
