"""Raw payloads: the native clips of scoring events, content-addressed under ``media/``.

:class:`RawMixin` is part of :class:`dlabel_lab.PayloadStore`. A clip's bytes
go to ``media/<sha[:2]>/<sha>.<ext>`` (written atomically, once per content)
before the row that points at them commits, a batch at a time with grouped
fsyncs (:func:`~dlabel_lab.store.staging.publish_media`). The ingest endpoint
stages clips into the store first (:meth:`RawMixin.stage_media`, bounded and
hashed in 1 MiB blocks), decodes the staged copy and logs it by renaming it
into place.

Example:
    >>> staged = store.stage_media("clip.mp4")  # doctest: +SKIP
    >>> store.log_raw_many([{"scoring_id": sid, "staged": staged, "source_name": "clip.mp4"}])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import ConfigError, StoreCorrupt, UnknownRecord
from . import io, writes
from .events import _TS, _meta_number, _rows_of
from .staging import StagedMedia, discard_staged, publish_media, stage_bytes, stage_file

__all__ = ["RawMixin", "RAW_COLUMNS"]

RAW_COLUMNS = {
    "scoring_id": pa.string(), "received_at": _TS, "sha256": pa.string(), "media_relpath": pa.string(),
    "size_bytes": pa.int64(), "source_name": pa.string(), "fps": pa.float64(), "frame_count": pa.int64(),
    "width": pa.int32(), "height": pa.int32(), "codec": pa.string(), "metadata": pa.string(),
}  # fmt: skip


class RawMixin:
    """Logging raw clips and reading them back."""

    # provided by PayloadStore
    path: Path
    _write_lock: Any
    _writable: Any
    _rows: Any
    _cursor: Any
    _insert: Any
    _mapped_errors: Any

    def log_raw(
        self,
        scoring_id: str,
        data: bytes,
        *,
        source_name: str = "",
        metadata: Mapping[str, Any] | None = None,
        received_at: datetime | None = None,
    ) -> str:
        """Log the native clip bytes of a scoring event; the sha256 of the bytes.

        The bytes go to ``media/<sha[:2]>/<sha>.<ext>`` (written atomically,
        once per content) before the row that points at them commits.
        ``metadata`` keys ``fps``, ``frame_count``, ``width``, ``height``,
        ``codec`` fill columns of their own; ``container`` picks the file
        extension when ``source_name`` has none.

        Args:
            scoring_id: The event's id (see :meth:`new_scoring_id`).
            data: The clip file's bytes.
            source_name: Where the clip came from (a file name or camera id).
            metadata: JSON-serialisable facts about the clip.
            received_at: When the clip arrived (default: now, UTC).

        Raises:
            DuplicateScoringId: Different bytes or metadata were logged under
                this id before (the same ones again add nothing).

        Example:
            >>> store.log_raw(sid, b"...", source_name="clip.mp4", metadata={"fps": 25})  # doctest: +SKIP
            '5f3c...'
        """
        row = {"scoring_id": scoring_id, "data": data, "source_name": source_name, "metadata": metadata}
        if received_at is not None:
            row["received_at"] = received_at
        return self.log_raw_many([row])[0]

    def log_raw_many(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Log several raw payloads in one transaction; their sha256 digests, in order.

        The batch's media files go in place first, with one fsync per new
        file and one per folder involved (not per clip), and only then does
        the transaction that points at them commit.

        Args:
            rows: Dicts with ``scoring_id`` and either ``data`` (the clip's
                bytes) or ``staged`` (a :class:`StagedMedia` from
                :meth:`stage_media`, moved into place without another copy),
                and optionally ``source_name``, ``metadata``, ``received_at``.

        Raises:
            DuplicateScoringId: An id is known (or repeated in ``rows``) with a
                different payload; nothing of the batch is written.

        Example:
            >>> store.log_raw_many([{"scoring_id": sid, "data": b"..."}])  # doctest: +SKIP
            ['5f3c...']
        """
        self._writable()
        now = io.utc_now()
        cols: dict[str, list[Any]] = {name: [] for name in RAW_COLUMNS}
        blobs: list[bytes | bytearray | memoryview | StagedMedia] = []
        for i, row in enumerate(_rows_of(rows, "log_raw_many")):
            try:
                sid = io.check_scoring_id(row["scoring_id"])
            except KeyError as missing:
                raise ConfigError(f"row {i} of log_raw_many lacks {missing}") from None
            staged = row.get("staged")
            if staged is not None:
                if not isinstance(staged, StagedMedia):
                    raise ConfigError(
                        f"staged of {sid} must come from store.stage_media(), got {type(staged).__name__}")
                data = staged
            elif "data" not in row:
                raise ConfigError(f"row {i} of log_raw_many lacks 'data' (or 'staged')")
            else:
                data = row["data"]
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise ConfigError(
                        f"data of {sid} must be bytes (the clip file's content), got {type(data).__name__}")
            source = io.check_text(row.get("source_name") or "", what="source_name", allow_empty=True)
            meta = row.get("metadata") or {}
            if not isinstance(meta, Mapping):
                raise ConfigError(f"metadata of {sid} must be a dict, got {type(meta).__name__}")
            sha = data.sha256 if isinstance(data, StagedMedia) else hashlib.sha256(data).hexdigest()
            cols["scoring_id"].append(sid)
            cols["received_at"].append(io.utc_naive(row.get("received_at"), what="received_at") or now)
            cols["sha256"].append(sha)
            cols["media_relpath"].append(f"media/{sha[:2]}/{sha}.{io.media_extension(source, meta)}")  # type: ignore[arg-type]
            cols["size_bytes"].append(data.size if isinstance(data, StagedMedia) else len(data))
            cols["source_name"].append(source)
            cols["fps"].append(_meta_number(meta, "fps", float, sid))
            cols["frame_count"].append(_meta_number(meta, "frame_count", int, sid))
            cols["width"].append(_meta_number(meta, "width", int, sid))
            cols["height"].append(_meta_number(meta, "height", int, sid))
            codec = meta.get("codec")
            cols["codec"].append(None if codec is None else io.check_text(str(codec), what="codec", allow_empty=True))
            cols["metadata"].append(io.canonical_json(dict(meta), what=f"metadata of {sid}"))
            blobs.append(data)
        payload = ("sha256", "source_name", "metadata")
        keep = writes.unique_in_batch("raw_payloads", ("scoring_id",), cols, payload)
        with self._write_lock:
            with self._mapped_errors():  # checked before any media is written
                keep = writes.not_stored(self._cursor(), "raw_payloads", ("scoring_id",), cols, payload, keep)
            if keep:
                known = self._known_media([cols["sha256"][i] for i in keep])
                for i in keep:
                    cols["media_relpath"][i] = known.setdefault(cols["sha256"][i], cols["media_relpath"][i])
                # every file durable (grouped fsyncs) before the rows that point at them commit
                publish_media(self.path, [(blobs[i], cols["media_relpath"][i]) for i in keep])
                self._insert("raw_payloads", RAW_COLUMNS, cols, keep)
        return list(cols["sha256"])

    def stage_media(self, source: str | Path | bytes, *, max_bytes: int = 2 << 30, name: str = "") -> StagedMedia:
        """Copy a clip into the store's staging folder, bounded and hashed in 1 MiB blocks.

        The ingest endpoint decodes the staged copy and then logs it with
        ``log_raw_many([{"scoring_id": ..., "staged": staged}])``, which
        renames it to its content address; :meth:`discard_staged` removes a
        copy that will not be logged. Peak memory is one block, whatever
        the clip's size.

        Args:
            source: A local file path or the clip's bytes.
            max_bytes: Refuse larger clips (checked before copying and while copying).
            name: How to name the clip in errors (default: the path).

        Raises:
            MediaTooLarge: The clip exceeds ``max_bytes``; nothing stays behind.

        Example:
            >>> staged = store.stage_media("clip.mp4")  # doctest: +SKIP
            >>> store.log_raw_many([{"scoring_id": sid, "staged": staged}])  # doctest: +SKIP
        """
        self._writable()
        if isinstance(source, (bytes, bytearray, memoryview)):
            return stage_bytes(self.path, source, max_bytes=max_bytes)
        return stage_file(self.path, Path(source), max_bytes=max_bytes, name=name)

    @staticmethod
    def discard_staged(staged: StagedMedia) -> None:
        """Remove a staged clip that will not be logged.

        Example:
            >>> store.discard_staged(staged)  # doctest: +SKIP
        """
        discard_staged(staged)

    def first_scoring_ids(self, sha256s: Sequence[str]) -> dict[str, str]:
        """sha256 -> the earliest scoring id whose raw payload has exactly these bytes.

        Used to report duplicate clips at ingest: a digest that is already
        known means the same content was scored before.

        Example:
            >>> store.first_scoring_ids([result.sha256])  # doctest: +SKIP
            {'5f3c...': '0193a1b2-...'}
        """
        shas = sorted({str(s) for s in sha256s})
        if not shas:
            return {}
        found = self._rows(
            "SELECT sha256, arg_min(scoring_id, received_at) FROM raw_payloads "
            "WHERE list_contains(CAST(? AS VARCHAR[]), sha256) GROUP BY sha256",
            [shas],
        )
        return dict(found)

    def scoring_events(self, scoring_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What is stored of each known scoring id: its clip's digest, the versions that scored it, its latest label.

        A retry of a scoring request (same scoring id) uses this to tell a
        finished event (answer from the store), a half-finished one (score
        it again: replayed rows add nothing) and a changed payload (refuse).

        Returns:
            scoring id -> ``{"sha256", "source_name", "model_versions", "label"}`` for ids with a raw
            payload; unknown ids are left out.

        Example:
            >>> store.scoring_events([sid])[sid]["model_versions"]  # doctest: +SKIP
            ['shapes-v1']
        """
        ids = sorted({io.check_scoring_id(s) for s in scoring_ids})
        if not ids:
            return {}
        found = self._rows(
            "SELECT r.scoring_id, r.sha256, r.source_name, "
            "  (SELECT list(DISTINCT p.model_version ORDER BY p.model_version) FROM predictions p "
            "   WHERE p.scoring_id = r.scoring_id), "
            "  (SELECT arg_max(u.label, u.label_id) FROM user_scores u WHERE u.scoring_id = r.scoring_id) "
            "FROM raw_payloads r WHERE list_contains(CAST(? AS VARCHAR[]), r.scoring_id)",
            [ids],
        )
        return {sid: {"sha256": sha, "source_name": name, "model_versions": list(versions or []), "label": label}
                for sid, sha, name, versions, label in found}

    def _known_media(self, shas: list[str]) -> dict[str, str]:
        """sha256 -> relative path of media that committed rows already point at."""
        found = self._rows(
            "SELECT sha256, any_value(media_relpath) FROM raw_payloads WHERE list_contains(?, sha256) GROUP BY ALL",
            [sorted(set(shas))],
        )
        return dict(found)

    def raw_path(self, scoring_id: str) -> Path:
        """The absolute path of the clip file logged under ``scoring_id``.

        Raises:
            UnknownRecord: No raw payload has this id.

        Example:
            >>> store.raw_path(sid).suffix  # doctest: +SKIP
            '.mp4'
        """
        return self._media(scoring_id)[0]

    def _media(self, scoring_id: str) -> tuple[Path, str]:
        """(absolute path, recorded sha256) of a scoring event's clip file."""
        io.check_scoring_id(scoring_id)
        found = self._rows("SELECT media_relpath, sha256 FROM raw_payloads WHERE scoring_id = ?", [scoring_id])
        if not found:
            raise UnknownRecord(f"no raw payload is logged under scoring id {scoring_id}; log it with log_raw()")
        return self.path / found[0][0], found[0][1]

    def _checked(self, scoring_id: str, read):  # noqa: ANN202 - returns what ``read`` returns
        """``read(path) -> (digest, value)`` on the clip file; the value once the digest matches the record."""
        path, sha = self._media(scoring_id)
        try:
            digest, value = read(path)
        except FileNotFoundError:
            raise StoreCorrupt(
                f"the media file {path} of {scoring_id} is missing; restore media/ from a backup"
            ) from None
        if digest != sha:
            raise StoreCorrupt(f"the media file {path} of {scoring_id} no longer matches its sha256; restore it")
        return value

    def verified_raw_path(self, scoring_id: str) -> Path:
        """The clip file of ``scoring_id`` after checking it against its sha256 (streamed, 1 MiB blocks).

        Decode from this instead of :meth:`raw_bytes` to keep memory bounded
        by the decoder, not by the file.

        Raises:
            UnknownRecord: No raw payload has this id.
            StoreCorrupt: The media file is missing or its content changed.

        Example:
            >>> read_clip(store.verified_raw_path(sid))  # doctest: +SKIP
        """
        return self._checked(scoring_id, lambda path: (io.sha256_file(path), path))

    def raw_bytes(self, scoring_id: str) -> bytes:
        """The clip bytes logged under ``scoring_id``, checked against their sha256.

        Raises:
            UnknownRecord: No raw payload has this id.
            StoreCorrupt: The media file is missing or its content changed.

        Example:
            >>> store.raw_bytes(sid)[:4]  # doctest: +SKIP
            b'\\x00\\x00\\x00\\x18'
        """
        def read(path: Path) -> tuple[str, bytes]:
            data = path.read_bytes()
            return hashlib.sha256(data).hexdigest(), data

        return self._checked(scoring_id, read)
