"""data_report and find_label_errors on a real store: real clips, a tiny trained v1, both endpoints, the CLI's ingest.

The store (built once for the module, then only read) holds:

- ``site-a``: 8 shape clips scored with v1, 6 labelled and 2 not, plus clip 0
  ingested again (same bytes) labelled ``square`` (it is a ``circle``: a
  conflicting exact duplicate) and clip 1 again with its own label (a
  consistent exact duplicate): 10 clips;
- ``site-b``: 4 drifted clips, labelled: 4;
- ``extra``: one labelled clip whose model step failed (logged raw and label,
  a failed ``score`` run, no prediction): 1;
- ``site-c``: ingested by ``dlabel-lab ingest --skip-bad`` from a manifest of
  2 good clips and 1 truncated one (the skip is in the ingest run's result): 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dlabel_lab as dl
from dlabel_lab.cli import main as cli_main
from dlabel_lab.quality.data_report import NO_LABEL, DataReport, data_report, source_of
from dlabel_lab.quality.label_issues import find_label_errors
from dlabel_lab.quality.shift import cliffs_delta, embedding_shift, factor_shift, holm

SPEC = dl.ClipSpec(frames=4, size=32)


def _clips(folder: Path, n: int, seed: int, **kw) -> list[dict]:
    return dl.read_manifest(dl.make_shape_clips(folder, n, seed=seed, frames=8, size=32, **kw))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    store_dir = root / "store"
    a, b = _clips(root / "site-a", 8, 2), _clips(root / "site-b", 4, 3, drift="operational")
    extra = _clips(root / "extra", 1, 4)[0]
    store = dl.PayloadStore(store_dir)
    v1 = dl.train_initial(store, dl.make_shape_clips(root / "lab", 9, seed=1, frames=8, size=32), name="shapes",
                          spec=SPEC, epochs=2, seed=0, progress=False)
    ingest = dl.deploy_version(store, v1.version)
    ingest.score_many([r["path"] for r in a], [r["label"] if i < 6 else None for i, r in enumerate(a)], progress=False)
    assert a[0]["label"] == "circle" and a[1]["label"] == "square"
    ingest.score_many([a[0]["path"], a[1]["path"]], ["square", "square"], progress=False)
    ingest.score_many([r["path"] for r in b], [r["label"] for r in b], progress=False)

    def broken(x):
        raise RuntimeError("the model ran out of memory")

    ingest.model_endpoint._infer, infer = broken, ingest.model_endpoint._infer
    failed = ingest.score_many([str(extra["path"])], ["circle"], progress=False)
    ingest.model_endpoint._infer = infer
    store.close()
    site_c = root / "site-c"
    good = _clips(site_c, 2, 5)
    data = Path(good[0]["path"]).read_bytes()
    (site_c / "broken.mp4").write_bytes(data[: len(data) // 2])
    with open(site_c / "labels.csv", "a") as f:
        f.write("broken.mp4,circle,1,1,1,0,0\n")
    assert cli_main(["ingest", str(store_dir), str(site_c), "--skip-bad", "--no-progress"]) == 0
    store = dl.PayloadStore(store_dir)
    yield {"store": store, "version": v1.version, "a": a, "b": b, "root": root, "failed": failed[0].scoring_id,
           "good_c": good}
    store.close()


@pytest.fixture(scope="module")
def report(world) -> DataReport:
    return data_report(world["store"], time_window="Y", n_permutations=50, progress=False)


def test_missing_parts_are_counted_exactly(world, report):
    assert report.model_version == world["version"]
    counts = report.tables["counts"].set_index("what")["n"].to_dict()
    assert counts == {"clips": 17, "labelled": 15, "without_label": 2, "without_prediction": 1, "unmatched": 1,
                      "unmatched_with_error": 1, "decode_failures": 1}
    unlabelled = set(report.tables["without_label"]["source_name"])
    assert unlabelled == {world["a"][6]["path"], world["a"][7]["path"]}
    (sid,) = report.tables["without_prediction"]["scoring_id"]
    assert sid == world["failed"]
    row = report.tables["unmatched"].iloc[0]
    assert row["scoring_id"] == world["failed"] and list(row["missing"]) == ["transformed", "prediction"]
    assert row["why"] == "the model step failed: RuntimeError: the model ran out of memory"
    (failure,) = report.tables["decode_failures"].itertuples()
    assert failure.kind == "ingest" and failure.clip == "broken.mp4" and "TruncatedMedia" in failure.error


def test_class_counts_per_source_are_exact(world, report):
    root = world["root"]
    table = report.tables["class_by_source"]
    c_labels = [r["label"] for r in world["good_c"]]
    assert table.loc[str(root / "site-a")].to_dict() == {"circle": 2, "square": 4, "triangle": 2, NO_LABEL: 2}
    assert table.loc[str(root / "site-b")].to_dict() == {"circle": 2, "square": 1, "triangle": 1, NO_LABEL: 0}
    assert table.loc[str(root / "extra")].to_dict() == {"circle": 1, "square": 0, "triangle": 0, NO_LABEL: 0}
    assert table.loc[str(root / "site-c")].to_dict() == {c: c_labels.count(c) for c in ("circle", "square", "triangle")
                                                         } | {NO_LABEL: 0}  # fmt: skip
    assert report.tables["class_by_label_source"].loc["human"].sum() == 15
    window = report.tables["class_by_window"]
    assert len(window) == 1 and window.iloc[0].sum() == 17


def test_exact_duplicates_with_conflicting_labels_highlighted(world, report):
    exact = report.tables["exact_duplicates"]
    assert len(exact) == 2
    first, second = exact.iloc[0], exact.iloc[1]
    assert first["conflicting"] and sorted(first["labels"]) == ["circle", "square"] and first["n"] == 2
    assert not second["conflicting"] and second["labels"] == ["square", "square"]
    page = report.to_html()
    conflict_row = page.index("<tr class='conflict'>")
    assert first["sha256"] in page[conflict_row: conflict_row + 400]
    near = report.tables["near_duplicates"]  # exact copies are not repeated as near pairs
    assert not (set(near["scoring_id_a"]) | set(near["scoring_id_b"])) & set(second["scoring_ids"][1:])


def test_shift_against_the_lineage_lab_clips(world, report):
    shift = report.tables["factor_shift"]
    assert sorted(shift["factor"]) == sorted(["brightness", "contrast", "motion", "blur", "noise", "object_scale"])
    assert set(shift["n_lab"]) == {9} and set(shift["n_ops"]) == {16}
    assert ((shift["cliffs_delta"].abs() <= 1) & (shift["p_holm"] >= shift["mannwhitney_p"])).all()
    (emb,) = report.tables["embedding_shift"].itertuples()
    assert emb.n_lab == 9 and emb.n_ops == 16 and 0 < emb.mmd_p_value <= 1 and 0 <= emb.c2st_auc <= 1


def test_shift_between_sources_of_the_store(world):
    site_a = str(world["root"] / "site-a")
    report = data_report(world["store"], lab_source=[site_a], n_permutations=20, progress=False)
    shift = report.tables["factor_shift"]
    assert set(shift["n_lab"]) == {10} and set(shift["n_ops"]) == {7}  # site-b, extra and site-c
    (emb,) = report.tables["embedding_shift"].itertuples()
    assert emb.n_lab == 10 and emb.n_ops == 6  # the clip whose model step failed has no embedding


def test_label_issues_and_the_relabel_queue_in_rank_order(world, report):
    issues = report.label_issues
    check = report.label_check
    assert check.method == "cross_validation" and "logistic regression" in check.description
    assert len(check.checked) == 14  # labelled clips with an embedding (the failed one has none)
    assert len(issues) >= 1 and list(issues["rank"]) == list(range(1, len(issues) + 1))
    assert list(issues["label_quality"]) == sorted(issues["label_quality"])
    queue = report.relabel_queue()
    assert isinstance(queue, dl.Suggestion) and queue.strategy == "label-issues"
    assert queue.scoring_ids == issues["scoring_id"].tolist()
    assert queue.table["score"].is_monotonic_decreasing
    run = world["store"].runs("label-issues").iloc[-1]
    assert run["run_id"] == queue.run_id and json.loads(run["result"])["scoring_ids"] == queue.scoring_ids
    assert report.relabel_queue(1, record=False).scoring_ids == queue.scoring_ids[:1]


def test_held_out_method_uses_the_version_own_probabilities(world):
    check = find_label_errors(world["store"], method="held_out")
    assert check.method == "held_out" and len(check.checked) == 14  # v1 trained on the lab manifest only
    assert "outside its lineage's training set" in check.description


def test_outliers_and_figures(report):
    outliers = report.tables["outliers"]
    # one row per content: 16 scored clips, two of them repeats of another's bytes
    assert len(outliers) == 14 and outliers["ood_score"].is_monotonic_increasing
    figs = report.figures()
    assert {"missing", "classes_by_source", "classes_by_window", "factor_shift", "duplicates", "label_issues",
            "outliers"} <= set(figs)
    assert "data report of" in report.summary()


def test_a_read_only_store_gets_a_report_and_writes_nothing(world, tmp_path):
    world["store"].close()
    try:
        with dl.PayloadStore(world["store"].path, read_only=True) as ro:
            runs = len(ro.runs())
            report = data_report(ro, lab_source=None, progress=False)
            assert len(ro.runs()) == runs and report.count("clips") == 17
            assert report.relabel_queue(record=False).run_id.startswith("data-report:")
            with pytest.raises(dl.StoreError, match="read-only"):
                report.relabel_queue()
    finally:
        world["store"] = dl.PayloadStore(world["store"].path)


def test_hostile_text_from_the_store_is_escaped(tmp_path):
    with dl.PayloadStore(tmp_path / "s") as store:
        for i, label in enumerate(["<script>alert(1)</script>", "$\\frac{a}{", "ok"]):
            sid = store.new_scoring_id()
            store.log_raw(sid, b"not a clip %d" % i, source_name=f"<script>alert('{i}')</script>/c{i}.mp4")
            store.log_score(sid, label)
        report = data_report(store, progress=False)
        page = report.to_html(tmp_path / "r.html")
    assert report.model_version is None and report.label_check is None
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and (tmp_path / "r.html").read_text() == page
    assert report.count("without_prediction") == 3 and set(report.figures()) >= {"missing", "classes_by_source"}
    with pytest.raises(dl.ConfigError, match="no label check"):
        report.relabel_queue()


def test_a_planted_flip_on_an_easy_problem_is_ranked_first():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    probs = rng.dirichlet([1, 1, 1], size=90) * 0.2
    probs[np.arange(90), y] += 0.8
    given = [["cat", "dog", "owl"][k] for k in y]
    probs[17] = [0.97, 0.02, 0.01]  # clearly a cat ...
    given[17] = "owl"  # ... labelled owl
    check = find_label_errors(given, probs, classes=["cat", "dog", "owl"], ids=[f"id{i}" for i in range(90)])
    assert check.positions[0] == 17 and check.scoring_ids[0] == "id17"
    first = check.table.iloc[0]
    assert (first["given_label"], first["suggested_label"], first["rank"]) == ("owl", "cat", 1)
    assert check.method == "given" and check.checked["is_label_issue"].sum() == len(check)
    with pytest.raises(dl.ConfigError, match="classes"):
        find_label_errors(["a", "b", "c"], probs[:3, :2])


def test_two_sample_statistics_on_known_samples():
    assert cliffs_delta([1, 2, 3], [4, 5, 6]) == 1.0 and cliffs_delta([1, 2], [1, 2]) == 0.0
    assert holm([0.01, 0.04, 0.03]).round(2).tolist() == [0.03, 0.06, 0.06]
    rng = np.random.default_rng(1)
    same = embedding_shift(rng.normal(size=(30, 3)), rng.normal(size=(30, 3)), n_permutations=99)
    moved = embedding_shift(rng.normal(size=(30, 3)), rng.normal(2.0, size=(30, 3)), n_permutations=99)
    assert same["mmd_p_value"] > 0.05 and moved["mmd_p_value"] == 0.01 and moved["c2st_auc"] > 0.9
    import pandas as pd

    table = factor_shift(pd.DataFrame({"blur": [0.1, 0.2, 0.3]}), pd.DataFrame({"blur": [0.5, 0.6, 0.7]}))
    assert table.loc[0, "cliffs_delta"] == 1.0 and table.loc[0, "smd"] > 0


def test_source_of():
    assert source_of("/data/site-a/clip.mp4") == "/data/site-a"
    assert source_of("cam-7") == "cam-7" and source_of("clip.mp4") == "(no folder)"
    assert source_of("<bytes>") == "<bytes>" and source_of("") == "(unnamed)"
    assert source_of("/x/y.mp4", json.dumps({"source": "site-9"})) == "site-9"
