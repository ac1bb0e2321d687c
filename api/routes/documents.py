"""Documents: upload files to index, list what the live index holds, remove a document.

Uploads and removals are queued as background index jobs (api/jobs.py), hence the 202s;
their state is at /v1/jobs/{id} (api/routes/jobs.py). Uploaded files are saved under
plain, unique names (api/uploads.py) and never deleted by the server.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from ...index import store
from ...indexer.formats import SUPPORTED
from ..dependencies import (
    READ_AUTH,
    WRITE_AUTH,
    JobsDep,
    QADep,
    ReadCaller,
    ServiceDep,
    SettingsDep,
)
from ..logs import request_id
from ..paths import public_paths
from ..responses import DocumentsResponse, RemovalResponse, UploadResponse, errors
from ..service import generation_db
from ..uploads import safe_filename, unique_name

log = logging.getLogger("spanqa.api")

router = APIRouter(tags=["documents"])


def upload_names(files: list[UploadFile]) -> list[str]:
    """The names the files are saved under, or a 415 for the first of a type the indexer
    does not read (before anything is saved)."""
    names: list[str] = []
    for item in files:
        name = safe_filename(item.filename)
        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED:
            shown = item.filename or "(a file without a name)"
            raise HTTPException(415, f"{shown!r}: unsupported file type "
                                     f"{suffix or '(no extension)'}; supported types: "
                                     f"{', '.join(SUPPORTED)}")
        names.append(unique_name(name, set(names)))
    return names


@router.post("/v1/documents", status_code=202, dependencies=WRITE_AUTH,
             response_model=UploadResponse, responses=errors(401, 413, 415, 422),
             summary="upload files to index (multipart field `files`, repeatable)")
def upload(files: Annotated[list[UploadFile], File(
               description=f"one or more files: {', '.join(SUPPORTED)}")],
           settings: SettingsDep, jobs: JobsDep) -> dict[str, Any]:
    names = upload_names(files)
    assert settings.uploads_dir is not None  # Settings.resolve sets it
    upload_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)
    folder = settings.uploads_dir / upload_id
    folder.mkdir(parents=True)
    paths = []
    for item, name in zip(files, names, strict=True):
        path = folder / name
        with path.open("wb") as out:
            item.file.seek(0)
            shutil.copyfileobj(item.file, out, 1024 * 1024)
        paths.append(path.resolve())
    job = jobs.submit_add(paths, names, folder)
    log.info("upload %s: %d files queued as job %s", upload_id, len(paths), job.id,
             extra={"job_id": job.id})
    return {"job_id": job.id, "upload_id": upload_id, "files": names,
            "status_url": f"/v1/jobs/{job.id}", "request_id": request_id()}


@router.get("/v1/documents", dependencies=READ_AUTH, response_model=DocumentsResponse,
            responses=errors(401, 422), summary="the documents in the live index, by path")
def list_documents(caller: ReadCaller, qa: QADep, service: ServiceDep,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                   offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> dict[str, Any]:
    with generation_db(qa) as (db, generation):
        total = store.count_documents(db)
        documents = store.document_page(db, limit, offset)
    if caller is None:
        public_paths(documents, service.path_view())
    return {"documents": documents, "total": total, "limit": limit, "offset": offset,
            "generation": generation}


@router.delete("/v1/documents/{document_id}", status_code=202, dependencies=WRITE_AUTH,
               response_model=RemovalResponse, responses=errors(401, 404, 422),
               summary="remove a document from the index (a job)")
def delete_document(document_id: str, qa: QADep, jobs: JobsDep) -> dict[str, Any]:
    with generation_db(qa) as (db, _):
        found = store.has_document(db, document_id)
    if not found:
        raise HTTPException(404, f"no document with id {document_id!r} in the index")
    job = jobs.submit_remove([document_id])
    return {"job_id": job.id, "status_url": f"/v1/jobs/{job.id}", "request_id": request_id()}
