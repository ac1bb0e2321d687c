"""What callers without an API key see of the server's paths.

A document's source path, the upload folders, the reader's folder and the index name the
server's layout (user names, mount points, where the data lives): nothing a caller who may
only ask questions needs, and a help to whoever probes the server. So the API shows those
callers every path relative to the collection, and callers with a valid key the full path:

- a document under the uploads folder: `uploads/<upload id>/<file name>`;
- a document under the collection root (the deepest folder holding every indexed document
  that is not an upload): its path relative to that root, e.g. `places/freedonia.md`;
- any other path (the index, the reader, a document outside both): its last part only.

The same forms work the other way in `filters.path_prefix`, so the page's "only documents
under path" takes what the page shows; an absolute prefix needs a key (for anyone else it
would tell which folders exist on the server).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

UPLOADS = "uploads"  # what the uploads folder is called in public paths

# An absolute path inside a longer text (an error message): a slash that does not follow a
# word, a dot, a colon (URLs) or another slash, up to a space, a quote or a bracket.
_EMBEDDED_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`,;()\[\]{}<>]+")


def collection_root(paths: Iterable[str], uploads_dir: Path) -> Path | None:
    """The deepest folder holding every document path outside `uploads_dir`; None when there
    is none, or when it is the filesystem root (relative paths would then be absolute paths
    without their first slash)."""
    uploads = PurePosixPath(uploads_dir)
    folders = {os.path.dirname(p) for p in paths
               if os.path.isabs(p) and not PurePosixPath(p).is_relative_to(uploads)}
    if not folders:
        return None
    root = Path(os.path.commonpath(sorted(folders)))
    return None if root == Path(root.anchor) else root


def public_name(path: str) -> str:
    """A path outside the collection and the uploads as callers without a key see it: an
    absolute path by its last part, a relative one (a hub id) as it is. Needs no index,
    so /v1/health, which probes call, can use it without a query."""
    p = PurePosixPath(path)
    return (p.name or ".") if p.is_absolute() else path


@dataclass(frozen=True)
class PathView:
    """Maps server paths to the public forms above (`public`, `scrub`) and public path
    prefixes back to server paths (`server_prefix`)."""

    uploads_dir: Path
    root: Path | None

    def public(self, path: str) -> str:
        """The public form of one path; relative paths are already public."""
        p = PurePosixPath(path)
        if not p.is_absolute():
            return path
        if p.is_relative_to(self.uploads_dir):
            return (PurePosixPath(UPLOADS) / p.relative_to(self.uploads_dir)).as_posix()
        if self.root is not None and p.is_relative_to(self.root):
            return p.relative_to(self.root).as_posix()
        return public_name(path)

    def scrub(self, value: Any) -> Any:
        """`value` (JSON-like) with every absolute path in its strings made public: whole
        strings that are paths, and paths inside messages. For job and statistics records,
        never for document text (that would move answer offsets)."""
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if not isinstance(value, str):
            return value
        if value.startswith("/") and "\n" not in value:
            return self.public(value)
        return _EMBEDDED_PATH.sub(lambda m: self.public(m.group(0)), value)

    def server_prefix(self, prefix: str, *, keyed: bool) -> str:
        """The server path a `path_prefix` filter means. Public forms (relative to the
        collection, or `uploads/...`) are resolved for everyone; absolute ones (and `~`) are
        taken as they are from callers with a key and refused otherwise. ValueError says
        why a prefix cannot be used."""
        if prefix.startswith(("/", "~")):
            if keyed:
                return prefix
            raise ValueError("without an API key, give a path as the API shows it, relative "
                             "to the collection (e.g. 'policies/' or 'uploads/'), not an "
                             "absolute path")
        parts = PurePosixPath(prefix).parts
        if ".." in parts:
            raise ValueError("'..' is not allowed: give a path inside the collection")
        if parts and parts[0] == UPLOADS:
            return str(self.uploads_dir.joinpath(*parts[1:]))
        if self.root is None:
            raise ValueError("the indexed documents share no common folder, so a relative "
                             "path cannot be placed; use an absolute path with an API key")
        return str(self.root.joinpath(*parts))


def public_paths(items: Iterable[Any], view: PathView) -> None:
    """Answers', hits' and documents' `path` (and a document's metadata path) made public in
    place; their text is left as it is (offsets point into it)."""
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            item["path"] = view.public(item["path"])
            metadata = item.get("metadata")
            if isinstance(metadata, dict) and isinstance(metadata.get("path"), str):
                metadata["path"] = view.public(metadata["path"])
