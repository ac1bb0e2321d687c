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
