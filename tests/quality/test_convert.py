"""Model conversion on a real store: ONNX export with parity, INT8, lineage, digests, serving the converted versions."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

import dlabel_lab as dl
from dlabel_lab.models.onnx_model import OnnxClipModel, check_onnx_bytes
from dlabel_lab.quality import convert
from dlabel_lab.quality.convert import (
    conversion_report,
    cpu_latency,
    export_onnx,
    load_converted,
    model_footprint,
    quantize_int8,
)
from dlabel_lab.train.datasets import ClipDataset

SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A store with a tiny trained v1 that scored six labelled held-out clips through its endpoint."""
    root = tmp_path_factory.mktemp("convert")
    train = dl.make_shape_clips(root / "train", 9, frames=8, size=32, seed=0)
    held = dl.read_manifest(dl.make_shape_clips(root / "held", 6, frames=8, size=32, seed=1))
    new = dl.read_manifest(dl.make_shape_clips(root / "new", 5, frames=8, size=32, seed=2))
    store = dl.PayloadStore(root / "store")
    v1 = dl.train_initial(store, train, name="shapes", spec=SPEC, epochs=1, seed=0, progress=False).version
    dl.deploy_version(store, v1, batch_size=4).score_many([r["path"] for r in held], [r["label"] for r in held],
                                                          progress=False)
    onnx_v = export_onnx(store, v1)
    yield {"store": store, "v1": v1, "onnx": onnx_v, "held": held, "new": new, "train": train}
    store.close()


def _tensors(rows, classes):
    ds = ClipDataset(rows, classes=classes, spec=SPEC)
    return torch.stack([ds.tensor(i) for i in range(len(ds))])


def test_export_is_within_1e4_of_pytorch_and_records_lineage(lab):
    store, v1, onnx_v = lab["store"], lab["v1"], lab["onnx"]
    assert onnx_v.method == "onnx" and onnx_v.parent == v1 and onnx_v.version == "shapes-onnx-v1"
    assert onnx_v.parity is not None and onnx_v.parity <= 1e-4
    info = store.get_model(onnx_v.version)
    assert info["parent"] == v1 and info["classes"] == store.get_model(v1)["classes"]
    assert info["spec"]["format"] == "onnx" and info["spec"]["frames"] == 4
    conv = info["params"]["conversion"]
    assert conv["method"] == "onnx" and conv["opset"] == 17 and conv["parity_clips"] == 6
    assert conv["parity_source"] == f"clips scored by {v1}: 6 clips"
    assert conv["parity_max_abs"] == onnx_v.parity and info["metrics"]["size_bytes"] == onnx_v.size_bytes
    assert store.lineage(onnx_v.version)["chain"] == [onnx_v.version, v1]
    path = Path(onnx_v.path)
    assert path.parent == Path(store.path) / "models" and path.suffix == ".onnx"
    assert path.stat().st_size == onnx_v.size_bytes
    assert store.runs("convert")["status"].tolist() == ["ok"]


def test_any_batch_size_matches_pytorch_on_decoded_clips(lab):
    store = lab["store"]
    model = dl.load_version(store, lab["v1"])
    onnx_model = load_converted(store, lab["onnx"].version)
    assert isinstance(onnx_model, OnnxClipModel) and onnx_model.classes == model.classes
    assert onnx_model.spec == model.spec
    x = _tensors(lab["new"], model.classes)
    for n in (1, 3, 5):
        with torch.inference_mode():
            ref_logits, ref_emb = model.logits_and_embedding(x[:n])
        logits, emb = onnx_model.logits_and_embedding(x[:n])
        assert logits.shape == (n, 3) and emb.shape == ref_emb.shape
        assert float((logits - ref_logits).abs().max()) <= 1e-4 and float((emb - ref_emb).abs().max()) <= 1e-4


