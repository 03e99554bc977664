"""The labelling widgets work unchanged against the scoring service's client instead of a local store."""

from __future__ import annotations

import torch
from widget_helpers import press

import dlabel_lab as dl
from dlabel_lab.widgets import DatasetBrowser, LabelQueue, ScoringWidget

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


def test_scoring_widget_and_label_queue_over_the_service(tmp_path):
    rows = dl.read_manifest(dl.make_shape_clips(tmp_path / "clips", 8, seed=2, frames=6, size=32))
    path = tmp_path / "store"
    with dl.PayloadStore(path) as store:  # a few clips scored locally, and a query over them
        torch.manual_seed(0)
        model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16)
        ingest = dl.deploy(model, store, classes=CLASSES, name="shapes")
        ingest.score_many([r["path"] for r in rows[:5]], ["circle", None, None, None, None], progress=False)
        suggestion = dl.suggest(store, ingest.model_version, 2, strategy="entropy")
    with dl.start_service(path) as running, dl.connect(running.url) as remote:
        scoring = ScoringWidget(remote.ingest(), [r["path"] for r in rows[5:]])
        press(scoring, "2")
        press(scoring, "u")
        press(scoring, "3")  # a correction, logged through the client
        press(scoring, "1")
        queue = LabelQueue(remote, suggestion, classes=CLASSES, author="ana")
        assert queue.unreadable == {}  # the stored clip came over HTTP, digest checked
        assert queue.player.frame_count == 6 and queue.player.marked == [0, 2, 3, 5]  # the model's frames
        press(queue, "2")
        press(queue, "s")
        browser = DatasetBrowser(remote)  # the comprehensive data set over HTTP, filters and all
        assert len(browser.records) == 7 and ("human", "human") in browser.source.options
        browser.show_row((scoring.results[0].scoring_id, scoring.results[0].model_version))
        assert "human-correction" in browser.details.value  # the history came through the client
        assert scoring.errors == [] and queue.errors == []
        corrected, second = scoring.results[0].scoring_id, scoring.results[1].scoring_id
        asked = [r["scoring_id"] for r in suggestion.table.to_dict("records")]
    with dl.PayloadStore(path, read_only=True) as store:
        assert store.score_history(corrected)["label"].tolist() == ["square", "triangle"]
        assert store.score_history(corrected)["source"].tolist() == ["human", "human-correction"]
        assert store.score_history(second)["label"].tolist() == ["circle"]
        queued = store.score_history(asked[0])
        assert queued["label"].tolist()[-1] == "square" and queued["author"].tolist()[-1] == "ana"
        assert store.score_history(asked[1])["source"].tolist() in ([], ["human"])  # skipped: nothing new
        assert len(store.matched().df()) == 7  # 5 scored here before, 2 through the widget
