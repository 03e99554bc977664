"""The scoring service: one process owns a store and serves it over HTTP (FastAPI on uvicorn).

DuckDB lets one process write a store file. ``dlabel-lab serve STORE`` (or
:func:`serve`) is that process: several notebooks, people and CLI commands
then share the store through it with :func:`~dlabel_lab.connect`, whose client
has the store's read and logging methods and an ingest endpoint of its own.
The routes mirror the Python API; pydantic models give the OpenAPI schema at
``/openapi.json``.

Safety, by default:

- binds to ``127.0.0.1``; any other address needs a bearer token
  (``--token`` or ``$DLABEL_LAB_TOKEN``), compared in constant time, and with
  a token set every route asks for it;
- a request body larger than the store's media limit is refused before it is
  read (``Content-Length``) and while it is read (a body that grows past it);
- uploads are streamed into the store's staging folder and hashed on the way,
  then decoded from those very bytes;
- clip *paths* sent by clients are refused unless they lie inside a root the
  server allow-listed (``--allow-root``), after resolving links; no URL is
  ever fetched; CORS is off unless origins are configured;
- every acknowledged (2xx) write is committed (DuckDB's write-ahead log) before
  the answer leaves; a client retry is idempotent: scoring through the
  client-chosen scoring id, labels through their ``labelled_at`` stamp
  (see :meth:`~dlabel_lab.PayloadStore.log_score_many`'s ``skip_replays``).

Example:
    >>> serve("runs/store", port=8765)  # doctest: +SKIP
    serving runs/store at http://127.0.0.1:8765 (model shapes-v1, Ctrl-C stops)
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import (
    ConfigError,
    DLabelError,
    DuplicateScoringId,
    MediaError,
    MediaTooLarge,
    StoreCorrupt,
    StoreLocked,
    UnknownLabel,
    UnknownRecord,
    UnsafeSource,
)
from ..media.checks import MAX_FILE_BYTES
from ..store.io import check_scoring_id
from ..store.staging import StagingWriter
from . import service_models as m

if TYPE_CHECKING:
    from fastapi import APIRouter

    from ..store.payload_store import PayloadStore
    from .endpoints import IngestEndpoint

__all__ = ["ServiceConfig", "RunningService", "create_app", "serve", "start_service", "check_bind", "TOKEN_ENV",
           "DEFAULT_PORT", "ARROW_STREAM", "to_wire", "json_response"]

RouterFactory = Callable[["PayloadStore", threading.Lock], "APIRouter"]
TOKEN_ENV = "DLABEL_LAB_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_PAGE = 10_000  # rows per JSON page of matched()
MAX_BATCH_CLIPS = 256  # clips per batch upload
MAX_LABEL_ROWS = 100_000  # rows per label write
_FORM_OVERHEAD = 1 << 20  # multipart boundaries and fields on top of the clips themselves


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to bind anything but loopback without a bearer token.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``token`` is empty.

    Example:
        >>> check_bind("127.0.0.1", None)
        >>> check_bind("0.0.0.0", "s3cret-token-of-some-length")
    """
    if not _is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve on {host!r} without a token: anyone who can reach that address could read and write "
            f"the store. Set a bearer token (--token or ${TOKEN_ENV}), or bind to 127.0.0.1 (the default)."
        )
    if token is not None and len(token) < 16:
        raise ConfigError("the bearer token is shorter than 16 characters; use a long random one "
                          "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs.

    Attributes:
        token: Bearer token every request must carry (``None``: none asked, loopback only).
        allow_roots: Server folders whose clips clients may name by path (none by default).
        cors_origins: Browser origins allowed to call the service (none: CORS off).
        model_version: The version that scores clips (default: the newest, deployed on the first score).
        max_clip_bytes: Largest clip upload and, plus 1 MiB for the form, largest request body (a batch of
            clips shares it); default the store's media limit (``ClipSpec.max_file_bytes``).
        batch_size: Clips per forward pass when scoring.
        num_threads: Torch threads while scoring (``None``: the endpoint's default rule).
    """

    token: str | None = None
    allow_roots: tuple[Path, ...] = ()
    cors_origins: tuple[str, ...] = ()
    model_version: str | None = None
    max_clip_bytes: int = MAX_FILE_BYTES
    batch_size: int = 16
    num_threads: int | None = None

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: the per-clip limit plus room for the form around it (a batch shares it)."""
        return self.max_clip_bytes + _FORM_OVERHEAD


# --- errors as HTTP answers ---------------------------------------------------------
_STATUS = (  # most specific first
    (MediaTooLarge, 413), (UnsafeSource, 403), (DuplicateScoringId, 409), (UnknownRecord, 404),
    (UnknownLabel, 422), (ConfigError, 422), (MediaError, 422), (StoreLocked, 503), (StoreCorrupt, 500),
)


def _status_of(error: DLabelError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def _error_body(error: BaseException) -> dict[str, str]:
    return {"error": type(error).__name__, "message": str(error)}


class _BodyLimit:
    """Pure ASGI middleware: refuse a body over ``limit`` bytes, by its Content-Length and while it streams."""

    def __init__(self, app, *, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _send_json(send, 413, {"error": "MediaTooLarge", "message": (
                f"the request body ({length.decode(errors='replace')} bytes) is over the service's limit of "
                f"{self.limit:,} bytes; send smaller clips or fewer per request")})
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as error:  # the answer may not have started: a body that grew past the limit
            with contextlib.suppress(Exception):
                await _send_json(send, 413, {"error": "MediaTooLarge", "message": str(error)})


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body grew past the service's limit of {limit:,} bytes; nothing was stored")


class _Auth:
    """Pure ASGI middleware: with a token configured, every request carries ``Authorization: Bearer <token>``."""

    def __init__(self, app, *, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                await _send_json(send, 401, {"error": "Unauthorized", "message": (
                    "this service needs a bearer token: connect(url, token=...) or set "
                    f"${TOKEN_ENV}; the token given is missing or wrong")},
                    extra=[(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


async def _send_json(send, status: int, body: dict, *, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": data})


# --- the app ------------------------------------------------------------------------
class _Scorer:
    """The ingest endpoint of the served version, deployed on first use; one scoring call at a time."""

    def __init__(self, store: PayloadStore, config: ServiceConfig) -> None:
        self.store, self.config = store, config
        self.lock = threading.Lock()
        self._ingest: IngestEndpoint | None = None

    def ingest(self) -> IngestEndpoint:
        if self._ingest is None:
            from .endpoints import deploy_version

            version = self.config.model_version
            if version is None:
                versions = self.store.model_versions()
                if versions.empty:
                    raise UnknownRecord("the served store has no model version to score with; train one "
                                        "(dlabel-lab train) and restart the service")
                version = str(versions.iloc[-1]["model_version"])
            self._ingest = deploy_version(self.store, version, batch_size=self.config.batch_size,
                                          num_threads=self.config.num_threads)
        return self._ingest

    def describe(self) -> dict[str, Any]:
        ingest = self.ingest()
        return {"model_version": ingest.model_version, "classes": list(ingest.classes),
                "spec": asdict(ingest.spec)}

    def score(self, sources: Sequence, labels: Sequence[str | None], scoring_ids: Sequence[str]) -> list[dict]:
        """Score clips under client-chosen ids; a retry of a finished event answers from the store.

        Every uploaded (staged) clip is gone afterwards, whatever happens:
        logged clips were renamed to their content address, the others removed.
        """
        from .endpoints import StagedClip

        try:
            with self.lock:
                return self._score(sources, labels, scoring_ids)
        finally:
            for source in sources:
                if isinstance(source, StagedClip):
                    self.store.discard_staged(source.staged)  # a no-op for clips logged (renamed)

    def _score(self, sources: Sequence, labels: Sequence[str | None], scoring_ids: Sequence[str]) -> list[dict]:
        from .endpoints import StagedClip

        ingest = self.ingest()
        ingest._check_labels(labels)  # before anything is logged
        version = ingest.model_version
        known = self.store.scoring_events(scoring_ids)
        answers: list[dict | None] = [None] * len(sources)
        todo: list[int] = []
        for i, (source, sid) in enumerate(zip(sources, scoring_ids, strict=True)):
            event = known.get(sid)
            sha = source.staged.sha256 if isinstance(source, StagedClip) else None
            if event is not None and sha is not None and event["sha256"] != sha:
                raise DuplicateScoringId(
                    f"scoring id {sid} was logged with another clip (sha256 {event['sha256'][:12]}...); a retry "
                    "must send the same bytes. Use a new scoring id for a new clip.")
            if event is not None and version in event["model_versions"]:
                answers[i] = self._stored_answer(sid, version, event, replayed=True)
            else:
                todo.append(i)
        if todo:  # an event half-done before a crash is finished; its label is not logged twice
            results = ingest.score_many(
                [sources[i] for i in todo],
                [None if (known.get(scoring_ids[i]) or {}).get("label") else labels[i] for i in todo],
                scoring_ids=[scoring_ids[i] for i in todo], progress=False)
            for i, result in zip(todo, results, strict=True):
                answer = asdict(result)
                answer["label"] = labels[i] if labels[i] is not None else (known.get(scoring_ids[i]) or {}).get("label")
                answer["replayed"] = scoring_ids[i] in known
                answers[i] = answer
        return [a for a in answers if a is not None]

    def _stored_answer(self, sid: str, version: str, event: dict, *, replayed: bool) -> dict:
        row = self.store.matched_df(scoring_ids=[sid], model_version=version)
        ingest = self.ingest()
        if row.empty:  # scored, but the model step failed: unmatched
            return {"scoring_id": sid, "model_version": version, "label": event.get("label"),
                    "sha256": event["sha256"], "error": "the model step failed earlier; see store.unmatched()",
                    "replayed": replayed}
        r = row.iloc[0]
        probs = [float(p) for p in r["probabilities"]]
        return {"scoring_id": sid, "model_version": version, "label": r["user_label"],
                "predicted_label": r["predicted_label"], "confidence": float(r["confidence"]),
                "probabilities": dict(zip(ingest.classes, probs, strict=False)),
                "latency_ms": float(r["latency_ms"]), "sha256": r["sha256"], "error": None, "duplicate_of": None,
                "objects": [], "replayed": replayed}


def create_app(store: PayloadStore, config: ServiceConfig | None = None, *,
               routers: Sequence[RouterFactory] = ()) -> FastAPI:
    """The FastAPI app that serves ``store`` (open, writable, owned by this process).

    Args:
        store: The payload store the service owns.
        config: Token, allow-listed roots, CORS origins, served version and limits.
        routers: Route factories of the wings above serving (``factory(store, lock) -> APIRouter``:
            suggest and auto-labelling, estimates, reports), given the store and the lock that runs
            one heavy (model) call at a time; :func:`dlabel_lab.remote.serve` passes them all.

    Example:
        >>> app = create_app(store, ServiceConfig())  # doctest: +SKIP
        >>> sorted(route.path for route in app.routes)[:2]  # doctest: +SKIP
        ['/clips/{scoring_id}', '/health']
    """
    config = config or ServiceConfig()
    scorer = _Scorer(store, config)
    uploads = store.path  # uploads are staged inside the store (media/staging), like local ingest
    app = FastAPI(title="dlabel_lab scoring service", version="1", docs_url=None, redoc_url=None,
                  description="One process owns a payload store; clients score clips, log labels and read the "
                              "comprehensive data set through it.")
    app.state.store, app.state.config, app.state.scorer = store, config, scorer

    @app.exception_handler(DLabelError)
    async def typed_error(request: Request, error: DLabelError) -> JSONResponse:
        return JSONResponse(_error_body(error), status_code=_status_of(error))

    # -- about ------------------------------------------------------------------------
    @app.get("/health", response_model=m.Health)
    def health() -> dict:
        return {"store": str(store.path), "pid": os.getpid(), "read_only": store.read_only,
                "model_version": scorer._ingest.model_version if scorer._ingest else config.model_version}

    @app.get("/model", response_model=m.ModelInfo)
    def model_info() -> dict:
        with scorer.lock:
            return scorer.describe()

    # -- scoring ----------------------------------------------------------------------
    @app.post("/score", response_model=m.ScoreAnswer, summary="Score one clip sent as the request body")
    async def score_one(request: Request, scoring_id: str = Query(...), label: str | None = Query(None),
                        filename: str = Query("upload.mp4", max_length=255)) -> dict:
        sid = check_scoring_id(scoring_id)
        clip = await _receive_clip(request, uploads, config.max_clip_bytes, filename)
        return (await run_in_threadpool(scorer.score, [clip], [label], [sid]))[0]

    @app.post("/score/batch", response_model=list[m.ScoreAnswer],
              summary="Score several clips sent as multipart/form-data (files + JSON lists of ids and labels)")
    async def score_batch(request: Request) -> list[dict]:
        form = await request.form(max_files=MAX_BATCH_CLIPS, max_fields=8)
        try:
            files = form.getlist("files")
            ids = [check_scoring_id(s, where="scoring_ids") for s in _json_list(form.get("scoring_ids"), "scoring_ids")]
            labels = _json_list(form.get("labels"), "labels") or [None] * len(files)
            if not (len(files) == len(ids) == len(labels)):
                raise ConfigError(f"{len(files)} files, {len(ids)} scoring ids and {len(labels)} labels; send one "
                                  "id and one label (or null) per file")
            clips = []
            try:
                for upload in files:
                    clips.append(await _copy_upload(upload, uploads, config.max_clip_bytes))
            except BaseException:
                for clip in clips:
                    store.discard_staged(clip.staged)
                raise
        finally:
            await form.close()
        return await run_in_threadpool(scorer.score, clips, labels, ids)

    @app.post("/score/path", response_model=m.ScoreAnswer,
              summary="Score a clip the server can read, inside an allow-listed root")
    def score_path(body: m.ScorePath) -> dict:
        path = _allowed_path(body.path, config.allow_roots)
        return scorer.score([path], [body.label], [check_scoring_id(body.scoring_id)])[0]

    # -- labels -----------------------------------------------------------------------
    @app.post("/labels", response_model=m.LabelIds, summary="Append user scores (idempotent by labelled_at)")
    def labels(body: m.LabelRows) -> dict:
        if len(body.rows) > MAX_LABEL_ROWS:
            raise ConfigError(f"{len(body.rows)} label rows in one request; send at most {MAX_LABEL_ROWS:,}")
        rows = [row.model_dump() for row in body.rows]
        return {"label_ids": store.log_score_many(rows, skip_replays=True)}

    @app.get("/label_sources", response_model=list[str])
    def label_sources() -> list[str]:
        return store.label_sources()

    @app.get("/score_history")
    def score_history(scoring_id: str | None = None) -> Response:
        return _frame_json(store.score_history(scoring_id))

    # -- the comprehensive data set ------------------------------------------------------------
    @app.get("/matched", summary="matched(): JSON pages (limit/offset) or one Arrow IPC stream (format=arrow)")
    def matched(request: Request, label: list[str] | None = Query(None), prediction: list[str] | None = Query(None),
                model_version: list[str] | None = Query(None), label_source: list[str] | None = Query(None),
                label_author: list[str] | None = Query(None), since: datetime | None = None,
                until: datetime | None = None, min_confidence: float | None = None,
                max_confidence: float | None = None, correct: bool | None = None,
                tags: list[str] | None = Query(None), scoring_ids: list[str] | None = Query(None),
                format: str = Query("json", pattern="^(json|arrow)$"), limit: int = Query(1000, ge=1, le=MAX_PAGE),
                offset: int = Query(0, ge=0)) -> Response:
        rel = store.matched(label=label, prediction=prediction, model_version=model_version,
                            label_source=label_source, label_author=label_author, since=since, until=until,
                            min_confidence=min_confidence, max_confidence=max_confidence, correct=correct,
                            tags=tags, scoring_ids=scoring_ids).order("scoring_id, model_version")
        if format == "arrow":
            return Response(_arrow_bytes(store, rel), media_type=ARROW_STREAM)
        total = _count(store, rel)
        page = _read_table(store, rel.limit(limit, offset))
        return _json({"total": total, "offset": offset, "rows": page.to_pylist()})

    @app.get("/unmatched")
    def unmatched() -> Response:
        return _frame_json(store.unmatched())

    # -- versions and runs --------------------------------------------------------------------
    @app.get("/versions")
    def versions() -> Response:
        return _frame_json(store.model_versions())

    @app.get("/versions/{model_version}")
    def version(model_version: str) -> Response:
        return _json(store.get_model(model_version))

    @app.get("/versions/{model_version}/lineage")
    def lineage(model_version: str) -> Response:
        return _json(store.lineage(model_version))

    @app.get("/params")
    def params(model_version: str | None = None) -> Response:
        return _frame_json(store.list_params(model_version=model_version))

    @app.get("/runs")
    def runs(kind: str | None = None) -> Response:
        return _frame_json(store.runs(kind))

    @app.get("/clip_tags")
    def clip_tags(model_version: str | None = None) -> Response:
        return _frame_json(store.clip_tags(model_version))

    @app.get("/clips/{scoring_id}", summary="The raw clip logged under a scoring id, checked against its digest")
    def clip(scoring_id: str) -> FileResponse:
        path = store.verified_raw_path(check_scoring_id(scoring_id))
        sha = store.scoring_events([scoring_id])[scoring_id]["sha256"]
        return FileResponse(path, media_type="application/octet-stream",
                            headers={"x-content-sha256": sha, "x-media-suffix": path.suffix.lower()[:9]})

    for factory in routers:
        app.include_router(factory(store, scorer.lock))
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(_BodyLimit, limit=config.max_request_bytes)
    if config.token:
        app.add_middleware(_Auth, token=config.token)
    return app


def _json_list(value: Any, what: str) -> list:  # noqa: ANN401
    if value is None:
        return []
    try:
        got = json.loads(value if isinstance(value, str) else "")
    except ValueError:
        got = None
    if not isinstance(got, list):
        raise ConfigError(f"{what} must be a JSON list in the form, got {str(value)[:80]!r}")
    return got


async def _stage_blocks(blocks, root: Path, max_bytes: int, filename: str):  # noqa: ANN001, ANN202
    """Write a clip arriving in blocks into the store's staging folder, hashing and size-checking on the way."""
    from .endpoints import StagedClip

    name = Path(filename or "upload").name or "upload"
    writer = StagingWriter(root, max_bytes=max_bytes, name=repr(name))
    try:
        async for block in blocks:
            writer.write(block)
        staged = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return StagedClip(staged, name, Path(name).suffix)


async def _receive_clip(request, root: Path, max_bytes: int, filename: str):  # noqa: ANN001, ANN202
    """The request body (streamed) as a staged clip."""
    return await _stage_blocks(request.stream(), root, max_bytes, filename)


async def _copy_upload(upload, root: Path, max_bytes: int):  # noqa: ANN001, ANN202
    """One multipart file (spooled by the form parser) as a staged clip."""

    async def blocks():  # noqa: ANN202
        while block := await upload.read(1 << 20):
            yield block

    return await _stage_blocks(blocks(), root, max_bytes, upload.filename)


def _allowed_path(text: str, roots: Sequence[Path]) -> Path:
    """A clip path a client named, if it resolves inside an allow-listed root; else :class:`UnsafeSource`."""
    if "://" in text or text.startswith(("http:", "https:", "ftp:", "file:")):
        raise UnsafeSource(f"{text!r} is a URL; the service fetches nothing from the network. Upload the clip.")
    if not roots:
        raise UnsafeSource("this service reads no clip paths from clients (no --allow-root configured); upload the "
                           "clip instead, or start the service with --allow-root FOLDER")
    path = Path(text)
    if not path.is_absolute():
        raise UnsafeSource(f"{text!r} is not an absolute path; name the clip by its absolute path on the server")
    resolved = path.resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved
    raise UnsafeSource(f"{text!r} is outside the folders this service may read ({', '.join(map(str, roots))}); "
                       "upload the clip instead")


def _read_table(store: PayloadStore, rel):
    with store._mapped_errors():
        return rel.to_arrow_table()


def _count(store: PayloadStore, rel) -> int:
    with store._mapped_errors():
        return int(rel.aggregate("count(*)").fetchall()[0][0])


def _arrow_bytes(store: PayloadStore, rel) -> bytes:
    import pyarrow as pa

    table = _read_table(store, rel)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=8192):
            writer.write_batch(batch)
    return sink.getvalue()


def _plain(value: Any) -> Any:  # noqa: ANN401
    """JSON-ready: datetimes as ISO text, numpy scalars and arrays as Python values, NaN as None."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def to_wire(value: Any) -> Any:  # noqa: ANN401
    """A result as JSON-ready values: DataFrames and dataclasses marked so that the client rebuilds them.

    The client (:func:`~dlabel_lab.serving.client.from_wire`) rebuilds only
    the dataclasses its caller allow-lists; nothing else is ever instantiated.

    Example:
        >>> to_wire({"n": 1})
        {'n': 1}
    """
    import dataclasses

    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return {"__frame__": _frame_payload(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__name__,
                "fields": {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    return _plain(value)


def json_response(value: Any) -> Response:  # noqa: ANN401
    """A result (see :func:`to_wire`) as a JSON response, for the routes of other wings.

    Example:
        >>> json_response({"n": 1}).body
        b'{"n": 1}'
    """
    return _json(to_wire(value))


def _json(value: Any) -> Response:  # noqa: ANN401
    return Response(json.dumps(_plain(value)), media_type="application/json")


def _frame_payload(frame) -> dict:  # noqa: ANN001
    return {"columns": [str(c) for c in frame.columns], "dtypes": [str(t) for t in frame.dtypes],
            "rows": frame.to_numpy(dtype=object).tolist()}


def _frame_json(frame):  # noqa: ANN001, ANN202
    """A DataFrame as ``{"columns": [...], "dtypes": [...], "rows": [[...], ...]}`` (order and times survive)."""
    return _json(_frame_payload(frame))


# --- running it ------------------------------------------------------------------------
@dataclass
class RunningService:
    """A service started by :func:`start_service` in a background thread of this process.

    Attributes:
        url: Where it answers.
        store_path: The store it owns.

    Example:
        >>> running = start_service("runs/store", port=0)  # doctest: +SKIP
        >>> remote = connect(running.url); ...; running.stop()  # doctest: +SKIP
    """

    url: str
    store_path: Path
    _server: Any = field(repr=False, default=None)
    _thread: Any = field(repr=False, default=None)

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the requests in flight, then close the store and release it (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            self._server = None

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _prepare(store_path, *, host, port, token, allow_roots, cors_origins, model_version, num_threads, log_level,
             max_clip_bytes=None, routers=()):  # noqa: ANN001, ANN202 - the shared part of serve() and start_service()
    import uvicorn

    from ..store.payload_store import PayloadStore

    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    roots = tuple(Path(r).expanduser().resolve() for r in allow_roots)
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--allow-root {root} is not a folder")
    if not (Path(store_path).expanduser() / "store.duckdb").is_file():
        raise ConfigError(f"{store_path} is not a payload store (no store.duckdb in it)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot bind {host}:{port}: {error}. Pick another --port.") from None
    try:
        store = PayloadStore(store_path)
    except BaseException:
        sock.close()
        raise
    try:
        limits = {} if max_clip_bytes is None else {"max_clip_bytes": int(max_clip_bytes)}
        config = ServiceConfig(token=token, allow_roots=roots, cors_origins=tuple(cors_origins),
                               model_version=model_version, num_threads=num_threads, **limits)
        app = create_app(store, config, routers=routers)

        @contextlib.asynccontextmanager
        async def lifespan(_app):  # noqa: ANN202 - shutdown (Ctrl-C, SIGTERM, stop()) closes the store
            yield
            store.close()  # checkpoint, close, release the lock

        app.router.lifespan_context = lifespan
        sock.listen(128)
        bound = sock.getsockname()[1]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
        store.advertise_service(url)
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, workers=1, lifespan="on",
                                               timeout_graceful_shutdown=30, access_log=log_level == "info"))
    except BaseException:
        sock.close()
        store.close()
        raise
    return store, sock, url, server


def serve(
    store_path: str | Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    allow_roots: Sequence[str | Path] = (),
    cors_origins: Sequence[str] = (),
    model_version: str | None = None,
    num_threads: int | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    routers: Sequence[RouterFactory] = (),
) -> None:
    """Open the store for writing and serve it until Ctrl-C / SIGTERM; then flush and close it.

    One process, one uvicorn worker: DuckDB allows one writing process per
    file. The store's lock file names the service's URL, so that read-only
    commands (``dlabel-lab versions``, ``export --format parquet``) talk to it
    instead of failing with ``StoreLocked``.

    Args:
        store_path: The store folder (must hold a store).
        host: Address to bind; anything but loopback needs ``token``.
        port: Port to bind (0 picks a free one; ``on_ready`` gets the URL).
        token: Bearer token; default ``$DLABEL_LAB_TOKEN``.
        allow_roots: Server folders whose clips clients may name by path.
        cors_origins: Browser origins allowed (none: CORS off).
        model_version: The version that scores clips (default: the newest).
        num_threads: Torch threads while scoring.
        on_ready: Called with the service's URL once the socket listens.
        log_level: uvicorn's log level (``"info"`` also logs every request).
        routers: Route factories of higher wings (see :func:`create_app`).

    Raises:
        ConfigError: A non-loopback ``host`` without a token, a short token, a port in use.
        StoreLocked: Another process holds the store.

    Example:
        >>> serve("runs/store", port=0, on_ready=print)  # doctest: +SKIP
        http://127.0.0.1:43121
    """
    store, sock, url, server = _prepare(
        store_path, host=host, port=port, token=token, allow_roots=allow_roots, cors_origins=cors_origins,
        model_version=model_version, num_threads=num_threads, log_level=log_level, routers=routers)
    # uvicorn finishes the requests in flight on SIGTERM, runs the shutdown that closes the store, then raises
    # the signal again for the handler that was there before it: this one ends serve() normally (exit status 0).
    previous = signal.signal(signal.SIGTERM, _stopped) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        if on_ready is not None:
            on_ready(url)
        server.run(sockets=[sock])
    except _Stop:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
        store.close()


class _Stop(Exception):
    """SIGTERM after uvicorn's graceful shutdown."""


def _stopped(signum, frame) -> None:  # noqa: ANN001
    raise _Stop


def start_service(
    store_path: str | Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    allow_roots: Sequence[str | Path] = (),
    cors_origins: Sequence[str] = (),
    model_version: str | None = None,
    num_threads: int | None = None,
    max_clip_bytes: int | None = None,
    log_level: str = "warning",
    routers: Sequence[RouterFactory] = (),
) -> RunningService:
    """Serve a store from a background thread of this process (a notebook kernel, a test); returns once it answers.

    Takes the same arguments as :func:`serve` (``port`` 0 by default: a free
    one) plus ``max_clip_bytes`` (default the store's media limit). Stop it
    with :meth:`RunningService.stop`, which closes the store.

    Example:
        >>> running = start_service("runs/store")  # doctest: +SKIP
        >>> running.url  # doctest: +SKIP
        'http://127.0.0.1:40125'
    """
    store, sock, url, server = _prepare(
        store_path, host=host, port=port, token=token, allow_roots=allow_roots, cors_origins=cors_origins,
        model_version=model_version, num_threads=num_threads, log_level=log_level, max_clip_bytes=max_clip_bytes,
        routers=routers)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            store.close()

    thread = threading.Thread(target=run, name="dlabel-service", daemon=True)
    thread.start()
    import time

    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        thread.join(10)
        raise ConfigError(f"the service for {store_path} did not start (see the log above)")
    return RunningService(url=url, store_path=Path(store.path), _server=server, _thread=thread)
