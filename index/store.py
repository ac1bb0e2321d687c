"""The SQLite side of an index generation, through sqlite-utils.

`passages.row` is the passage's position in the BM25 matrix, the FAISS index and
embeddings.npy: one number ties the three together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ..core.strictjson import strict_loads as strict_loads  # what reads stored JSON
from .records import Document, Passage

DB_FILE = "index.db"


def create(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path / DB_FILE)
    db["documents"].create(
        {"id": str, "path": str, "title": str, "content_hash": str, "mtime": float,
         "length": int, "metadata": str}, pk="id", not_null={"path", "content_hash"})
    db["passages"].create(
        {"row": int, "id": str, "document_id": str, "ord": int, "start": int, "end": int,
         "page": int, "title": str, "text": str}, pk="row",
        foreign_keys=[("document_id", "documents", "id")])
    db["passages"].create_index(["id"], unique=True)
    db["passages"].create_index(["document_id"])
    return db


def open_db(path: Path, readonly: bool = True) -> sqlite_utils.Database:
    import sqlite3

    file = path / DB_FILE
    if readonly:
        conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True, check_same_thread=False)
        return sqlite_utils.Database(conn)
    return sqlite_utils.Database(file)


def insert_documents(db: sqlite_utils.Database, documents: Iterable[dict[str, Any]]) -> None:
    db["documents"].insert_all(documents, batch_size=500)


def document_row(document: Document) -> dict[str, Any]:
    return {"id": document.id, "path": document.path, "title": document.title,
            "content_hash": document.content_hash, "mtime": document.mtime,
            "length": len(document.text),
            "metadata": json.dumps(document.metadata, ensure_ascii=False, default=str,
                                   allow_nan=False)}


def insert_passages(db: sqlite_utils.Database, rows: Iterable[dict[str, Any]]) -> None:
    db["passages"].insert_all(rows, batch_size=1000)


def passage_row(row: int, passage: Passage) -> dict[str, Any]:
    return {"row": row, "id": passage.id, "document_id": passage.document_id,
            "ord": passage.order, "start": passage.start, "end": passage.end,
            "page": passage.page, "title": passage.title, "text": passage.text}


def to_passage(row: dict[str, Any]) -> Passage:
    return Passage(id=row["id"], document_id=row["document_id"], order=row["ord"],
                   start=row["start"], end=row["end"], text=row["text"], title=row["title"],
                   page=row["page"])


def passages_by_rows(db: sqlite_utils.Database, rows: Sequence[int]) -> dict[int, dict]:
    if not rows:
        return {}
    marks = ",".join("?" * len(rows))
    sql = (f"select p.*, d.path as path from passages p join documents d "
           f"on d.id = p.document_id where p.row in ({marks})")
    return {r["row"]: r for r in db.query(sql, list(rows))}


def iter_passage_rows(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    yield from db.query("select * from passages order by row")


# The queries the HTTP API runs on a generation: named here, beside the tables they read.


def check_readable(db: sqlite_utils.Database) -> None:
    """Raises sqlite3.OperationalError when the generation's file is gone (another writer
    published a newer one and cleaned this one up), so the caller can follow it."""
    db.execute("select 1 from documents limit 1")


def count_documents(db: sqlite_utils.Database) -> int:
    return next(iter(db.query("select count(*) as n from documents")))["n"]


def document_page(db: sqlite_utils.Database, limit: int, offset: int) -> list[dict[str, Any]]:
    """Documents by path (then id), each with its passage count and its metadata decoded
    (an empty dict where the stored JSON cannot be read as an object)."""
    rows = db.query(
        "select d.id, d.path, d.title, d.metadata, d.length, d.mtime, "
        "(select count(*) from passages p where p.document_id = d.id) as passages "
        "from documents d order by d.path, d.id limit ? offset ?", [limit, offset])
    return [{**row, "metadata": _metadata(row["metadata"])} for row in rows]


def _metadata(text: str | None) -> dict[str, Any]:
    try:
        value = strict_loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def has_document(db: sqlite_utils.Database, document_id: str) -> bool:
    return bool(list(db.query("select id from documents where id = ?", [document_id])))


def document_paths(db: sqlite_utils.Database) -> list[str]:
    """Every distinct document path: what the collection root is worked out from."""
    return [row["path"] for row in db.query("select distinct path from documents")]


def passage_with_path(db: sqlite_utils.Database, passage_id: str) -> dict[str, Any] | None:
    """A passage's id, document id, title and text with its document's path; None when no
    passage has that id."""
    rows = list(db.query(
        "select p.id, p.document_id, p.title, p.text, d.path from passages p "
        "join documents d on d.id = p.document_id where p.id = ?", [passage_id]))
    return rows[0] if rows else None
