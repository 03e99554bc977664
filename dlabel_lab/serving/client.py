"""The client of the scoring service: the store's read and logging methods, over HTTP.

:func:`connect` returns a :class:`ServiceClient` that offers what the
service exposes with the same names and results as
:class:`~dlabel_lab.PayloadStore` (``matched()`` is a DuckDB relation over the
rows that came back as an Arrow stream, the others DataFrames, dicts and
lists), plus :meth:`ServiceClient.ingest`, an ingest endpoint whose
``score``/``score_many`` upload clips to the service. Widgets and notebook
code take either a local store or a client.

Retries are safe: a clip is sent under a scoring id chosen here before the
first try, a label with its ``labelled_at`` stamped here, so the service
recognises a retry and adds nothing twice.

Example:
    >>> remote = connect("http://127.0.0.1:8765")  # doctest: +SKIP
    >>> remote.log_score(sid, "circle", author="ana")  # doctest: +SKIP
    >>> remote.matched(label="circle").df()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors
from ..errors import ConfigError, DLabelError, MediaError, MissingMedia, ServiceError, Unauthorized, UnsafeSource
from ..store.io import check_scoring_id, new_scoring_id

if TYPE_CHECKING:
    import duckdb
    import httpx
    import pandas as pd

    from ..media.video import ClipSpec
    from .results import ScoringResult

__all__ = ["ServiceClient", "RemoteIngest", "connect", "from_wire"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_RETRY_PAUSE_S = (0.2, 0.5, 1.0, 2.0, 4.0)


def connect(url: str, *, token: str | None = None, timeout: float = 120.0, retries: int = 3,
            cache_dir: str | Path | None = None) -> ServiceClient:
    """A client of the scoring service at ``url`` (checked with a ``/health`` call).

    Args:
        url: ``http://host:port`` of ``dlabel-lab serve``.
        token: Bearer token; default ``$DLABEL_LAB_TOKEN``.
        timeout: Seconds per request.
        retries: Extra tries after a connection error or timeout (writes are idempotent).
        cache_dir: Where downloaded clips are kept (default: a temporary folder removed on :meth:`close`).

    Raises:
        ServiceError: Nothing answers at ``url``.
        Unauthorized: The service wants a token and it is missing or wrong.

    Example:
        >>> remote = connect("http://127.0.0.1:8765")  # doctest: +SKIP
    """
    client = ServiceClient(url, token=token, timeout=timeout, retries=retries, cache_dir=cache_dir)
    try:
        client.health()
    except BaseException:
        client.close()
        raise
    return client


class ServiceClient:
    """The payload store's read and logging methods, served by ``dlabel-lab serve``.

    Args:
        url: ``http://host:port`` of the service.
        token: Bearer token; default ``$DLABEL_LAB_TOKEN``.
        timeout: Seconds per request.
        retries: Extra tries after a connection error or timeout.
        cache_dir: Where downloaded clips are kept.

    Example:
        >>> with ServiceClient("http://127.0.0.1:8765") as remote:  # doctest: +SKIP
        ...     remote.model_versions()
    """

    read_only = False

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120.0, retries: int = 3,
                 cache_dir: str | Path | None = None) -> None:
        import httpx

        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"the service URL must start with http:// or https://, got {url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
        self.url = url.rstrip("/")
        self.path = self.url  # where the store is, as widgets print it
        token = token or os.environ.get("DLABEL_LAB_TOKEN") or None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)
        self.retries = retries
        self._own_cache = cache_dir is None
        self.cache_dir = Path(tempfile.mkdtemp(prefix="dlabel-clips-")) if cache_dir is None else Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._ingest: RemoteIngest | None = None

    # -- plumbing -----------------------------------------------------------------------
    def _request(self, method: str, route: str, *, files_factory=None, content_factory=None,
                 idempotent: bool = True, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        """One request; retried after a connection error or timeout only when ``idempotent``."""
        import httpx

        tries = self.retries + 1 if idempotent else 1
        for attempt in range(tries):
            try:
                if files_factory is not None:
                    kwargs["files"] = files_factory()
                if content_factory is not None:
                    kwargs["content"] = content_factory()
                response = self._http.request(method, route, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException) as error:
                if attempt == tries - 1:
                    raise ServiceError(
                        f"the scoring service at {self.url} did not answer {method} {route} after "
                        f"{attempt + 1} tries ({type(error).__name__}: {error}). Is `dlabel-lab serve` running?"
                    ) from None
                time.sleep(_RETRY_PAUSE_S[min(attempt, len(_RETRY_PAUSE_S) - 1)])
                continue
            finally:
                for f in _opened(kwargs):
                    f.close()
            if response.status_code >= 400:
                raise _typed_error(response)
            return response
        raise AssertionError("unreachable")

    def call(self, method: str, route: str, *, classes: Sequence[type] = (), **kwargs: Any) -> Any:  # noqa: ANN401
        """One request to a route of the service (no time limit); the answer rebuilt with :func:`from_wire`.

        A ``POST`` here records something (a query, auto-labels, a sample) and
        is not idempotent, so it is never retried: after a dropped connection,
        look at ``runs()`` before asking again.

        Args:
            method: ``"GET"`` or ``"POST"``.
            route: The route (``"/suggest"``).
            classes: The dataclasses the answer may hold (nothing else is rebuilt).
            **kwargs: httpx's ``json=``, ``params=``.

        Example:
            >>> remote.call("POST", "/suggest", json={...}, classes=[Suggestion])  # doctest: +SKIP
        """
        response = self._request(method, route, idempotent=method.upper() == "GET", timeout=None, **kwargs)
        return from_wire(response.json(), classes)

    def text(self, route: str, **params: Any) -> str:  # noqa: ANN401
        """The text a route answers (an HTML report).

        Example:
            >>> html = remote.text("/reports/data")  # doctest: +SKIP
        """
        return self._request("GET", route, params={k: v for k, v in params.items() if v is not None},
                             timeout=None).text

    def report_html(self, kind: str = "data", *, model_version: str | None = None) -> str:
        """A report as the service builds it: ``"data"`` (built now) or ``"model"`` (the one stored with a version).

        Example:
            >>> Path("data_report.html").write_text(remote.report_html("data"))  # doctest: +SKIP
        """
        if kind == "data":
            return self.text("/reports/data", model_version=model_version)
        if kind == "model" and model_version:
            return self.text(f"/reports/model/{_segment(model_version)}")
        raise ConfigError("report_html needs kind='data', or kind='model' with a model_version")

    def _get(self, route: str, **params: Any) -> Any:  # noqa: ANN401
        params = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", route, params=params).json()

    def _frame(self, route: str, **params: Any) -> pd.DataFrame:  # noqa: ANN401
        return _frame_of(self._get(route, **params))

    # -- about ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Which store the service owns, its pid and the version that scores clips.

        Example:
            >>> remote.health()["store"]  # doctest: +SKIP
            '/home/ana/runs/store'
        """
        return self._get("/health")

    @staticmethod
    def new_scoring_id() -> str:
        """A new time-ordered scoring id (UUIDv7 text), as the store makes them.

        Example:
            >>> ServiceClient.new_scoring_id()[14]
            '7'
        """
        return new_scoring_id()

    # -- the comprehensive data set ------------------------------------------------------------
    def matched(self, **filters: Any) -> duckdb.DuckDBPyRelation:  # noqa: ANN401
        """:meth:`PayloadStore.matched` through the service: a DuckDB relation over the rows (an Arrow stream).

        Args:
            **filters: The filters of :meth:`~dlabel_lab.PayloadStore.matched`.

        Example:
            >>> remote.matched(model_version="shapes-v1", correct=False).df()  # doctest: +SKIP
        """
        return self._duck().from_arrow(self._matched_table(filters))

    def _matched_table(self, filters: Mapping[str, Any]):  # noqa: ANN202
        import pyarrow as pa

        response = self._request("GET", "/matched", params=_filter_params(filters, format="arrow"))
        return pa.ipc.open_stream(response.content).read_all()

    def export_parquet(self, out_dir: str | Path, **filters: Any) -> Path:  # noqa: ANN401
        """:meth:`PayloadStore.export_parquet` through the service: the rows come as Arrow, the files are written here.

        Example:
            >>> remote.export_parquet("exports/matched")  # doctest: +SKIP
            PosixPath('exports/matched')
        """
        from ..store.payload_store import write_matched_parquet

        return write_matched_parquet(self._matched_table(filters), out_dir)

    def matched_df(self, **filters: Any) -> pd.DataFrame:  # noqa: ANN401
        """:meth:`matched` as a pandas DataFrame.

        Example:
            >>> remote.matched_df(label="circle").shape  # doctest: +SKIP
        """
        return self.matched(**filters).df()

    def matched_page(self, *, limit: int = 1000, offset: int = 0, **filters: Any) -> dict[str, Any]:  # noqa: ANN401
        """One JSON page of matched rows in arrival order: ``{"total", "offset", "rows"}``.

        Example:
            >>> remote.matched_page(limit=50)["total"]  # doctest: +SKIP
            1200
        """
        return self._request("GET", "/matched",
                             params=_filter_params(filters, format="json", limit=limit, offset=offset)).json()

    def unmatched(self) -> pd.DataFrame:
        """:meth:`PayloadStore.unmatched` through the service."""
        frame = self._frame("/unmatched")
        if "missing" in frame:
            frame["missing"] = [list(m) for m in frame["missing"]]
        return frame

    # -- versions, runs, tags -------------------------------------------------------------------
    def model_versions(self) -> pd.DataFrame:
        """:meth:`PayloadStore.model_versions` through the service."""
        return self._frame("/versions")

    def get_model(self, version: str) -> dict[str, Any]:
        """:meth:`PayloadStore.get_model` through the service."""
        return self._get(f"/versions/{_segment(version)}")

    def lineage(self, model_version: str) -> dict[str, Any]:
        """:meth:`PayloadStore.lineage` through the service."""
        return self._get(f"/versions/{_segment(model_version)}/lineage")

    def list_params(self, *, model_version: str | None = None) -> pd.DataFrame:
        """:meth:`PayloadStore.list_params` through the service."""
        return self._frame("/params", model_version=model_version)

    def runs(self, kind: str | None = None) -> pd.DataFrame:
        """:meth:`PayloadStore.runs` through the service."""
        return self._frame("/runs", kind=kind)

    def clip_tags(self, model_version: str | None = None) -> pd.DataFrame:
        """:meth:`PayloadStore.clip_tags` through the service."""
        return self._frame("/clip_tags", model_version=model_version)

    # -- labels ---------------------------------------------------------------------------------
    def log_score(self, scoring_id: str, label: str, *, source: str = "human", author: str | None = None,
                  labelled_at: datetime | None = None) -> int:
        """:meth:`PayloadStore.log_score` through the service (a retry adds no second row).

        Example:
            >>> remote.log_score(sid, "circle", author="ana")  # doctest: +SKIP
            17
        """
        row = {"scoring_id": scoring_id, "label": label, "source": source, "author": author,
               "labelled_at": labelled_at}
        return self.log_score_many([row])[0]

    def log_score_many(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """:meth:`PayloadStore.log_score_many` through the service, in one request.

        Each row without ``labelled_at`` is stamped now (UTC, microseconds)
        before the first try, so that a retry is recognised and not logged twice.

        Example:
            >>> remote.log_score_many([{"scoring_id": sid, "label": "circle"}])  # doctest: +SKIP
            [18]
        """
        body = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping) or "scoring_id" not in row or "label" not in row:
                raise ConfigError(f"row {i} of log_score_many needs scoring_id and label")
            stamped = row.get("labelled_at") or datetime.now(timezone.utc)
            if isinstance(stamped, datetime):
                stamped = stamped.isoformat()
            body.append({"scoring_id": check_scoring_id(row["scoring_id"]), "label": row["label"],
                         "source": row.get("source", "human"), "author": row.get("author"),
                         "labelled_at": stamped})
        return self._request("POST", "/labels", json={"rows": body}).json()["label_ids"]

    def label_sources(self) -> list[str]:
        """:meth:`PayloadStore.label_sources` through the service."""
        return self._get("/label_sources")

    def score_history(self, scoring_id: str | None = None) -> pd.DataFrame:
        """:meth:`PayloadStore.score_history` through the service."""
        return self._frame("/score_history", scoring_id=scoring_id)

    # -- clips ----------------------------------------------------------------------------------
    def raw_bytes(self, scoring_id: str) -> bytes:
        """The clip logged under ``scoring_id``, checked against its recorded digest.

        Raises:
            StoreCorrupt: The bytes that came do not match the recorded digest.
        """
        return self.verified_raw_path(scoring_id).read_bytes()

    def verified_raw_path(self, scoring_id: str) -> Path:
        """A local copy of the clip logged under ``scoring_id`` (downloaded once, digest checked).

        Example:
            >>> remote.verified_raw_path(sid).suffix  # doctest: +SKIP
            '.mp4'
        """
        sid = check_scoring_id(scoring_id)
        for cached in self.cache_dir.glob(f"{sid}.*"):
            if not cached.name.endswith(".part"):
                return cached
        response = self._request("GET", f"/clips/{sid}")
        suffix = response.headers.get("x-media-suffix", "")
        cached = self.cache_dir / (sid + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"))
        expected = response.headers.get("x-content-sha256", "")
        if hashlib.sha256(response.content).hexdigest() != expected:
            raise errors.StoreCorrupt(f"the clip of {sid} arrived altered (sha256 differs from the store's); "
                                      "try again, and run `dlabel-lab verify` on the server")
        tmp = self.cache_dir / f"{sid}.{os.getpid()}.part"
        tmp.write_bytes(response.content)
        tmp.replace(cached)
        return cached

    raw_path = verified_raw_path

    # -- scoring --------------------------------------------------------------------------------
    def ingest(self) -> RemoteIngest:
        """The service's ingest endpoint: ``score``/``score_many`` upload clips (for :class:`ScoringWidget`).

        Example:
            >>> ingest = remote.ingest(); ingest.classes  # doctest: +SKIP
            ['circle', 'square', 'triangle']
        """
        if self._ingest is None:
            self._ingest = RemoteIngest(self, self._get("/model"))
        return self._ingest

    def score(self, source: str | Path | bytes, label: str | None = None, *,
              scoring_id: str | None = None) -> ScoringResult:
        """Upload one clip (a path or bytes) with an optional user score; what the service's model made of it.

        Example:
            >>> remote.score("clip.mp4", label="circle").predicted_label  # doctest: +SKIP
            'circle'
        """
        sid = check_scoring_id(scoring_id) if scoring_id is not None else new_scoring_id()
        name, opener = _source(source)
        params = {"scoring_id": sid, "filename": name}
        if label is not None:
            params["label"] = label
        response = self._request("POST", "/score", params=params, content_factory=opener,
                                 headers={"content-type": "application/octet-stream"})
        return _result(response.json())

    def score_many(self, sources: Sequence, labels: Sequence[str | None] | None = None, *, batch_size: int = 16,
                   scoring_ids: Sequence[str] | None = None, progress: bool = True) -> list[ScoringResult]:
        """Upload clips in batches (one multipart request per batch), with a progress bar.

        Example:
            >>> results = remote.score_many(["a.mp4", "b.mp4"], ["circle", None])  # doctest: +SKIP
        """
        import json

        from tqdm.auto import tqdm

        sources = list(sources)
        labels = [None] * len(sources) if labels is None else list(labels)
        ids = [new_scoring_id() for _ in sources] if scoring_ids is None else \
            [check_scoring_id(s) for s in scoring_ids]
        if not (len(labels) == len(ids) == len(sources)):
            raise ConfigError(f"{len(sources)} clips, {len(labels)} labels, {len(ids)} scoring ids; pass one each")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= 256:
            raise ConfigError(f"batch_size must be an int from 1 to 256, got {batch_size!r}")
        named = [_source(s) for s in sources]  # refuse URLs and missing files before anything is sent
        out = []
        with tqdm(total=len(sources), desc="scoring through the service", unit="clip", disable=not progress) as bar:
            for start in range(0, len(sources), batch_size):
                span = range(start, min(start + batch_size, len(sources)))

                def files(span=span):
                    return [("files", (named[i][0], named[i][1](), "application/octet-stream")) for i in span]

                data = {"scoring_ids": json.dumps([ids[i] for i in span]),
                        "labels": json.dumps([labels[i] for i in span])}
                response = self._request("POST", "/score/batch", data=data, files_factory=files)
                out.extend(_result(a) for a in response.json())
                bar.update(len(span))
        return out

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool and remove downloaded clips (when the cache folder is this client's own).

        Example:
            >>> remote.close()  # doctest: +SKIP
        """
        import shutil

        self._http.close()
        if self._own_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServiceClient({self.url!r})"

    def _duck(self) -> duckdb.DuckDBPyConnection:
        """This thread's in-memory DuckDB, which holds the relations :meth:`matched` returns."""
        import duckdb

        con = getattr(self._local, "duck", None)
        if con is None:
            con = self._local.duck = duckdb.connect(config={"enable_external_access": False})
        return con


class RemoteIngest:
    """An ingest endpoint whose clips go to the scoring service (what :class:`ScoringWidget` needs).

    Attributes:
        store: The client (it logs corrections with ``log_score``).
        model_version: The version the service scores with.
        classes: Its classes.
        spec: Its preprocessing.
    """

    def __init__(self, client: ServiceClient, info: Mapping[str, Any]) -> None:
        from ..media.video import ClipSpec

        self.store = client
        self.model_version = str(info["model_version"])
        self.classes = list(info["classes"])
        spec = dict(info["spec"])
        self.spec: ClipSpec = ClipSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})

    def score(self, source, label: str | None = None) -> ScoringResult:
        """Score one clip through the service."""
        return self.store.score(source, label)

    def score_many(self, sources: Sequence, labels: Sequence[str | None] | None = None, **kwargs: Any):  # noqa: ANN401
        """Score clips in batches through the service."""
        return self.store.score_many(sources, labels, **kwargs)


