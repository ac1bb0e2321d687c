"""Questions: /v1/ask answers with spans of the indexed documents, /v1/search returns the
passages it would read.

Each question is retrieved as it arrives, on the retrieval thread, then read by the
micro-batcher (api/microbatch.py) together with the questions that arrived with it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace
from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError

from ...core.strictjson import finite
from ...retriever.search import Filters
from ..dependencies import READ_AUTH, BatcherDep, QADep, ReadCaller, ServiceDep
from ..logs import request_id
from ..microbatch import Overloaded
from ..paths import public_paths
from ..qa import AskRequest
from ..responses import AskResponse, SearchResponse, errors
from ..schemas import AskIn, FiltersIn, SearchIn
from ..service import Service

router = APIRouter(tags=["questions"])


async def server_filters(filters_in: FiltersIn | None, caller: str | None, service: Service
                         ) -> Filters | None:
    """The request's filters with its path prefix turned into a server path, or a 422
    naming the field."""
    filters = filters_in.to_filters() if filters_in else None
    if filters is None or not filters.path_prefix:
        return filters
    try:
        prefix = (await service.path_view_async()).server_prefix(filters.path_prefix,
                                                                 keyed=caller is not None)
    except ValueError as exc:
        raise RequestValidationError([{
            "loc": ("body", "filters", "path_prefix"), "msg": str(exc),
            "type": "value_error"}]) from exc
    return replace(filters, path_prefix=prefix)


@router.post("/v1/ask", dependencies=READ_AUTH, response_model=AskResponse,
             responses=errors(401, 413, 422, 503),
             summary="answer a question with spans from the indexed documents")
async def ask(body: AskIn, caller: ReadCaller, qa: QADep, batcher: BatcherDep,
              service: ServiceDep) -> dict[str, Any]:
    filters = await server_filters(body.filters, caller, service)
    asked = AskRequest(question=body.question, top_k=body.top_k,
                       retrieval_k=body.retrieval_k, filters=filters, mode=body.mode)
    loop = asyncio.get_running_loop()
    try:
        with batcher.expecting():
            retrieved = await loop.run_in_executor(service.retrieval, qa.retrieve, [asked])
        result = await batcher.submit(retrieved[0])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    except Overloaded as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
    out = {**finite(result.to_dict()), "request_id": request_id()}
    if caller is None:
        public_paths([*out["answers"], *out["passages"], out["best_guess"]],
                     await service.path_view_async())
    return out


@router.post("/v1/search", dependencies=READ_AUTH, response_model=SearchResponse,
             responses=errors(401, 413, 422),
             summary="the top passages for a question, without reading them")
async def search(body: SearchIn, caller: ReadCaller, qa: QADep, service: ServiceDep
                 ) -> dict[str, Any]:
    retriever = qa.retriever
    filters = await server_filters(body.filters, caller, service)
    try:
        hits = await asyncio.get_running_loop().run_in_executor(service.retrieval, partial(
            retriever.search, body.question, body.top_k, mode=body.mode or qa.mode,
            filters=filters))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    found = [finite(asdict(h)) for h in hits]
    if caller is None:
        public_paths(found, await service.path_view_async())
    return {"hits": found, "generation": retriever.generation.name, "request_id": request_id()}
