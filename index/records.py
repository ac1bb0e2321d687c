"""The records that flow from documents to passages (and on into the index)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Section:
    """A stretch of a document's text that no passage may cross: a PDF page, a SQuAD
    paragraph. `page` is the 1-based page number for PDFs, else None."""

    start: int
    end: int
    page: int | None = None


@dataclass
class Document:
    """One source document as plain text; offsets everywhere refer to `text`."""

    id: str  # stable: derived from the source path (and record id for multi-record files)
    path: str  # the source file (for multi-record files: the same file for every record)
    title: str
    text: str
    content_hash: str  # sha256 of `text`: what decides whether a document changed
    mtime: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)  # empty: the whole text is one


@dataclass(frozen=True)
class Skipped:
    """A file (or record) that could not be read, and why; counted and reported, never fatal."""

    path: str
    reason: str


@dataclass(frozen=True)
class Passage:
    """A chunk of a document sized for the reader: document.text[start:end] == text."""

    id: str  # stable across rebuilds of the same content
    document_id: str
    order: int  # position within its document, from 0
    start: int
    end: int
    text: str
    title: str
    page: int | None = None