# --- helpers -----------------------------------------------------------------------------
def _segment(text: str) -> str:
    from urllib.parse import quote

    return quote(str(text), safe="")


def _filter_params(filters: Mapping[str, Any], **extra: Any) -> list[tuple[str, str]]:  # noqa: ANN401
    params: list[tuple[str, str]] = []
    for key, value in filters.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        for v in values:
            if isinstance(v, datetime):
                v = v.isoformat()
            elif isinstance(v, bool):
                v = "true" if v else "false"
            params.append((key, str(v)))
    params.extend((k, str(v)) for k, v in extra.items())
    return params


def _source(source: Any) -> tuple[str, Any]:  # noqa: ANN401
    """(file name, a function that opens the bytes afresh for each try) of a clip path or bytes."""
    import io

    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return "upload.bin", lambda: io.BytesIO(data)
    if not isinstance(source, (str, os.PathLike)):
        raise MediaError(f"a clip source must be a path or bytes, got {type(source).__name__}")
    text = os.fspath(source)
    if "://" in text:
        raise UnsafeSource(f"{text!r} is a URL; nothing is fetched from the network. Download the clip first.")
    path = Path(text)
    if not path.is_file():
        raise MissingMedia(f"{text!r} is not a file; check the path")
    return path.name, lambda: open(path, "rb")  # noqa: SIM115 - closed after the request


