"""API keys: random secrets handed out once, stored only as sha256 hashes in a JSON file.

    {"keys": [{"id": "3f9a1c2e", "name": "ci", "sha256": "…", "created": "2025-…Z"}]}

The file is rewritten atomically (temporary file, fsync, rename) under a lock file, and the
server re-reads it when it changes, so `spanqa keys create` and `revoke` take effect on a
running server without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ..core.atomic import write_json_atomic

log = logging.getLogger(__name__)

HEADER = "X-API-Key"


class KeyFileError(ValueError):
    """The keys file exists but cannot be used (invalid JSON, wrong shape)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def how_to_create() -> str:
    """Told to HTTP callers without a key, so it names no server path (the keys file's
    place is the operator's to know)."""
    return ("create one on the server with `spanqa keys create --name NAME` (and the --keys "
            f"file the server reads) and send it in the {HEADER} header")


class KeyStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._keys: list[dict] = []

    # ---------------------------------------------------------------- reading

    def keys(self) -> list[dict]:
        """The stored records; re-read when the file changed. A file that became unreadable
        keeps the last good set (logged), so a half-edited file never opens the server."""
        try:
            info = self.path.stat()
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._keys = self._read() if stamp else []
                    self._stamp = stamp
                except KeyFileError as exc:
                    log.error("%s; keeping the %d keys read before", exc, len(self._keys))
            return list(self._keys)

    def _read(self) -> list[dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KeyFileError(f"the API keys file {self.path} cannot be read: {exc}") from exc
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list) or not all(
                isinstance(k, dict) and isinstance(k.get("sha256"), str) for k in keys):
            raise KeyFileError(f"the API keys file {self.path} is not a {{'keys': [...]}} list "
                               "of records with a sha256")
        return keys

    def check(self) -> None:
        """Raise KeyFileError when the file exists and is unusable (checked at startup)."""
        self._read()

    def configured(self) -> bool:
        return bool(self.keys())

    def verify(self, key: str | None) -> dict | None:
        """The record of a valid key, else None. Every stored hash is compared, in constant
        time, so timing says nothing about which keys exist."""
        if not key:
            return None
        digest = hash_key(key)
        found = None
        for record in self.keys():
            if hmac.compare_digest(digest, record["sha256"]) and found is None:
                found = record
        return found

    def records(self) -> list[dict]:
        """Records without their hashes."""
        return [{k: v for k, v in r.items() if k != "sha256"} for r in self.keys()]

    # ---------------------------------------------------------------- writing

    def create(self, name: str) -> tuple[str, dict]:
        """A new random key (returned once, never stored) and its record."""
        name = name.strip()
        if not name:
            raise ValueError("a key needs a --name")
        with self._file_lock():
            keys = self._read()
            if any(r.get("name") == name for r in keys):
                raise ValueError(f"a key named {name!r} exists in {self.path}; revoke it first "
                                 "or choose another name")
            key = new_secret()
            record = {"id": secrets.token_hex(4), "name": name, "sha256": hash_key(key),
                      "created": datetime.now(UTC).isoformat(timespec="seconds")}
            self._write([*keys, record])
        return key, {k: v for k, v in record.items() if k != "sha256"}

    def revoke(self, name_or_id: str) -> list[dict]:
        """Remove the keys with this name or id; the removed records."""
        with self._file_lock():
            keys = self._read()
            gone = [r for r in keys if name_or_id in (r.get("name"), r.get("id"))]
            if gone:
                self._write([r for r in keys if r not in gone])
        return [{k: v for k, v in r.items() if k != "sha256"} for r in gone]

    def _write(self, keys: list[dict]) -> None:
        write_json_atomic(self.path, {"keys": keys}, mode=0o600)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """One writer at a time across processes (two `keys create` must not lose a key)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def new_secret() -> str:
    """32 random bytes, URL-safe, never starting with "-": a key passed on a command line
    (`spanqa jobs cancel --key KEY`) must not read as an option."""
    while (key := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return key