def test_given_parity_clips_and_a_frame2d_model(tmp_path):
    torch.manual_seed(0)
    with dl.PayloadStore(tmp_path / "store") as store:
        model = dl.ClipClassifier(classes=["a", "b"], backbone="frame2d", spec=SPEC, embed_dim=8, dropout=0.3)
        version, _ = dl.register_version(store, model, name="f2d")
        clips = torch.randn(5, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        out = export_onnx(store, version, parity_clips=list(clips), name="f2d-export")
        assert out.version == "f2d-export-v1" and out.parity <= 1e-4
        assert store.get_model(out.version)["params"]["conversion"]["parity_source"] == "given"
        with pytest.raises(dl.ConfigError, match="no clips"):  # nothing scored, no manifest
            export_onnx(store, version)
        with pytest.raises(dl.ConfigError, match="finite"):
            export_onnx(store, version, parity_clips=clips * float("nan"))


def test_parity_failure_raises_and_registers_nothing(lab, monkeypatch):
    store = lab["store"]
    before = len(store.model_versions())
    monkeypatch.setattr(convert, "_parity", lambda *a: (0.5, 0.0, 0.1))
    with pytest.raises(dl.ModelError, match="differs from PyTorch by 0.5"):
        export_onnx(store, lab["v1"], name="shapes-bad")
    assert len(store.model_versions()) == before
    assert not list((Path(store.path) / "models").glob("shapes-bad*"))
    assert store.runs("convert")["status"].tolist()[-1] == "failed"


def test_a_tampered_onnx_file_is_refused(lab):
    store = lab["store"]
    other = export_onnx(store, lab["v1"], name="shapes-tamper")
    data = bytearray(Path(other.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(other.path).write_bytes(bytes(data))
    with pytest.raises(dl.CheckpointError, match="does not match its registration"):
        load_converted(store, other.version)
    with pytest.raises(dl.CheckpointError, match="does not match its registration"):
        dl.deploy_version(store, other.version)


def test_load_version_refuses_onnx_with_a_pointer(lab):
    pointer = r"load_converted\(store, version\).*dl.load_version\(store, 'shapes-v1'\)"
    with pytest.raises(dl.ConfigError, match=pointer):
        dl.load_version(lab["store"], lab["onnx"].version)
    with pytest.raises(dl.ConfigError, match="already an ONNX version"):
        export_onnx(lab["store"], lab["onnx"].version)
    with pytest.raises(dl.ConfigError, match="not an ONNX version"):
        load_converted(lab["store"], lab["v1"])


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_int8_is_smaller_and_a_child_of_the_onnx_version(lab, method):
    store, onnx_v = lab["store"], lab["onnx"]
    q = quantize_int8(store, onnx_v.version, method=method)
    assert q.method == f"int8-{method}" and q.parent == onnx_v.version and q.parity is None
    assert q.size_bytes < 0.3 * onnx_v.size_bytes
    info = store.get_model(q.version)
    assert info["spec"]["format"] == "onnx" and info["name"] == "shapes-int8"
    assert store.lineage(q.version)["chain"] == [q.version, onnx_v.version, lab["v1"]]
    conv = info["params"]["conversion"]
    assert conv["method"] == q.method and conv["fp32_size_bytes"] == onnx_v.size_bytes
    assert conv["size_ratio"] == pytest.approx(q.size_bytes / onnx_v.size_bytes)
    assert 0 <= conv["top1_agreement_with_fp32"] <= 1 and conv["check_clips"] == 6
    if method == "static":
        assert conv["calibration_source"] == "training manifest of shapes-v1: 9 clips"
    ops = {n.op_type for n in onnx.load(q.path).graph.node}
    assert ("ConvInteger" in ops) if method == "dynamic" else ("DequantizeLinear" in ops)
    x = _tensors(lab["new"], info["classes"])
    assert load_converted(store, q.version).predict_proba(x).shape == (5, 3)
    with pytest.raises(dl.ConfigError, match="already quantised"):
        quantize_int8(store, q.version)


def test_quantize_a_pytorch_version_exports_it_first(tmp_path):
    torch.manual_seed(0)
    with dl.PayloadStore(tmp_path / "store") as store:
        model = dl.ClipClassifier(classes=["a", "b", "c"], backbone="tiny3d", spec=SPEC, embed_dim=8)
        version, _ = dl.register_version(store, model, name="t")
        clips = torch.randn(4, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
        q = quantize_int8(store, version, method="static", calibration_clips=clips, check_clips=clips,
                          parity_clips=clips)
        assert store.lineage(q.version)["chain"] == [q.version, "t-onnx-v1", version]
        assert store.get_model(q.version)["params"]["conversion"]["calibration_source"] == "given"
        with pytest.raises(dl.ConfigError, match="method must be"):
            quantize_int8(store, version, method="fp16")


def test_deployed_onnx_version_logs_predictions_like_pytorch(lab):
    store, v1, onnx_v = lab["store"], lab["v1"], lab["onnx"].version
    new = lab["new"]
    results = dl.deploy_version(store, onnx_v, batch_size=2).score_many(
        [r["path"] for r in new], [r["label"] for r in new], progress=False)
    assert all(r.ok and r.model_version == onnx_v for r in results)
    ids = [r.scoring_id for r in results]
    dl.deploy_version(store, v1).shadow_score(ids, progress=False)  # PyTorch on the same logged clips
    got = store.matched(model_version=onnx_v, scoring_ids=ids).df().set_index("scoring_id").loc[ids]
    ref = store.matched(model_version=v1, scoring_ids=ids).df().set_index("scoring_id").loc[ids]
    assert len(got) == 5 and got["user_label"].tolist() == [r["label"] for r in new]
    assert got["predicted_label"].tolist() == ref["predicted_label"].tolist()
    assert got["tensor_digest"].tolist() == ref["tensor_digest"].tolist()
    for a, b in zip(got["probabilities"], ref["probabilities"], strict=True):
        assert max(abs(p - q) for p, q in zip(a, b, strict=True)) <= 1e-4
    for a, b in zip(got["embedding"], ref["embedding"], strict=True):
        assert max(abs(p - q) for p, q in zip(a, b, strict=True)) <= 1e-4
    with pytest.raises(dl.ConfigError, match="CPU"):
        dl.deploy_version(store, onnx_v, device="cuda")


def test_footprint_latency_and_report(lab):
    store, onnx_v = lab["store"], lab["onnx"].version
    torch_foot, onnx_foot = model_footprint(store, lab["v1"]), model_footprint(store, onnx_v)
    assert torch_foot["format"] == "pytorch" and onnx_foot["format"] == "onnx"
    assert torch_foot["parameters"] >= onnx_foot["parameters"] > 0  # BatchNorm folded into the convolutions
    lat = cpu_latency(load_converted(store, onnx_v), batch_sizes=(1, 2), repeats=2, warmup=1)
    assert set(lat) == {1, 2} and all(ms > 0 for ms in lat.values())
    report = conversion_report(store, onnx_v, batch_sizes=(1,), repeats=2)
    scored = len(store.matched(model_version=lab["v1"]).df())  # its default clips: those v1 scored
    assert report.index.tolist() == [lab["v1"], onnx_v] and report["clips"].tolist() == [scored, scored]
    assert report.loc[onnx_v, "agreement"] == 1.0 and report.loc[onnx_v, "max_abs_prob_diff"] <= 1e-4
    assert report.loc[onnx_v, "accuracy"] == report.loc[lab["v1"], "accuracy"]
    logged = store.lineage(onnx_v)["evaluations"]
    assert any(e["split"] == "conversion-report" for e in logged)


def _graph_bytes(*, external: bool = False, outputs=("logits", "embedding"), domain: str = "") -> bytes:
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    if external:
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value="../../etc/passwd")
    nodes = [helper.make_node("Mul", ["clips", "w"], ["m"], domain=domain),
             helper.make_node("ReduceMean", ["m"], [outputs[0]], axes=[2, 3, 4], keepdims=0),
             helper.make_node("Identity", [outputs[0]], [outputs[1]])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("clips", TensorProto.FLOAT, ["n", 3, 4, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", 3]) for o in outputs], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_onnx_bytes_are_checked_before_onnxruntime_sees_them():
    check_onnx_bytes(_graph_bytes(), n_classes=3)
    model = OnnxClipModel(_graph_bytes(), classes=["a", "b", "c"], spec=SPEC)
    assert model.predict_proba(torch.zeros(2, 3, 4, 8, 8)).shape == (2, 3)
    with pytest.raises(dl.CheckpointError, match="external file"):
        check_onnx_bytes(_graph_bytes(external=True))
    with pytest.raises(dl.CheckpointError, match="outputs"):
        check_onnx_bytes(_graph_bytes(outputs=("probs", "embedding")))
    with pytest.raises(dl.CheckpointError, match="custom domain"):
        check_onnx_bytes(_graph_bytes(domain="evil.ops"))
    with pytest.raises(dl.CheckpointError, match="not an ONNX model"):
        check_onnx_bytes(b"\x00pickle\x80")


def test_model_report_runs_the_onnx_version_and_retrain_skips_it(lab):
    store, v1, onnx_v = lab["store"], lab["v1"], lab["onnx"].version
    ids = list(store.matched_df(model_version=v1)["scoring_id"])
    torch_report = dl.model_report(store, v1, scoring_ids=ids, corruptions=["brightness"], severities=(1,),
                                   repeats=1, progress=False, store_result=False)
    onnx_report = dl.model_report(store, onnx_v, scoring_ids=ids, corruptions=["brightness"], severities=(1,),
                                  repeats=1, progress=False, store_result=False)
    assert onnx_report.metrics["accuracy"] == torch_report.metrics["accuracy"]
    from dlabel_lab.models.registry import newest_trainable

    assert store.model_versions()["model_version"].iloc[-1] != v1  # converted versions came after v1
    assert newest_trainable(store) == v1


def test_a_converted_version_is_reported_on_its_ancestors_clips(lab):
    store, v1 = lab["store"], lab["v1"]
    int8 = quantize_int8(store, lab["onnx"].version)
    kw = {"corruptions": ["brightness"], "severities": (1,), "repeats": 1, "progress": False, "store_result": False}
    ours, theirs = dl.model_report(store, int8.version, **kw), dl.model_report(store, v1, **kw)
    assert ours.metrics["n"] == theirs.metrics["n"] > 0
    assert f"of {v1} (the version it was converted from)" in ours.summary() + str(ours.to_dict())
