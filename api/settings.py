"""The HTTP service's settings: one dataclass that `spanqa serve` fills from its flags and
tests fill by hand, kept apart from the app so that the routes' dependencies can name its
type without importing the module that builds the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..indexer.limits import DEFAULT_LIMITS, ParseLimits
from .gate import MiB
from .qa import QA

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class Settings:
    """Server settings; paths left None default to siblings of the index directory."""

    index: Path | None = None
    uploads_dir: Path | None = None  # <index>/../uploads
    keys_file: Path | None = None  # <index>/../api_keys.json
    feedback_db: Path | None = None  # <index>/../feedback.db
    protect_all: bool = False  # every /v1 endpoint but health needs a key
    # Feedback without a key (else it needs one; protect_all wins): rate-limited per client
    # address, its fields capped (routes/feedback.py ANONYMOUS_MAX_CHARS), at most max_rows
    # such rows kept.
    anonymous_feedback: bool = False
    anonymous_feedback_per_minute: float = 6.0
    anonymous_feedback_burst: int = 5
    anonymous_feedback_max_rows: int = 10_000
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    max_pending: int = 1024  # questions waiting for the model before 503s
    max_json_bytes: int = 1 * MiB
    max_upload_bytes: int = 50 * MiB
    reader_name: str | None = None
    static_dir: Path = STATIC_DIR
    lock_retry_max_s: float = 5.0
    lock_timeout_s: float = 3600.0
    watch_index_s: float = 2.0  # how often an idle server looks for other writers' updates
    parse_limits: ParseLimits = DEFAULT_LIMITS  # what one uploaded file may cost to parse
    # FastAPI's /docs and /redoc: off by default, since they load their script from a CDN
    # onto the origin where the page keeps its API key (/openapi.json is always served).
    api_docs: bool = False

    def resolve(self, qa: QA) -> Settings:
        index = Path(self.index or qa.index)
        home = index.resolve().parent
        out = Settings(**{**self.__dict__})
        out.index = index
        out.uploads_dir = Path(self.uploads_dir or home / "uploads")
        out.keys_file = Path(self.keys_file or home / "api_keys.json")
        out.feedback_db = Path(self.feedback_db or home / "feedback.db")
        out.reader_name = self.reader_name or reader_name(qa)
        return out


def reader_name(qa: QA) -> str:
    """What /v1/health and /v1/stats call the reader when `spanqa serve` did not say."""
    config = getattr(getattr(qa.reader, "model", None), "config", None)
    return str(getattr(config, "_name_or_path", "") or type(qa.reader).__name__)
