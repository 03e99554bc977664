"""The detection endpoint: a registered detector scores real clips; objects with tracks land in a real store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from detector_helpers import fit_detector

import dlabel_lab as dl


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    manifest = dl.make_object_clips(root / "clips", 3, frames=8, width=96, height=72, seed=3)
    ann = dl.read_object_annotations(manifest.parent / "annotations.json")
    torch.manual_seed(0)
    det = dl.ObjectDetector(ann.classes, frame_size=(72, 96))
    fit_detector(det, dl.frames_dataset(ann), root, epochs=4)
    return det.eval(), sorted(manifest.parent.glob("*.mp4"))


@pytest.fixture()
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "store") as s:
        yield s


def test_register_and_load_detector_checks_the_digest(trained, store):
    det, _ = trained
    version, path = dl.register_detector(store, det, name="objects")
    assert version == "objects-v1"
    info = store.get_model(version)
    spec = json.loads(info["spec"]) if isinstance(info["spec"], str) else info["spec"]
    assert spec == {"kind": "detector", "arch": "tiny_fcos", "frame_size": [72, 96]}
    loaded = dl.load_detector(store, version)
    assert loaded.version == version and loaded.classes == det.classes
    for a, b in zip(loaded.state_dict().values(), det.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(dl.ConfigError, match="load_detector"):
        dl.load_version(store, version)
    with open(path, "r+b") as f:  # a flipped byte in the weights
        f.seek(-3, 2)
        byte = f.read(1)
        f.seek(-3, 2)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(dl.CheckpointError, match="does not match its registration"):
        dl.load_detector(store, version)


def test_scored_clip_logs_raw_record_prediction_and_tracked_objects(trained, store):
    det, clips = trained
    version, _ = dl.register_detector(store, det, name="objects")
    endpoint = dl.deploy_detector(store, version, score_threshold=0.3)
    (result,) = endpoint.score_many([clips[0]], ["circle"], progress=False)
    # exactly what detect_and_track finds on the same clip with the same detector and threshold
    expected = dl.detect_and_track(det, clips[0], score_threshold=0.3).table()
    got = store.objects_df(model_version=version)
    assert len(got) == len(expected) > 0
    assert got["frame_index"].tolist() == expected["frame_index"].tolist()
    assert got["track_id"].tolist() == expected["track_id"].tolist()
    assert got["label"].tolist() == expected["class"].tolist()
    np.testing.assert_allclose(got[["x1", "y1", "x2", "y2"]].to_numpy(),
                               expected[["x1", "y1", "x2", "y2"]].to_numpy(), atol=1e-4)  # fmt: skip
    assert (got["score"] >= 0.3).all() and set(got["scoring_id"]) == {result.scoring_id}
    row = store.matched_df(model_version=version).iloc[0]
    record = json.loads(row["record"])
    assert record["kind"] == "detection" and record["indices"] == list(range(8)) and record["size"] == [72, 96]
    assert record["tile"] is None and record["score_threshold"] == 0.3 and record["tracker"] == "norfair"
    assert row["user_label"] == "circle" and row["predicted_label"] == result.predicted_label
    summary = json.loads(row["objects"])
    assert sum(s["tracks"] for s in summary) == got["track_id"].nunique()
    assert result.predicted_label == summary[0]["label"]
    assert np.isclose(sum(row["probabilities"]), 1.0)


def test_tiling_parameters_are_recorded(trained, store):
    det, clips = trained
    version, _ = dl.register_detector(store, det, name="objects")
    endpoint = dl.deploy_detector(store, version, score_threshold=0.3, tile=(48, 64), overlap=0.25)
    (result,) = endpoint.score_many([clips[1]], progress=False)
    record = json.loads(store.matched_df(scoring_ids=[result.scoring_id])["record"].iloc[0])
    assert record["tile"] == [48, 64] and record["overlap"] == 0.25 and record["merge"] == "nms"
    assert record["n_tiles"] == len(dl.tile_grid(72, 96, tile=(48, 64), overlap=0.25))


def test_detect_stored_is_idempotent_and_logs_no_new_raw_or_scores(trained, store):
    det, clips = trained
    version, _ = dl.register_detector(store, det, name="objects")
    first = dl.deploy_detector(store, version, score_threshold=0.3)
    ids = [r.scoring_id for r in first.score_many(clips, progress=False)]
    det2 = dl.ObjectDetector(det.classes, frame_size=(72, 96))
    det2.load_state_dict(det.state_dict())
    v2, _ = dl.register_detector(store, det2, name="objects")
    second = dl.deploy_detector(store, v2, score_threshold=0.3)
    assert [r.scoring_id for r in second.detect_stored(ids, progress=False)] == ids
    assert second.detect_stored(ids, progress=False) == []
    assert store._rows("SELECT count(*) FROM raw_payloads")[0][0] == 3
    assert store._rows("SELECT count(*) FROM user_scores")[0][0] == 0
    a, b = store.objects_df(model_version=version), store.objects_df(model_version=v2)
    assert a["frame_index"].tolist() == b["frame_index"].tolist() and len(a) > 0


def test_bad_clips_and_labels_log_nothing(trained, store, tmp_path):
    det, clips = trained
    version, _ = dl.register_detector(store, det, name="objects")
    endpoint = dl.deploy_detector(store, version)
    with pytest.raises(dl.UnknownLabel, match="not among"):
        endpoint.score_many(clips[:1], ["hexagon"], progress=False)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 50)
    failures = []
    results = endpoint.score_many([bad, clips[0]], on_error="skip", failures=failures, progress=False)
    assert len(results) == 1 and [i for i, _ in failures] == [0]
    assert isinstance(failures[0][1], dl.MediaError)
    assert store._rows("SELECT count(*) FROM raw_payloads")[0][0] == 1
    with pytest.raises(dl.MediaError):
        endpoint.score(bad)
    assert store._rows("SELECT count(*) FROM raw_payloads")[0][0] == 1
    assert not any((store.path / "media").rglob("*.tmp*"))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"score_threshold": 2}, "score_threshold"), ({"tile": (4, 4)}, "tile"), ({"overlap": 1.0}, "overlap"),
     ({"merge": "union"}, "merge"), ({"tracker": "sort"}, "tracker"), ({"max_frames": 0}, "max_frames")],
)
def test_bad_options(trained, store, options, message):
    det, _ = trained
    version, _ = dl.register_detector(store, det, name="objects")
    with pytest.raises(dl.ConfigError, match=message):
        dl.deploy_detector(store, version, **options)


def test_long_clips_are_refused_before_decoding_all_frames(trained, store):
    det, clips = trained
    version, _ = dl.register_detector(store, det, name="objects")
    with pytest.raises(dl.MediaError, match="at most 4"):
        dl.deploy_detector(store, version, max_frames=4).score(clips[0])
    assert store._rows("SELECT count(*) FROM raw_payloads")[0][0] == 0


def test_a_clip_without_objects_is_logged_as_no_objects(trained, store):
    det, clips = trained
    version, _ = dl.register_detector(store, det, name="objects")
    endpoint = dl.deploy_detector(store, version, score_threshold=1.0)  # nothing scores 1.0
    (result,) = endpoint.score_many(clips[:1], progress=False)
    assert result.predicted_label == "no_objects" and result.confidence == 0.0 and result.objects == []
    assert store.objects_df(model_version=version).empty
    row = store.matched_df(model_version=version).iloc[0]
    assert row["predicted_label"] == "no_objects" and list(row["probabilities"]) == [0.0, 0.0, 0.0]
    assert endpoint.detect_stored([result.scoring_id], progress=False) == []
