"""Checking a zip-based file (DOCX, and any other zip container) before a library unpacks it.

python-docx reads every part whole into memory, so a 1 MB upload whose word/document.xml
inflates to 1 GiB costs gigabytes before a line of text comes out. The sizes a zip declares
are checked first (cheap, and enough for an honest file), then every member is inflated
once in small chunks with a running count, because a header can lie: the count, not the
header, decides. Only stored and deflated members are accepted (all that OOXML allows):
bzip2 and LZMA members are inflated by zipfile in one call, beyond any chunking.
"""

from __future__ import annotations

import io
import zipfile

from .limits import ParseLimits, megabytes

MAX_MEMBERS = 10_000  # a DOCX has tens of parts; a million tiny ones is an attack
_CHUNK = 1024 * 1024
_ALLOWED = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


class ArchiveLimitError(ValueError):
    """A zip over one of the limits; the message is the skip reason."""


def check_zip(data: bytes, limits: ParseLimits) -> None:
    """Raises ArchiveLimitError when `data` unpacks beyond `limits`, zipfile.BadZipFile
    when it is not a sound zip (a member's CRC does not match what it inflates to)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise ArchiveLimitError(
                f"too many archive members ({len(members)}; the limit is {MAX_MEMBERS})")
        _check_declared(members, limits)
        total = 0
        for member in members:
            total += _inflated_size(archive, member, limits, total)


def _check_declared(members: list[zipfile.ZipInfo], limits: ParseLimits) -> None:
    total = 0
    for member in members:
        if member.compress_type not in _ALLOWED:
            raise ArchiveLimitError(
                f"compression method not allowed ({member.filename}: method "
                f"{member.compress_type}; only {' and '.join(_ALLOWED.values())})")
        if member.file_size > limits.max_member_bytes:
            raise ArchiveLimitError(
                f"unpacked size over the {megabytes(limits.max_member_bytes)} limit "
                f"({member.filename} declares {member.file_size} bytes)")
        total += member.file_size
        if total > limits.max_unpacked_bytes:
            raise ArchiveLimitError(_total_reason(limits))


def _inflated_size(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: ParseLimits,
                   before: int) -> int:
    """The member's real unpacked size, counted chunk by chunk and abandoned at a limit."""
    size = 0
    with archive.open(member) as stream:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > limits.max_member_bytes:
                raise ArchiveLimitError(
                    f"unpacked size over the {megabytes(limits.max_member_bytes)} limit "
                    f"({member.filename} inflates past it; its header declares "
                    f"{member.file_size} bytes)")
            if before + size > limits.max_unpacked_bytes:
                raise ArchiveLimitError(_total_reason(limits))
    return size


def _total_reason(limits: ParseLimits) -> str:
    return f"unpacked size of all members over the {megabytes(limits.max_unpacked_bytes)} limit"
