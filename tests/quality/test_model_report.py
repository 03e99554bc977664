"""model_report on a real store: accuracy and its interval, calibration, latency, size, training cost,
robustness under corruptions, storage with the version, HTML output and side-by-side comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.labeling.autolabel import exact_interval
from dlabel_lab.quality.model_report import (
    CORRUPTIONS,
    REPORT_SPLIT,
    ModelReport,
    compare_html,
    compare_reports,
    corrupt_frames,
    corrupt_indices,
    load_model_report,
    model_report,
)

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)
FAST = {"progress": False, "repeats": 2, "latency_batch": 4}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A store with v1 (trained on lab clips), 12 labelled + 3 unlabelled operational clips, and v2 (retrained)."""
    root = tmp_path_factory.mktemp("model_report")
    train = dl.make_shape_clips(root / "train", 9, seed=0, frames=6, size=32)
    ops = dl.make_shape_clips(root / "ops", 15, seed=1, frames=6, size=32, drift="operational")
    rows = dl.read_manifest(ops)
    store = dl.PayloadStore(root / "store")
    v1 = dl.train_initial(store, train, name="shapes", classes=CLASSES, spec=SPEC, epochs=2, seed=0,
                          progress=False, embed_dim=16)
    labels = [r["label"] for r in rows[:12]] + [None] * 3
    dl.deploy_version(store, v1.version).score_many([r["path"] for r in rows], labels, progress=False)
    v2 = dl.retrain(store, v1.version, epochs=1, holdout=0.34, progress=False)
    yield store, v1, v2
    store.close()


@pytest.fixture(scope="module")
def report_v1(lab):
    store, v1, _ = lab
    return model_report(store, v1.version, **FAST)  # the default suite at 5 severities


@pytest.fixture(scope="module")
def report_v2(lab):
    store, _, v2 = lab
    return model_report(store, v2.version, corruptions=("brightness", "frame_drop"), severities=(1, 5), **FAST)


def _hand_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == labels).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return float(sum((bins == b).sum() / len(conf) * abs(correct[bins == b].mean() - conf[bins == b].mean())
                     for b in range(n_bins) if (bins == b).any()))