def _opened(kwargs: Mapping[str, Any]) -> list:
    found = []
    content = kwargs.get("content")
    if hasattr(content, "close"):
        found.append(content)
    for _, spec in kwargs.get("files") or []:
        if hasattr(spec[1], "close"):
            found.append(spec[1])
    return found


def _typed_error(response: httpx.Response) -> DLabelError:
    try:
        body = response.json()
        kind, message = str(body.get("error", "")), str(body.get("message", "") or body.get("detail", ""))
    except ValueError:
        kind, message = "", response.text[:500]
    if not kind and response.status_code == 422:  # FastAPI's own validation of a request
        kind, message = "ConfigError", message
    cls = getattr(errors, kind, None)
    if response.status_code == 401:
        cls = Unauthorized
    if not (isinstance(cls, type) and issubclass(cls, DLabelError)):
        cls = ServiceError
    return cls(message or f"the service answered {response.status_code}")


def _frame_of(body: Mapping[str, Any]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(body["rows"], columns=body["columns"])
    for column, dtype in zip(body["columns"], body.get("dtypes", []), strict=False):
        if dtype.startswith("datetime64"):  # isoformat() drops ".000000": the format differs from row to row
            frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    return frame


def from_wire(value: Any, classes: Sequence[type] = ()) -> Any:  # noqa: ANN401
    """Rebuild what :func:`~dlabel_lab.serving.service.to_wire` marked: DataFrames, and the allow-listed dataclasses.

    Raises:
        ServiceError: The answer holds a dataclass that is not allow-listed.

    Example:
        >>> from_wire({"n": 1})
        {'n': 1}
    """
    import dataclasses

    if isinstance(value, dict):
        if set(value) == {"__frame__"}:
            return _frame_of(value["__frame__"])
        if set(value) == {"__dataclass__", "fields"}:
            by_name = {c.__name__: c for c in classes}
            cls = by_name.get(str(value["__dataclass__"]))
            if cls is None or not dataclasses.is_dataclass(cls):
                raise ServiceError(f"the service answered a {value['__dataclass__']!r}, which this call does not "
                                   f"expect ({sorted(by_name)}); client and service versions may differ")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: from_wire(v, classes) for k, v in value["fields"].items() if k in names})
        return {k: from_wire(v, classes) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v, classes) for v in value]
    return value


def _result(answer: Mapping[str, Any]) -> ScoringResult:
    from .results import ScoringResult

    fields = {k: v for k, v in answer.items() if k != "replayed"}
    return ScoringResult(**fields)
