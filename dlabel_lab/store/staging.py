"""Staged media: a clip copied into the store's folder before it is decoded or logged.

The ingest endpoint streams each clip into ``<store>/media/staging/`` in
1 MiB blocks while hashing it, so that memory stays bounded by one block
whatever the file's size, the size limit holds even for a file that grows
while it is read, and the clip is decoded from the very bytes that will be
logged (no second temporary copy in ``/tmp``). Logging renames the staged
file to its content address (``media/<sha[:2]>/<sha>.<ext>``); a clip that
fails to decode is discarded. Staged files carry the store's temp prefix, so
those a killed process leaves behind are removed on the next writable open.

Example:
    >>> staged = stage_file(Path("runs/store"), Path("clip.mp4"), max_bytes=2 << 30)  # doctest: +SKIP
    >>> commit_staged(Path("runs/store"), staged, "media/ab/ab12.mp4")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MediaTooLarge
from .io import TEMP_PREFIX, already_stored, make_folder, rename_into_place

__all__ = ["StagedMedia", "stage_file", "stage_bytes", "commit_staged", "discard_staged"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class StagedMedia:
    """A clip copied into the store's staging folder.

    Attributes:
        path: The staged file.
        sha256: Digest of its bytes.
        size: Its length in bytes.
    """

    path: Path
    sha256: str
    size: int


def _new_temp(root: Path) -> Path:
    folder = root / "media" / "staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{TEMP_PREFIX}stage-{os.getpid()}-{os.urandom(6).hex()}"


def _too_large(name: str, size: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(
        f"{name} is {size / 2**20:.1f} MiB or more, over the limit of {limit / 2**20:.0f} MiB per clip; nothing was "
        "stored. Cut the clip, or raise the limit (ClipSpec.max_file_bytes) if clips this large are expected."
    )


def stage_file(root: Path, source: Path, *, max_bytes: int, name: str = "") -> StagedMedia:
    """Copy ``source`` into the staging folder in blocks, hashing as it goes.

    Raises:
        MediaTooLarge: The file is (or grows) larger than ``max_bytes``; the
            partial copy is removed.

    Example:
        >>> stage_file(Path("runs/store"), Path("clip.mp4"), max_bytes=2 << 30).size  # doctest: +SKIP
        81234
    """
    name = name or repr(str(source))
    tmp = _new_temp(root)
    digest, size = hashlib.sha256(), 0
    try:
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            if os.fstat(src.fileno()).st_size > max_bytes:
                raise _too_large(name, os.fstat(src.fileno()).st_size, max_bytes)
            while block := src.read(_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise _too_large(name, size, max_bytes)
                digest.update(block)
                dst.write(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StagedMedia(tmp, digest.hexdigest(), size)


def stage_bytes(root: Path, data: bytes | bytearray | memoryview, *, max_bytes: int) -> StagedMedia:
    """Write in-memory clip bytes into the staging folder.

    Raises:
        MediaTooLarge: ``data`` is larger than ``max_bytes``.

    Example:
        >>> stage_bytes(Path("runs/store"), b"...", max_bytes=2 << 30).sha256  # doctest: +SKIP
        '5f3c...'
    """
    view = memoryview(data).cast("B")
    if len(view) > max_bytes:
        raise _too_large("the given bytes", len(view), max_bytes)
    tmp = _new_temp(root)
    try:
        with open(tmp, "xb") as dst:
            dst.write(view)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StagedMedia(tmp, hashlib.sha256(view).hexdigest(), len(view))


def commit_staged(root: Path, staged: StagedMedia, relpath: str) -> None:
    """Move a staged file to its content address atomically (fsync, rename, fsync the folder).

    An existing file of the same size under that name holds the same bytes
    (the name is the sha256), so the staged copy is then just removed.

    Example:
        >>> commit_staged(Path("runs/store"), staged, "media/ab/ab12.mp4")  # doctest: +SKIP
    """
    final = root / relpath
    if already_stored(final, staged.size):
        staged.path.unlink(missing_ok=True)
        return
    make_folder(final.parent)
    fd = os.open(staged.path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    rename_into_place(staged.path, final)


def discard_staged(staged: StagedMedia) -> None:
    """Remove a staged file that will not be logged (missing is fine).

    Example:
        >>> discard_staged(staged)  # doctest: +SKIP
    """
    staged.path.unlink(missing_ok=True)
