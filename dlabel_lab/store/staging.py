"""Staged media: clips copied into the store's folder, then put in place a batch at a time.

The ingest endpoint streams each clip into ``<store>/media/staging/`` in
1 MiB blocks while hashing it, so that memory stays bounded by one block
whatever the file's size, the size limit holds even for a file that grows
while it is read, and the clip is decoded from the very bytes that will be
logged (no second temporary copy in ``/tmp``). Logging renames the staged
file to its content address (``media/<sha[:2]>/<sha>.<ext>``); a clip that
fails to decode is discarded. Staged files carry the store's temp prefix, so
those a killed process leaves behind are removed on the next writable open.

:func:`publish_media` puts a whole batch in place with grouped fsyncs: every
new file is written (or was staged) and fsynced once, then all are renamed,
then each folder involved is fsynced once per batch (not once per clip), and
only after that does the caller commit the rows that point at them. A crash
at any step leaves temp files (removed on the next open) or whole files that
no row points at yet; a committed row's file is always durable.

Example:
    >>> staged = stage_file(Path("runs/store"), Path("clip.mp4"), max_bytes=2 << 30)  # doctest: +SKIP
    >>> publish_media(Path("runs/store"), [(staged, "media/ab/ab12.mp4")])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MediaTooLarge
from .io import TEMP_PREFIX, already_stored, fsync_path

__all__ = ["StagedMedia", "StagingWriter", "stage_file", "stage_bytes", "publish_media", "discard_staged"]

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


class StagingWriter:
    """Stage a clip that arrives in pieces (an HTTP upload), bounded and hashed on the way.

    Args:
        root: The store folder.
        max_bytes: Refuse the clip as soon as it grows past this.
        name: How to name the clip in errors.

    Raises:
        MediaTooLarge: From :meth:`write` once the pieces pass ``max_bytes``;
            the partial file is removed.

    Example:
        >>> writer = StagingWriter(Path("runs/store"), max_bytes=2 << 30)  # doctest: +SKIP
        >>> writer.write(b"..."); staged = writer.finish()  # doctest: +SKIP
    """

    def __init__(self, root: Path, *, max_bytes: int, name: str = "the upload") -> None:
        self.path = _new_temp(root)
        self.max_bytes = int(max_bytes)
        self.name = name
        self._digest = hashlib.sha256()
        self._size = 0
        self._file = open(self.path, "xb")  # noqa: SIM115 - closed by finish()/abort()

    def write(self, block: bytes | bytearray | memoryview) -> None:
        """Append one piece (size-checked before it is written)."""
        self._size += len(block)
        if self._size > self.max_bytes:
            self.abort()
            raise _too_large(self.name, self._size, self.max_bytes)
        self._digest.update(block)
        self._file.write(block)

    def finish(self) -> StagedMedia:
        """Close the file; the staged clip (log it or :func:`discard_staged` it)."""
        self._file.close()
        return StagedMedia(self.path, self._digest.hexdigest(), self._size)

    def abort(self) -> None:
        """Close and remove the partial file (idempotent)."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


Blob = StagedMedia | bytes | bytearray | memoryview


def publish_media(root: Path, files: Sequence[tuple[Blob, str]]) -> None:
    """Put a batch of media files at their content addresses, durably, with grouped fsyncs.

    Each entry is a staged clip (moved, no copy) or a clip's bytes (written to
    a temp file beside its final name), with its path relative to ``root``.
    In order: missing folders are created; each new file is fsynced once
    (bytes are written first); all are renamed to their final names; then
    every folder on the path of every file of the batch (``media/ab`` and
    ``media``, and ``root`` when ``media`` was created here) is fsynced once.
    For ``n`` new files in ``d`` shard folders that is ``n + d + 1`` fsyncs
    per batch, where one clip at a time took 2 or 3 per clip. With 256 shard
    folders a batch of 16 touches about 15 of them, so the count falls from
    about 2.4 to 2.0 per clip; the folder fsyncs all come after the renames,
    where a journaling file system commits the batch's names together.

    The caller commits the rows that point at these files only after this
    returns, so a committed row's file and every name on its path are on
    disk. A file already in place under its name with the same size holds the
    same bytes (the name is the sha256): it is not written again and a staged
    copy of it is removed, but its folders are fsynced all the same, so a
    file an earlier failed or killed batch renamed into place becomes durable
    before a row points at it. A crash at any step leaves temp files (removed
    on the next writable open) or whole files no row points at yet.

    Args:
        root: The store folder.
        files: ``(staged clip or bytes, relative path)`` pairs; a path given
            twice is written once.

    Raises:
        OSError: A write, fsync or rename failed; temp files written here
            are removed, staged ones are left to the caller (``discard_staged``).

    Example:
        >>> publish_media(Path("runs/store"), [(b"...", "media/ab/ab12.mp4")])  # doctest: +SKIP
    """
    folders: set[Path] = set()
    pending: list[tuple[Path, Path, bool]] = []  # (temp, final, written here)
    placed: set[Path] = set()
    renamed = 0
    try:
        for blob, relpath in files:
            final = root / relpath
            if final.parent not in folders:
                folders |= _make_folders(final.parent) | {root / p for p in Path(relpath).parents if p.name}
            size = blob.size if isinstance(blob, StagedMedia) else memoryview(blob).nbytes
            if final in placed or already_stored(final, size):
                if isinstance(blob, StagedMedia):
                    blob.path.unlink(missing_ok=True)
                continue
            placed.add(final)
            if isinstance(blob, StagedMedia):
                pending.append((blob.path, final, False))
                fsync_path(blob.path)
            else:
                tmp = final.parent / f"{TEMP_PREFIX}{final.name}-{os.getpid()}-{os.urandom(4).hex()}"
                pending.append((tmp, final, True))
                _write_synced(tmp, blob)
        for tmp, final, _ in pending:
            os.replace(tmp, final)
            renamed += 1
        for folder in sorted(folders, key=lambda f: (-len(f.parts), f)):  # deepest first
            fsync_path(folder)
    except BaseException:
        for tmp, _, written_here in pending[renamed:]:
            if written_here:
                tmp.unlink(missing_ok=True)
        raise


def _make_folders(folder: Path) -> set[Path]:
    """Create ``folder`` and its missing parents; the parents of those created (their entries changed)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
    return {new.parent for new in missing}


def _write_synced(tmp: Path, data: bytes | bytearray | memoryview) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def discard_staged(staged: StagedMedia) -> None:
    """Remove a staged file that will not be logged (missing is fine).

    Example:
        >>> discard_staged(staged)  # doctest: +SKIP
    """
    staged.path.unlink(missing_ok=True)
