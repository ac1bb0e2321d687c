"""Where SpanQA keeps what it trains, builds and caches (readers, indexes, ONNX exports).

In a source checkout that is the checkout's `data/` (ignored by git), so the README's
commands find what the demo made. An installed package has no such folder beside it, and
writing into site-packages would be wrong, so it falls back to the user's data directory.
`$SPANQA_DATA` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def data_home() -> Path:
    if os.environ.get("SPANQA_DATA"):
        return Path(os.environ["SPANQA_DATA"])
    if (CHECKOUT / "pyproject.toml").is_file():
        return CHECKOUT / "data"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "spanqa"


def default_index() -> Path:
    """The index `spanqa index|search|ask|serve` use when none is named."""
    return data_home() / "index"


def demo_reader_dir() -> Path:
    """Where `spanqa demo` caches the reader it trains (and `ask`/`serve` look for it)."""
    return data_home() / "readers" / "demo"


def squad_dir() -> Path:
    """Where the shared SQuAD files live: $SPANQA_SQUAD_DIR, else ../shared/squad."""
    return Path(os.environ.get("SPANQA_SQUAD_DIR", CHECKOUT.parent / "shared" / "squad"))