def test_accuracy_interval_per_class_and_calibration(lab, report_v1):
    store, v1, _ = lab
    r = report_v1
    pred = r.tables["predictions"]
    assert r.metrics["n"] == r.metrics["n_labelled"] == 12  # the unlabelled clips are left out ...
    assert any("3 unlabelled clip(s) left out" in n for n in r.held_out["notes"])  # ... and the report says so
    k = int((pred["predicted_label"] == pred["user_label"]).sum())
    assert r.accuracy == k / 12
    low, high = r.interval
    assert (low, high) == exact_interval(k, 12) and low <= r.accuracy <= high
    assert r.tables["per_class"]["support"].sum() == 12
    assert r.tables["confusion"].to_numpy().sum() == 12
    probs = np.array(pred["probabilities"].tolist())
    labels = pred["user_label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    assert r.ece == pytest.approx(_hand_ece(probs, labels), abs=1e-6)
    assert r.tables["reliability"]["count"].sum() == 12 and len(r.tables["reliability"]) == 15
    # the clean pass decodes the raw clips as the endpoint did: the probabilities the store logged
    logged = store.matched_df(model_version=v1.version).set_index("scoring_id")
    np.testing.assert_allclose(probs, np.stack(logged.loc[pred["scoring_id"], "probabilities"].tolist()), atol=1e-5)
    assert r.held_out["source"].startswith(f"clips {v1.version} scored")


def test_latency_size_and_training_cost(lab, report_v1, report_v2):
    store, v1, v2 = lab
    lat = report_v1.tables["latency"]
    assert lat["batch_size"].tolist() == [1, 4] and (lat["latency_ms"] > 0).all()
    assert report_v1.metrics["throughput_batchN"] == pytest.approx(4 / (lat["latency_ms"].iloc[1] / 1000))
    model = dl.load_version(store, v1.version)
    assert report_v1.metrics["parameters"] == sum(p.numel() for p in model.parameters())
    info = store.get_model(v1.version)
    assert report_v1.metrics["checkpoint_bytes"] == Path(info["checkpoint_path"]).stat().st_size
    # train_initial logs no run: epochs come from the registration, the wall time is not known
    assert report_v1.metrics["train_wall_s"] is None and report_v1.metrics["train_epochs"] == 2
    assert "not in the execution log" in report_v1.metrics["train_source"]
    # retrain's run of the parent that registered v2: its wall time, and the epochs it ran
    run = store.runs("retrain").iloc[-1]
    assert report_v2.metrics["train_wall_s"] == pytest.approx((run["finished_at"] - run["started_at"]).total_seconds())
    assert report_v2.metrics["train_epochs"] == 1 and str(run["run_id"]) in report_v2.metrics["train_source"]
    # v2 recorded its held-out ids: the report uses exactly those
    assert sorted(report_v2.held_out["scoring_ids"]) == sorted(v2.holdout_ids)
    assert "holdout_ids" in report_v2.held_out["source"]


def test_corruptions_identity_at_severity_0_and_change_inputs_at_5(lab):
    store, v1, _ = lab
    sid = store.matched_df(model_version=v1.version)["scoring_id"].iloc[0]
    clip = dl.read_clip(store.verified_raw_path(sid), SPEC)
    clean, _ = dl.to_tensor(clip, SPEC)
    for name, c in CORRUPTIONS.items():
        if c.temporal:
            assert corrupt_indices(clip.indices, clip.frame_count, name, 0) == list(clip.indices)
            idx = corrupt_indices(clip.indices, clip.frame_count, name, 5, seed=1, key=sid)
            assert len(idx) == len(clip.indices) and all(0 <= i < clip.frame_count for i in idx)
            assert idx == corrupt_indices(clip.indices, clip.frame_count, name, 5, seed=1, key=sid)  # seeded
        else:
            assert corrupt_frames(clip.frames, name, 0) is clip.frames
    for name in ("brightness", "gaussian_noise"):
        strong = corrupt_frames(clip.frames, name, 5, seed=0, key=sid)
        x, _ = dl.to_tensor(dl.Clip(**{**clip.__dict__, "frames": strong}), SPEC)
        assert x.shape == clean.shape and not torch.equal(x, clean)
    noise = [corrupt_frames(clip.frames, "gaussian_noise", 3, seed=0, key=k) for k in (sid, sid, "other")]
    assert np.array_equal(noise[0], noise[1]) and not np.array_equal(noise[0], noise[2])
    # every sampled frame of a dropped stream shows an earlier (or the same) frame
    dropped = corrupt_indices(clip.indices, clip.frame_count, "frame_drop", 5, key=sid)
    assert all(d <= i for d, i in zip(dropped, clip.indices, strict=True))


def test_robustness_severity_0_is_the_clean_accuracy(lab):
    store, v1, _ = lab
    r = model_report(store, v1.version, corruptions=("brightness", "gaussian_noise", "temporal_jitter"),
                     severities=(0, 5), store_result=False, **FAST)
    rob = r.tables["robustness"]
    at0 = rob[rob["severity"] == 0]
    assert (at0["accuracy"] == r.accuracy).all() and (at0["agreement"] == 1.0).all()
    at5 = rob[rob["severity"] == 5]
    assert r.mean_corruption_accuracy == pytest.approx(at5["accuracy"].mean())  # severity 0 is not a corruption
    assert r.relative_robustness == pytest.approx(at5["accuracy"].mean() / r.accuracy)
    assert list(r.tables["robustness_summary"]["corruption"]) == ["brightness", "gaussian_noise", "temporal_jitter"]


def test_robustness_on_a_seeded_subset_of_the_clips(lab):
    store, v1, _ = lab
    kw = {"corruptions": ("gaussian_noise",), "severities": (0, 4), "robustness_clips": 5, "store_result": False}
    r = model_report(store, v1.version, **kw, **FAST)
    assert r.metrics["n"] == 12 and r.metrics["n_robustness_clips"] == 5  # accuracy on all, corruptions on 5
    again = model_report(store, v1.version, **kw, **FAST)
    pd.testing.assert_frame_equal(r.tables["robustness"], again.tables["robustness"])  # same draw, same numbers
    at0 = r.tables["robustness"].query("severity == 0")
    assert at0["accuracy"].iloc[0] == r.metrics["clean_accuracy"]


def test_unlabelled_clips_count_for_agreement_with_labelled_only_false(lab):
    store, v1, _ = lab
    r = model_report(store, v1.version, labelled_only=False, corruptions=("jpeg",), severities=(5,),
                     store_result=False, **FAST)
    assert r.metrics["n"] == 15 and r.metrics["n_labelled"] == 12
    assert r.tables["per_class"]["support"].sum() == 12
    assert r.tables["predictions"]["correct"].isna().sum() == 3


def test_report_is_stored_with_the_version_and_reloaded(lab, report_v1):
    store, v1, _ = lab
    stored = [e for e in store.lineage(v1.version)["evaluations"] if e["split"] == REPORT_SPLIT]
    assert stored and stored[-1]["n_scoring_ids"] == 12
    assert (store.runs("model-report")["status"] == "ok").sum() >= 1
    back = load_model_report(store, v1.version)
    assert back.metrics == report_v1.metrics and back.held_out == report_v1.held_out
    assert back.summary() == report_v1.summary()
    for name in ("summary", "per_class", "robustness", "robustness_summary", "latency", "reliability"):
        pd.testing.assert_frame_equal(back.tables[name], report_v1.tables[name], check_dtype=False)
    pd.testing.assert_frame_equal(back.tables["confusion"], report_v1.tables["confusion"], check_dtype=False)
    assert set(back.figures()) == {"reliability", "per_class", "robustness"}
    assert json.loads(json.dumps(report_v1.to_dict())) == report_v1.to_dict()


def test_store_result_false_writes_nothing(lab):
    store, v1, _ = lab
    before = len(store.lineage(v1.version)["evaluations"]), len(store.runs())
    model_report(store, v1.version, corruptions=(), store_result=False, **FAST)
    assert (len(store.lineage(v1.version)["evaluations"]), len(store.runs())) == before


def test_two_versions_compare_side_by_side(report_v1, report_v2, tmp_path):
    table = compare_reports(report_v1, report_v2)
    assert list(table.columns) == ["shapes-v1", "shapes-v2", "delta"]
    assert table.loc["accuracy", "shapes-v1"] == report_v1.accuracy
    assert table.loc["accuracy", "delta"] == pytest.approx(report_v2.accuracy - report_v1.accuracy)
    assert table.loc["accuracy interval low", "shapes-v2"] == report_v2.interval[0]
    assert table.loc["mean corruption accuracy", "shapes-v2"] == report_v2.mean_corruption_accuracy
    assert table.attrs["same_clips"] is False
    assert any("different corruption suites" in n for n in table.attrs["notes"])
    page = compare_html(report_v1, report_v2, tmp_path / "both.html")
    assert (tmp_path / "both.html").read_text(encoding="utf-8") == page
    assert page.count("Model report: shapes-v") == 2 and "shapes-v1 vs shapes-v2" in page


def test_a_model_with_the_endpoint_interface_can_be_reported(lab, report_v1):
    store, v1, _ = lab
    inner = dl.load_version(store, v1.version)

    class Wrapped:  # what a converted (ONNX) version offers the endpoints: no torch module
        classes, spec = inner.classes, inner.spec

        def eval(self):
            return self

        def logits_and_embedding(self, x):
            return inner.logits_and_embedding(x)

        def parameter_count(self):
            return 7

    r = model_report(store, v1.version, model=Wrapped(), corruptions=("contrast",), severities=(1,),
                     store_result=False, **FAST)
    assert r.settings["model"] == "Wrapped" and r.metrics["parameters"] == 7
    assert r.tables["predictions"]["predicted_label"].tolist() == \
        report_v1.tables["predictions"]["predicted_label"].tolist()

    class WrongClasses(Wrapped):
        classes = ["a", "b", "c"]

    with pytest.raises(dl.ConfigError, match="differ"):
        model_report(store, v1.version, model=WrongClasses(), store_result=False, **FAST)


def test_bad_arguments_are_refused(lab):
    store, v1, _ = lab
    with pytest.raises(dl.ConfigError, match="unknown corruption"):
        model_report(store, v1.version, corruptions=("fog",), store_result=False)
    with pytest.raises(dl.ConfigError, match="severity"):
        model_report(store, v1.version, severities=(6,), store_result=False)
    unlabelled = store.matched_df(model_version=v1.version)
    unlabelled = unlabelled.loc[unlabelled["user_label"].isna(), "scoring_id"].tolist()
    with pytest.raises(dl.ConfigError, match="user label"):
        model_report(store, v1.version, scoring_ids=unlabelled, store_result=False, **FAST)
    with pytest.raises(dl.ConfigError, match="temporal|frame"):
        corrupt_frames(np.zeros((2, 4, 4, 3), np.uint8), "frame_drop", 1)


def test_html_is_self_contained_and_escapes_hostile_class_names(tmp_path):
    hostile = ["<script>alert(1)</script>", "b&b $\\frac{x}$", "plain"]
    clips = dl.make_shape_clips(tmp_path / "clips", 6, classes=hostile, seed=2, frames=6, size=32)
    rows = dl.read_manifest(dl.make_shape_clips(tmp_path / "ops", 6, classes=hostile, seed=3, frames=6, size=32))
    with dl.PayloadStore(tmp_path / "store") as store:
        v = dl.train_initial(store, clips, name="hostile", classes=hostile, spec=SPEC, epochs=1, progress=False,
                             embed_dim=8)
        dl.deploy_version(store, v.version).score_many([r["path"] for r in rows], [r["label"] for r in rows],
                                                       progress=False)
        with pytest.raises(dl.UnknownRecord, match="no stored model report"):
            load_model_report(store, v.version)
        r = model_report(store, v.version, corruptions=("brightness",), severities=(5,), **FAST)
        page = r.to_html(tmp_path / "report.html")
        assert load_model_report(store, v.version).classes == hostile
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "b&amp;b" in page
    assert page.count('src="data:image/png;base64,') == 3  # reliability, per class, robustness heat map
    assert "http://" not in page and "https://" not in page and "default-src 'none'" in page
    for title in ("Per class", "Confusion", "Latency and throughput", "Training cost", "Size", "Robustness"):
        assert title in page
    assert isinstance(r._repr_html_(), str)
    assert ModelReport.from_dict(r.to_dict()).classes == hostile
    assert math.isfinite(r.accuracy)
