"""The lock file that makes one process the owner of a store.

The writer holds an exclusive OS lock on ``<store>/.lock`` and writes its pid,
host and start time into it, so that a second process can say who holds the
store (:class:`~dlabel_lab.StoreLocked`). Readers take a shared lock. The OS
drops a lock when its holder exits, however it exits, so no lock goes stale.

Example:
    >>> lock = LockFile(Path("runs/store/.lock"))  # doctest: +SKIP
    >>> lock.acquire(exclusive=True, store_dir=Path("runs/store"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import StoreError, StoreLocked
from .io import refuse_symlink, utc_now

__all__ = ["LockFile", "describe_holder"]


class LockFile:
    """An OS lock on ``<store>/.lock``: exclusive for the writer, shared for readers.

    The writer writes its pid, host and start time into the file so that a
    second process can say who holds the store. The OS drops the lock when the
    holder exits, however it exits (``kill -9`` included), so no lock goes stale.

    Args:
        path: The lock file.

    Example:
        >>> lock = LockFile(Path("runs/store/.lock"))  # doctest: +SKIP
        >>> lock.acquire(exclusive=True, store_dir=Path("runs/store"))  # doctest: +SKIP
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None

    def acquire(self, *, exclusive: bool, store_dir: Path) -> None:
        """Take the lock without waiting, or raise :class:`StoreLocked` naming the holder."""
        refuse_symlink(self.path, what="lock file")
        flags = (os.O_RDWR | os.O_CREAT | os.O_APPEND if exclusive else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            if exclusive:
                raise
            fd = None  # a read-only store copied without its lock file: nobody can hold it
        except OSError as error:
            if self.path.is_symlink():  # made a link between the check and the open
                refuse_symlink(self.path, what="lock file")
            raise StoreError(f"cannot open the store's lock file {self.path}: {error}") from None
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(
                f"the store's lock file {self.path} is not a regular file; remove it and open the store again"
            )
        f = None if fd is None else open(fd, "a+" if exclusive else "r")  # noqa: SIM115 - held until release()
        if f is None:
            return
        try:
            fcntl.flock(f.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            writer = not exclusive or not self._shared_possible()
            raise StoreLocked(_locked_message(store_dir, self.holder() if writer else {})) from None
        if exclusive:
            f.seek(0)
            f.truncate()
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now().isoformat(timespec="seconds")}
            f.write(json.dumps(info))
            f.flush()
        self._file = f

    def annotate(self, **info: Any) -> None:  # noqa: ANN401
        """Add facts to what the held exclusive lock says about its holder (e.g. the service's URL).

        Raises:
            StoreError: This object does not hold the lock for writing.
        """
        f = self._file
        if f is None or "a" not in f.mode:
            raise StoreError("only the process that holds a store for writing can say more about itself")
        holder = {**self.holder(), **info}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(holder))
        f.flush()

    def _shared_possible(self) -> bool:
        """Whether a shared lock is free now, i.e. only readers hold the store."""
        with open(self.path) as probe:
            try:
                fcntl.flock(probe.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
            return True

    def holder(self) -> dict[str, Any]:
        """What the lock file says about the writer that holds (or last held) the store."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        f, self._file = self._file, None
        if f is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()

    def abandon(self) -> None:
        """Close this process's copy of the lock file without unlocking (in a forked child).

        A forked child shares the parent's open lock file; ``flock(LOCK_UN)``
        there would take the parent's lock away. Closing the child's
        descriptor leaves the parent's lock in place.
        """
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError, ValueError):
                f.close()  # closes the descriptor; never calls flock


def _locked_message(store_dir: Path, holder: Mapping[str, Any]) -> str:
    if not holder:
        return (
            f"The payload store {store_dir} is locked: another process has it open read-only. "
            "Close the store there (store.close()) before opening it for writing."
        )
    pid, host, since = holder.get("pid", "?"), holder.get("host", "?"), holder.get("since", "?")
    if pid == os.getpid() and host == socket.gethostname():
        return (
            f"The payload store {store_dir} is locked: this process ({pid}) already has it open for writing since "
            f"{since} UTC through another PayloadStore object. Use that object, or close() it and open again."
        )
    return (
        f"The payload store {store_dir} is locked: process {pid} on {host} has it open for writing since "
        f"{since} UTC. One process owns a store: send the work to that process, or close the store there "
        f"(store.close(), or end process {pid}) and open it again here. Do not take turns on the file."
    )


def describe_holder(store_dir: Path) -> dict[str, Any]:
    """The pid/host/since the lock file of ``store_dir`` names (empty when unknown).

    Example:
        >>> describe_holder(Path("runs/store"))  # doctest: +SKIP
        {'pid': 4242, 'host': 'lab', 'since': '2024-01-01T00:00:00'}
    """
    return LockFile(store_dir / ".lock").holder()
