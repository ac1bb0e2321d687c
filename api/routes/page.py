"""The web page: `/` serves static/index.html (a placeholder when the page is not
installed), and `StaticFolder` serves its scripts and styles under /static. Outside the
API description; the page's strict Content-Security-Policy comes from api/gate.py."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..dependencies import SettingsDep

router = APIRouter()

PLACEHOLDER = """<!doctype html><html lang="en"><meta charset="utf-8"><title>SpanQA</title>
<body><h1>SpanQA</h1><p>The web page is not installed on this server. The API is described
in <a href="/openapi.json">/openapi.json</a>.</p></body></html>"""


class StaticFolder(StaticFiles):
    """A missing static folder is a 404, not a 500 (the page ships separately)."""

    async def check_config(self) -> None:
        if self.directory is None or not Path(self.directory).is_dir():
            raise StarletteHTTPException(404, "no static files on this server")
        await super().check_config()


@router.get("/", include_in_schema=False)
def index_page(settings: SettingsDep) -> Response:
    page = Path(settings.static_dir) / "index.html"
    if page.is_file():
        return FileResponse(page, media_type="text/html")
    return HTMLResponse(PLACEHOLDER)
