"""Answer feedback from users, kept in SQLite and exported as SQuAD v1.1 training data.

Each record stores the passage text and title it refers to (looked up in the index when
the feedback arrives), so the export stays complete after the document is re-indexed or
removed. Answers marked correct become SQuAD questions whose answer is `text[start:end]`
of their passage: exactly the data `spanqa reader train` fine-tunes on.

Because the export is training data, each record says who sent it: `key_name` is the name
of the API key it came with, NULL when it came without one (anonymous feedback, which the
server takes only when its operator allows it, and records stored before keys were
recorded: their origin is unknown). The export leaves NULL rows out unless asked, and the
store keeps at most a given number of them, so anonymous posts cannot poison the next
fine-tuning or fill the disk.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

TABLE = "feedback"


class FeedbackFull(Exception):
    """The store holds as many anonymous records as it may keep."""

    def __init__(self, limit: int):
        super().__init__(f"the server keeps at most {limit} feedback records sent without an "
                         "API key and holds that many; send feedback with an API key")
        self.limit = limit


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()
        with self._lock:
            self.db.execute("pragma journal_mode=wal")
            if TABLE not in self.db.table_names():
                self.db[TABLE].create(
                    {"id": int, "created": str, "question": str, "answer": str,
                     "passage_id": str, "document_id": str, "title": str, "path": str,
                     "context": str, "start": int, "end": int, "correct": int,
                     "comment": str, "request_id": str, "generation": str,
                     "key_name": str},
                    pk="id", not_null={"question", "answer", "passage_id", "context"})
            elif "key_name" not in self.db[TABLE].columns_dict:
                # A store from before keys were recorded: its rows count as anonymous.
                self.db[TABLE].add_column("key_name", str)

    def add(self, record: dict[str, Any], *, max_anonymous: int | None = None) -> int:
        """Store one record; `key_name` None marks it anonymous. With `max_anonymous`, an
        anonymous record beyond that many raises FeedbackFull (counted and inserted under
        one lock, so concurrent posts cannot overshoot)."""
        row = {**record, "correct": int(bool(record["correct"])),
               "key_name": record.get("key_name"),
               "created": datetime.now(UTC).isoformat(timespec="seconds")}
        with self._lock, self.db.conn:
            if row["key_name"] is None and max_anonymous is not None:
                held = next(iter(self.db.query(
                    f"select count(*) as n from {TABLE} where key_name is null")))["n"]
                if held >= max_anonymous:
                    raise FeedbackFull(max_anonymous)
            table = self.db[TABLE].insert(row)
            return int(table.last_pk)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = list(self.db.query(
                f"select count(*) as total, coalesce(sum(correct), 0) as correct, "
                f"coalesce(sum(key_name is null), 0) as anonymous from {TABLE}"))
        return {"total": rows[0]["total"], "correct": rows[0]["correct"],
                "anonymous": rows[0]["anonymous"]}

    def export_squad(self, *, include_anonymous: bool = False) -> dict[str, Any]:
        """SQuAD v1.1 from the answers marked correct; one paragraph per passage text. Only
        records sent with an API key unless `include_anonymous`: this is training data."""
        keyed = "" if include_anonymous else " and key_name is not null"
        with self._lock:
            rows = list(self.db.query(
                f"select * from {TABLE} where correct = 1{keyed} order by id"))
        articles: OrderedDict[str, OrderedDict[str, list[dict]]] = OrderedDict()
        for row in rows:
            context, start, end = row["context"], row["start"], row["end"]
            if not (0 <= start < end <= len(context)) or context[start:end] != row["answer"]:
                continue  # checked on the way in; a row edited by hand is left out
            title = row["title"] or Path(row["path"] or "").name or "untitled"
            paragraphs = articles.setdefault(title, OrderedDict())
            paragraphs.setdefault(context, []).append({
                "id": f"feedback-{row['id']}", "question": row["question"],
                "answers": [{"text": row["answer"], "answer_start": start}],
            })
        return {"version": "1.1", "data": [
            {"title": title,
             "paragraphs": [{"context": context, "qas": qas}
                            for context, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()]}

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
