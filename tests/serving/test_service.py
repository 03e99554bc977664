"""The scoring service over real HTTP on loopback: the client mirrors the store, retries add nothing, safety holds.

Each service here runs in a thread of the test process (``dl.start_service``)
on a real socket with a real DuckDB store; the kill -9 tests run it as a
process (``test_service_kill.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.serving import service as service_module
from dlabel_lab.store.queries import MATCHED_COLUMNS

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)
TOKEN = "a-test-token-that-is-long-enough"


def _model_store(path: Path) -> str:
    """A store with a tiny registered model; closed, so that a service can own it."""
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16)
    with dl.PayloadStore(path) as store:
        version = dl.deploy(model, store, name="shapes", batch_size=4).model_version
    return version


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    manifest = dl.make_shape_clips(tmp_path_factory.mktemp("clips"), 6, seed=3, frames=8, size=32)
    return dl.read_manifest(manifest)


@pytest.fixture
def served(tmp_path, clips):
    """(running service, client, store path, model version) over a store with a model."""
    path = tmp_path / "store"
    version = _model_store(path)
    running = dl.start_service(path, allow_roots=[Path(clips[0]["path"]).parent])
    client = dl.connect(running.url)
    try:
        yield running, client, path, version
    finally:
        client.close()
        running.stop()


def test_client_scores_labels_and_reads_what_the_store_holds(served, clips):
    running, client, path, version = served
    assert client.health()["store"] == str(path.resolve())
    one = client.score(clips[0]["path"], label="circle")
    many = client.score_many([r["path"] for r in clips[1:4]], ["square", None, "triangle"], progress=False)
    assert one.model_version == version and one.label == "circle" and one.predicted_label in CLASSES
    assert [r.label for r in many] == ["square", None, "triangle"]
    assert abs(sum(one.probabilities.values()) - 1) < 1e-5
    label_id = client.log_score(many[1].scoring_id, "circle", author="ana")
    remote = client.matched().df().sort_values("scoring_id").reset_index(drop=True)
    page = client.matched_page(limit=2, offset=1, label="circle")
    history = client.score_history(many[1].scoring_id)
    assert client.label_sources() == ["human"]
    assert client.unmatched().empty
    assert list(client.model_versions()["model_version"]) == [version]
    assert client.lineage(version)["chain"] == [version]
    raw = client.raw_bytes(one.scoring_id)
    running.stop()
    with dl.PayloadStore(path, read_only=True) as store:
        local = store.matched().df().sort_values("scoring_id").reset_index(drop=True)
        assert store.raw_bytes(one.scoring_id) == raw == Path(clips[0]["path"]).read_bytes()
        assert list(store.score_history(many[1].scoring_id)["label_id"]) == list(history["label_id"]) == [label_id]
    assert list(remote.columns) == list(local.columns) == list(MATCHED_COLUMNS)
    for column in ("scoring_id", "sha256", "model_version", "predicted_label", "user_label", "label_source",
                   "label_author", "confidence"):
        assert list(remote[column]) == list(local[column]), column
    assert page["total"] == 2 and len(page["rows"]) == 1
    assert page["rows"][0]["scoring_id"] == sorted([one.scoring_id, many[1].scoring_id])[1]


def test_a_retried_score_is_answered_from_the_store_and_logs_nothing_twice(served, clips):
    running, client, path, _ = served
    sid = client.new_scoring_id()
    first = client.score(clips[0]["path"], label="circle", scoring_id=sid)
    again = client.score(clips[0]["path"], label="circle", scoring_id=sid)
    assert again == first
    with pytest.raises(dl.DuplicateScoringId, match="another clip"):
        client.score(clips[1]["path"], label="circle", scoring_id=sid)
    batch_ids = [client.new_scoring_id() for _ in range(2)]
    paths = [clips[2]["path"], clips[3]["path"]]
    a = client.score_many(paths, ["square", "square"], scoring_ids=batch_ids, progress=False)
    b = client.score_many(paths, ["square", "square"], scoring_ids=batch_ids, progress=False)
    assert a == b
    running.stop()
    with dl.PayloadStore(path, read_only=True) as store:
        assert len(store.matched().df()) == 3
        assert len(store.score_history()) == 3  # one label per event
        assert len(os.listdir(store.media_dir / "staging")) == 0  # replayed uploads were removed


def test_label_writes_are_idempotent_through_labelled_at(served, clips):
    running, client, path, _ = served
    sid = client.score(clips[0]["path"]).scoring_id
    rows = [{"scoring_id": sid, "label": "circle", "labelled_at": "2026-01-01T10:00:00.000001+00:00"},
            {"scoring_id": sid, "label": "square", "author": "bo", "labelled_at": "2026-01-01T10:00:00.000002"}]
    ids = client.log_score_many(rows)
    assert client.log_score_many(rows) == ids  # the retry
    assert client.log_score_many(rows[:1]) == ids[:1]
    running.stop()
    with dl.PayloadStore(path, read_only=True) as store:
        assert list(store.score_history(sid)["label"]) == ["circle", "square"]


def test_errors_come_back_typed(served, clips):
    _, client, _, _ = served
    with pytest.raises(dl.UnknownLabel, match="not among"):
        client.score(clips[0]["path"], label="hexagon")
    with pytest.raises(dl.UnknownRecord):
        client.lineage("no-such-version")
    with pytest.raises(dl.ConfigError, match="UUID"):
        client.log_score("not-an-id", "circle")
    with pytest.raises(dl.TruncatedMedia):
        client.score(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(dl.UnsafeSource):
        client.score("https://example.com/clip.mp4")
    schema = httpx.get(f"{client.url}/openapi.json").json()
    assert {"/score", "/score/batch", "/labels", "/matched", "/versions"} <= set(schema["paths"])


def test_paths_are_read_only_inside_allow_listed_roots(served, clips, tmp_path):
    running, client, _, _ = served
    inside = clips[0]["path"]
    sid = client.new_scoring_id()
    answer = httpx.post(f"{running.url}/score/path", json={"path": str(Path(inside).resolve()), "scoring_id": sid})
    assert answer.status_code == 200 and answer.json()["scoring_id"] == sid
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(Path(inside).read_bytes())
    link = Path(inside).parent / "sneaky_link.mp4"
    link.symlink_to(outside)
    try:
        for path in (str(outside), str(link), "relative/clip.mp4", "file:///etc/passwd", "http://127.0.0.1/x.mp4"):
            got = httpx.post(f"{running.url}/score/path", json={"path": path, "scoring_id": client.new_scoring_id()})
            assert got.status_code == 403 and got.json()["error"] == "UnsafeSource", path
    finally:
        link.unlink()


def test_no_paths_at_all_without_an_allow_listed_root(tmp_path, clips):
    path = tmp_path / "store"
    _model_store(path)
    with dl.start_service(path) as running:
        got = httpx.post(f"{running.url}/score/path", json={"path": clips[0]["path"],
                                                           "scoring_id": dl.PayloadStore.new_scoring_id()})
    assert got.status_code == 403 and "--allow-root" in got.json()["message"]


def test_a_token_guards_every_route_and_is_compared_in_constant_time(tmp_path, monkeypatch):
    path = tmp_path / "store"
    dl.PayloadStore(path).close()
    calls = []
    real = service_module.hmac.compare_digest
    monkeypatch.setattr(service_module.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    with dl.start_service(path, token=TOKEN) as running:
        for route in ("/health", "/openapi.json", "/versions", "/matched"):
            assert httpx.get(running.url + route).status_code == 401, route
            assert httpx.get(running.url + route, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(running.url + "/labels", json={"rows": []}).status_code == 401
        with pytest.raises(dl.Unauthorized, match="token"):
            dl.connect(running.url, token="a-wrong-token-of-enough-length")
        with dl.connect(running.url, token=TOKEN) as client:
            assert client.model_versions().empty
        monkeypatch.setenv("DLABEL_LAB_TOKEN", TOKEN)
        with dl.connect(running.url) as client:
            assert client.health()["store"] == str(path.resolve())
    assert len(calls) == 9  # every request that carried a bearer token (4 wrong, 1 wrong connect, 4 right)


def test_binding_beyond_loopback_needs_a_token(tmp_path):
    path = tmp_path / "store"
    dl.PayloadStore(path).close()
    with pytest.raises(dl.ConfigError, match="without a token"):
        dl.start_service(path, host="0.0.0.0")
    with pytest.raises(dl.ConfigError, match="shorter than 16"):
        dl.start_service(path, token="short")
    dl.PayloadStore(path).close()  # nothing kept the store
    with dl.start_service(path, host="0.0.0.0", token=TOKEN) as running:
        assert running.url.startswith("http://0.0.0.0:")


def test_bodies_over_the_limit_are_refused_before_and_while_they_are_read(tmp_path, clips):
    path = tmp_path / "store"
    _model_store(path)
    limit = 20_000
    with dl.start_service(path, max_clip_bytes=limit) as running:
        sid = dl.PayloadStore.new_scoring_id()
        declared = httpx.post(f"{running.url}/score", params={"scoring_id": sid}, content=b"x" * (limit + (2 << 20)))
        assert declared.status_code == 413 and declared.json()["error"] == "MediaTooLarge"

        def chunks():  # no Content-Length: the body grows past the limit while it streams
            for _ in range(40):
                yield b"y" * 4096

        streamed = httpx.post(f"{running.url}/score", params={"scoring_id": sid}, content=chunks())
        assert streamed.status_code == 413
        with dl.connect(running.url) as client:
            with pytest.raises(dl.MediaTooLarge):
                client.score(b"z" * (limit + 1))
            assert client.matched().df().empty
    with dl.PayloadStore(path, read_only=True) as store:
        assert store.score_history().empty
        assert not any((store.media_dir / "staging").iterdir())


def test_cors_is_off_unless_origins_are_configured(tmp_path):
    path = tmp_path / "store"
    dl.PayloadStore(path).close()
    origin = {"origin": "http://notebook.example"}
    with dl.start_service(path) as running:
        assert "access-control-allow-origin" not in httpx.get(f"{running.url}/health", headers=origin).headers
    with dl.start_service(path, cors_origins=["http://notebook.example"]) as running:
        got = httpx.get(f"{running.url}/health", headers=origin)
        assert got.headers["access-control-allow-origin"] == "http://notebook.example"
        other = httpx.get(f"{running.url}/health", headers={"origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_read_commands_go_through_the_service_that_owns_the_store(tmp_path, clips):
    path = tmp_path / "store"
    version = _model_store(path)
    env = {**os.environ, "PYTHONPATH": str(Path(dl.__file__).parents[1])}
    with dl.start_service(path) as running:
        with pytest.raises(dl.StoreLocked):
            dl.PayloadStore(path, read_only=True)
        holder = json.loads((path / ".lock").read_text())
        assert holder["service"] == running.url
        with dl.connect(running.url) as client:
            client.score(clips[0]["path"], label="circle")
        versions = subprocess.run([sys.executable, "-m", "dlabel_lab.cli", "versions", str(path)],
                                  capture_output=True, text=True, env=env, timeout=120)
        out = tmp_path / "parquet"
        export = subprocess.run([sys.executable, "-m", "dlabel_lab.cli", "export", str(path), str(out),
                                 "--format", "parquet"], capture_output=True, text=True, env=env, timeout=120)
    assert versions.returncode == 0, versions.stderr
    assert version in versions.stdout and "going through it" in versions.stderr
    assert export.returncode == 0, export.stderr
    import pyarrow.dataset as ds

    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 1 and table.column("user_label").to_pylist() == ["circle"]
