"""Integrity of a payload store: every media file and checkpoint against its recorded sha256.

:class:`VerifyMixin` is part of :class:`dlabel_lab.PayloadStore`.
:meth:`VerifyMixin.verify` re-hashes files in 1 MiB blocks, reports what is
missing or altered as a :class:`VerifyReport`, and records the media results
in ``media_checks`` so that :meth:`~dlabel_lab.PayloadStore.matched` flags
rows whose clip is gone or changed (``media_ok``). ``dlabel-lab verify STORE``
prints the report.

Example:
    >>> report = store.verify()  # doctest: +SKIP
    >>> report.ok, len(report.problems)  # doctest: +SKIP
    (True, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import io

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["VerifyMixin", "VerifyReport", "file_digest", "PROBLEM_COLUMNS"]

_TS = pa.timestamp("us")
_CHECK_COLUMNS = {"sha256": pa.string(), "status": pa.string(), "checked_at": _TS, "run_id": pa.string()}
PROBLEM_COLUMNS = ("kind", "id", "path", "expected", "found")


@dataclass
class VerifyReport:
    """What :meth:`~dlabel_lab.PayloadStore.verify` found.

    Attributes:
        problems: One row per missing or altered file: ``kind`` (``"media"``
            or ``"checkpoint"``), ``id`` (the media sha256 or the model
            version), ``path``, ``expected`` (the recorded sha256) and
            ``found`` (the file's sha256, ``"missing"``, or ``"unreadable: ..."``).
        n_media: Media files checked.
        n_raw_rows: Raw payload rows those files serve.
        n_checkpoints: Checkpoints checked.
        n_bad_rows: Raw payload rows whose file is missing or altered.
        recorded: Whether the media results went into ``media_checks``
            (``matched()``'s ``media_ok``); not for a read-only store.
        checked_at: When (UTC).
        store: The store folder.

    Example:
        >>> report = store.verify()  # doctest: +SKIP
        >>> report.ok, len(report.problems)  # doctest: +SKIP
        (True, 0)
    """

    problems: pd.DataFrame
    n_media: int
    n_raw_rows: int
    n_checkpoints: int
    n_bad_rows: int
    recorded: bool
    checked_at: datetime
    store: str = ""
    run_id: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when every media file and checkpoint matched its recorded sha256."""
        return self.problems.empty

    def summary(self) -> str:
        """A few lines of text: what was checked, each problem, and what to do about it."""
        head = (f"verified {self.n_media} media file(s) ({self.n_raw_rows} raw payload row(s)) and "
                f"{self.n_checkpoints} checkpoint(s) of {self.store}")  # fmt: skip
        lines = [head + (": all intact" if self.ok else f": {len(self.problems)} problem(s)")]
        for row in self.problems.itertuples(index=False):
            lines.append(f"  {row.kind:<10} {row.id:<24.24} {row.found:<24.24} {row.path}")
        kinds = set(self.problems["kind"])
        if "media" in kinds:
            lines.append(
                f"media: {self.n_bad_rows} raw payload row(s) point at a missing or altered file. Restore the files "
                "from a backup of media/ (each is named by its sha256), or log those clips again under new ids."
            )
        if "checkpoint" in kinds:
            lines.append(
                "checkpoints: restore the file from a backup, or re-register the model (register_version) and "
                "deploy the new version; load_version refuses a checkpoint whose sha256 does not match."
            )
        lines.append("results recorded: matched() shows them as media_ok" if self.recorded
                     else "results not recorded (store open read-only)")  # fmt: skip
        return "\n".join(lines)


def file_digest(path: Path) -> str:
    """The sha256 of a file read in 1 MiB blocks, ``"missing"``, or ``"unreadable: <reason>"``.

    Example:
        >>> file_digest(Path("/nonexistent"))
        'missing'
    """
    try:
        return io.sha256_file(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return "missing"
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


class VerifyMixin:
    """``verify()``; mixed into :class:`~dlabel_lab.PayloadStore`."""

    # provided by PayloadStore and the other mixins
    path: Path
    _write_lock: Any
    _writable: Any
    _rows: Any
    _insert: Any
    _check_process: Any
    read_only: bool
    start_run: Any
    finish_run: Any
    checkpoint_file: Any

    def verify(self, *, record: bool | None = None) -> VerifyReport:
        """Re-hash every media file and every registered checkpoint against its recorded sha256.

        Files are read in 1 MiB blocks (never whole). Every raw payload row's
        file is checked (rows sharing a file are checked once). The media
        results are appended to ``media_checks`` (one row per file, status
        ``ok``, ``missing``, ``altered`` or ``unreadable``), which
        :meth:`matched` shows as ``media_ok``, and a ``verify`` run goes into
        the execution log.

        Args:
            record: Record the results (default: when the store is writable).

        Returns:
            A :class:`VerifyReport` (``.ok``, ``.problems``, ``.summary()``).

        Raises:
            StoreError: ``record=True`` on a read-only store.

        Example:
            >>> report = store.verify()  # doctest: +SKIP
            >>> print(report.summary())  # doctest: +SKIP
            verified 12 media file(s) (12 raw payload row(s)) and 2 checkpoint(s) of /runs/store: all intact
        """
        import pandas as pd

        self._check_process()
        if record is None:
            record = not self.read_only
        elif record:
            self._writable()
        media = self._rows("SELECT sha256, media_relpath, count(*) FROM raw_payloads GROUP BY ALL "
                           "ORDER BY sha256, media_relpath")  # fmt: skip
        checkpoints = self._rows("SELECT model_version, checkpoint_path, checkpoint_sha256 FROM model_versions "
                                 "ORDER BY created_at, model_version")  # fmt: skip
        problems: list[tuple[str, str, str, str, str]] = []
        status: dict[str, str] = {}
        bad_rows = 0
        for sha, relpath, n in media:
            path = self.path / relpath
            found = file_digest(path)
            state = "ok" if found == sha else "missing" if found == "missing" else \
                "unreadable" if found.startswith("unreadable") else "altered"  # fmt: skip
            if status.get(sha, "ok") == "ok":  # a content under two names: the worse result counts
                status[sha] = state
            if state != "ok":
                problems.append(("media", sha, str(path), sha, found))
                bad_rows += int(n)
        for version, recorded_path, sha in checkpoints:
            path = self.checkpoint_file(recorded_path)
            found = file_digest(path)
            if found != sha:
                problems.append(("checkpoint", version, str(path), sha, found))
        report = VerifyReport(
            problems=pd.DataFrame(problems, columns=list(PROBLEM_COLUMNS)), n_media=len(status),
            n_raw_rows=sum(int(r[2]) for r in media), n_checkpoints=len(checkpoints), n_bad_rows=bad_rows,
            recorded=bool(record), checked_at=io.utc_now(), store=str(self.path),
        )  # fmt: skip
        if record:
            with self._write_lock:
                last = self._rows("SELECT max(checked_at) FROM media_checks")[0][0]
                if last is not None and report.checked_at <= last:  # the latest check must sort last
                    report.checked_at = last + timedelta(microseconds=1)
                run_id = self.start_run("verify", {"media": report.n_media, "checkpoints": report.n_checkpoints})
                shas = sorted(status)
                cols = {"sha256": shas, "status": [status[x] for x in shas],
                        "checked_at": [report.checked_at] * len(shas), "run_id": [run_id] * len(shas)}  # fmt: skip
                self._insert("media_checks", _CHECK_COLUMNS, cols, list(range(len(shas))))
                self.finish_run(run_id, status="ok", result={
                    "ok": report.ok, "problems": len(problems), "bad_raw_rows": bad_rows,
                    "by_kind": {k: sum(1 for p in problems if p[0] == k) for k in ("media", "checkpoint")},
                })  # fmt: skip
                report.run_id = run_id
        return report
