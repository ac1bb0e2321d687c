"""The index directory: immutable generations, a pointer to the live one, a writer lock.

    DIR/CURRENT        the name of the live generation ("gen-000007"), replaced atomically
    DIR/gen-000007/    index.db (SQLite), bm25/, dense.faiss, embeddings.npy, manifest.json
    DIR/writer.lock    held (flock) by the one process allowed to write

A writer builds a whole new generation beside the live one and publishes it by replacing
CURRENT, so a build killed at any moment leaves the previous index untouched, and a reader
that resolved CURRENT keeps a complete generation for as long as it holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..core.atomic import fsync_dir, fsync_tree, write_atomic

POINTER = "CURRENT"
LOCK = "writer.lock"
KEEP = 2  # generations kept: the live one and its predecessor, for readers still on it


class IndexBusyError(RuntimeError):
    """Another process is writing this index."""


class IndexNotFoundError(FileNotFoundError):
    """No index has been published in the directory yet."""


class IndexDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def current(self) -> Path:
        """The live generation's directory."""
        pointer = self.path / POINTER
        if not pointer.is_file():
            raise IndexNotFoundError(
                f"no index in {self.path}: build one with `spanqa index build PATH --index "
                f"{self.path}`"
            )
        return self.path / pointer.read_text().strip()

    def exists(self) -> bool:
        return (self.path / POINTER).is_file()

    def generations(self) -> list[Path]:
        return sorted(p for p in self.path.glob("gen-*") if p.is_dir())

    def new_generation(self) -> Path:
        numbers = [int(p.name.split("-")[1]) for p in self.generations()
                   if p.name.split("-")[1].isdigit()]
        path = self.path / f"gen-{max(numbers, default=0) + 1:06d}"
        path.mkdir(parents=True)
        return path

    def publish(self, generation: Path) -> None:
        """Make `generation` the live index in one atomic rename, then drop old ones."""
        fsync_tree(generation)
        write_atomic(self.path / POINTER, generation.name + "\n")
        fsync_dir(self.path)
        self.clean()

    def clean(self) -> None:
        """Remove generations that are neither live nor the one before (and half-built ones)."""
        live = self.current().name if self.exists() else None
        gens = self.generations()
        keep = {live} if live else set()
        if live:
            older = [g.name for g in gens if g.name < live]
            keep.update(older[-(KEEP - 1):] if KEEP > 1 else [])
        for gen in gens:
            if gen.name not in keep:
                shutil.rmtree(gen, ignore_errors=True)

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the writer lock; a second writer gets IndexBusyError at once, not a wait."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                raise IndexBusyError(
                    f"{self.path} is being written by {holder}; try again when it finishes"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}".encode())
            # Generations newer than the live one are leftovers of a killed writer.
            live = self.current().name if self.exists() else ""
            for gen in self.generations():
                if gen.name > live:
                    shutil.rmtree(gen, ignore_errors=True)
            yield
        finally:
            os.close(fd)  # closing releases the flock

