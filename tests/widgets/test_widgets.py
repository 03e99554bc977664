"""The widgets, driven without a browser: ``button.click()`` fires the handlers, then we look in the store."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from widget_helpers import PNG, fake_analysis, hidden, latest, score_all, shown_png

from dlabel_lab.evaluation import compare
from dlabel_lab.loop import retrain as real_retrain
from dlabel_lab.train.transforms import Evidence, TransformationParams
from dlabel_lab.widgets import AttributionViewer, DatasetBrowser, RetrainPanel, ScoringWidget
from dlabel_lab.widgets._common import figure_png, png_size
from dlabel_lab.widgets.attribution import overlay_figure
from dlabel_lab.widgets.browser import ANY
from dlabel_lab.widgets.retrain import draw_learning_curves


def test_scoring_widget_scores_skips_and_undoes(loop, clips):
    store, ingest, version = loop
    w = ScoringWidget(ingest, clips[:4])
    assert list(w.buttons) == ingest.classes
    assert [b.description for b in w.buttons.values()] == ["1 circle", "2 square", "3 triangle"]
    assert bytes(w.frame.value).startswith(PNG) and w.frame.layout.display is None and shown_png(w.filmstrip)
    assert w.slider.max == w.play.max == 7  # native frames of an 8-frame clip
    w.slider.value = 3
    assert w.player.shown_index == 3 and bytes(w.frame.value) == w.player.frame_png(3)
    assert "clip 1 of 4" in w.header.value

    w.buttons[clips[0]["label"]].click()
    assert w.position == 1 and len(w.results) == 1 and w.progress.value == 1
    assert w.progress.max == 4 and "1 of 4" in w.progress_text.value
    first = w.results[0]
    assert latest(store, first.scoring_id) == clips[0]["label"]
    assert f"predicted {first.predicted_label}" in w.answer.value

    w.skip_button.click()
    assert w.position == 2 and w.skipped == [1] and "2 of 4 (1 scored, 1 skipped)" in w.progress_text.value
    assert len(store.matched().df()) == 1

    w.buttons[clips[2]["label"]].click()
    assert w.position == 3 and len(w.results) == 2
    sid = w.results[1].scoring_id

    w.undo_button.click()  # back to clip 3: the next click corrects its score
    assert w.position == 2 and "already scored" in w.answer.value
    other = next(c for c in ingest.classes if c != clips[2]["label"])
    w.buttons[other].click()
    history = store.score_history(sid)
    assert history["label"].tolist() == [clips[2]["label"], other]
    assert history["source"].tolist() == ["human", "human-correction"]
    assert latest(store, sid) == other
    assert len(w.results) == 2 and w.results[1].label == other
    assert len(store.matched().df()) == 2  # corrected, not re-ingested

    w.undo_button.click()
    w.undo_button.click()  # back to the skipped clip 2
    assert w.position == 1 and w.skipped == []
    w.buttons[clips[1]["label"]].click()
    w.skip_button.click()  # clip 3 keeps its corrected score
    w.buttons[clips[3]["label"]].click()
    assert w.position == 4 and len(w.results) == 4 and w.skipped == []
    assert all(b.disabled for b in w.buttons.values()) and "all 4 clips done" in w.header.value
    assert "4 of 4" in w.progress_text.value and hidden(w.filmstrip) and w.frame.layout.display == "none"
    assert len(store.matched().df()) == 4 and latest(store, sid) == other
    assert w.errors == []


def test_dataset_browser_filters_through_matched(loop, clips):
    store, ingest, version = loop
    results = score_all(ingest, clips)
    store.log_clip_tags(version, [{"scoring_id": r.scoring_id, "tag": "dark", "score": 0.9} for r in results[:3]])
    b = DatasetBrowser(store, max_rows=5)
    assert b.filters() == {"model_version": version}
    # every menu and toggle shows a choice (a value of None would show as blank)
    shown = {name: getattr(b, name).label for name in ("version", "label", "prediction", "tag", "source", "correct")}
    assert shown == {
        "version": version,
        "label": "any",
        "prediction": "any",
        "tag": "any",
        "source": "any",
        "correct": "all",
    }
    assert hidden(b.filmstrip)  # nothing selected yet: no broken-image icon
    assert len(b.records) == len(clips) and len(b.grid.get_visible_data()) == 5
    assert b.state.value == (
        f"<p>filters: model version {version} · {len(clips)} rows match (the first 5 are in the grid) · 0 selected</p>"
    )
    assert "accuracy" in b.metrics.value and shown_png(b.confusion)

    cases = [
        ("correct", False, dict(correct=False), "prediction wrong"),
        ("correct", ANY, {}, ""),
        ("label", "circle", dict(label="circle"), "user label circle"),
        (
            "confidence",
            (0.3, 0.9),
            dict(label="circle", min_confidence=0.3, max_confidence=0.9),
            "user label circle, confidence ≥ 0.3, confidence ≤ 0.9",
        ),
        ("label", ANY, dict(min_confidence=0.3, max_confidence=0.9), "confidence ≥ 0.3, confidence ≤ 0.9"),
        ("confidence", (0.0, 1.0), {}, ""),
        ("tag", "dark", dict(tags=["dark"]), "tag dark"),
        (
            "prediction",
            results[0].predicted_label,
            dict(tags=["dark"], prediction=results[0].predicted_label),
            f"prediction {results[0].predicted_label}, tag dark",
        ),
    ]
    for name, value, expected, words in cases:
        getattr(b, name).value = value
        assert b.filters() == {"model_version": version, **expected}
        want = store.matched(model_version=version, **expected).df()
        assert sorted(b.records["scoring_id"]) == sorted(want["scoring_id"]), name
        line = f"filters: model version {version}" + (f", {words}" if words else "") + f" · {len(want)} rows match"
        assert line in b.state.value, (name, b.state.value)

    b.tag.value = b.prediction.value = b.ANY
    b.grid.set_state({"selections": [{"r1": 1, "c1": 0, "r2": 1, "c2": 3}]})  # the browser selects row 2
    assert shown_png(b.filmstrip) and "score history" in b.details.value and "clip_0001.mp4" in b.details.value

    orphan = store.new_scoring_id()
    store.log_score(orphan, "circle")  # a score without a clip: unmatched
    store.log_clip_tags(version, [{"scoring_id": results[-1].scoring_id, "tag": "bright", "score": 0.7}])
    b.reload_button.click()
    assert orphan in b.unmatched.value and ("bright", "bright") in b.tag.options
    assert b.selected() == [] and hidden(b.filmstrip)  # new rows: the selection is cleared
    assert b.errors == []


def test_attribution_viewer_accepts_and_rejects_parameters():
    params = TransformationParams(
        brightness=(0.4, 1.2),
        scale=(0.5, 1.0),
        class_weights={"square": 2.0},
        evidence={
            "brightness": Evidence(
                source="attribution", factor="brightness", effect_size=-1.2, supported=True, neurons=("embed:0",)
            ),
            "scale": Evidence(source="sensitivity", factor="object_scale", supported=True),
            "blur": Evidence(source="sensitivity", factor="blur", note="did not help"),
        },
    )
    v = AttributionViewer(fake_analysis(), params)
    # every described parameter has a toggle; blur has evidence but no value and no candidate to apply
    assert list(v.toggles) == ["brightness", "scale", "blur", "class_weights"]
    assert [t.value for t in v.toggles.values()] == [True, True, False, True]
    assert v.toggles["blur"].disabled and not v.toggles["scale"].disabled
    assert "nothing to apply" in v.review["blur"].value and "line-through" in v.review["blur"].value
    assert "3 of 4 parameters accepted" in v.summary.value and v.save_button.disabled  # no store: nothing to save in
    assert [i for _, i in v.clip.options] == [1, 2, 0]  # wrong predictions first
    assert shown_png(v.overlay) and shown_png(v.frame_bars)
    # the per-frame chart has its figure's own size, whatever is beside it
    assert png_size(bytes(v.frame_bars.value)) == (252, 162)  # 2.8 x 1.8 in at 90 dpi
    assert v.frame_bars.layout.align_self == "flex-start" and v.frame_bars.layout.object_fit == "contain"
    assert png_size(bytes(v.overlay.value)) == (576, 153)  # four square frames of 1.4 in, titles, a 0.8 in colorbar
    assert v.tabs.titles == ("review parameters", "clip tags and factors", "neuron functions", "implicated factors")
    rows = v.tabs.children[0].children[1]  # the review's rows scroll inside the tab and keep their own height
    assert rows.layout.overflow == "auto" and all(r.layout.flex == "0 0 auto" for r in rows.children)
    assert v.tabs.selected_index == 0 and v.clip_info in v.tabs.children  # the review first; the rest a click away
    assert "dark" in v.clip_info.value
    v.clip.value = 0
    assert "dark" not in v.clip_info.value and png_size(bytes(v.frame_bars.value)) == (252, 162)
    assert v.accepted_params() == params

    v.toggles["brightness"].value = False
    kept = v.accepted_params()
    assert v.accepted() == ["scale", "class_weights"] and v.rejected() == ["brightness", "blur"]
    assert "line-through" in v.review["brightness"].value and "rejected" in v.review["brightness"].value
    assert "line-through" not in v.review["scale"].value and "2 of 4 parameters accepted" in v.summary.value
    assert kept.brightness is None and kept.scale == (0.5, 1.0) and kept.class_weights == {"square": 2.0}
    assert kept.evidence["scale"] == params.evidence["scale"]
    described = kept.describe().set_index("parameter")
    assert described.loc["brightness", "value"] is None and "rejected" in described.loc["brightness", "note"]
    assert TransformationParams.from_json(kept.to_json()) == kept
    assert v.errors == []


def test_the_overlay_keeps_to_one_row_of_sane_frames():
    a = fake_analysis(t=8)
    wide = png_size(figure_png(overlay_figure(a.frames[0], a.gradcam[0])))  # eight frames share 6.4 in
    assert wide == (576, 90)  # 0.7 in per square frame and its title: never wider than the four-frame overlay
    tall = np.zeros((4, 32, 16, 3), np.uint8)  # portrait frames keep their shape
    assert png_size(figure_png(overlay_figure(tall, np.ones((4, 2, 2))))) == (576, 279)  # 1.4 x 2.8 in + title


def test_the_overlay_has_one_colorbar_on_the_heatmaps_scale():
    a = fake_analysis()
    fig = overlay_figure(a.frames[1], a.gradcam[1], max_frames=3)
    *frames, bar = fig.axes
    assert len(frames) == 3 and bar.get_ylabel() == "attribution"
    heat = frames[0].images[-1]
    assert all(ax.images[-1].get_clim() == heat.get_clim() for ax in frames)  # one scale for every frame
    lo, hi = bar.get_ylim()
    assert (lo, hi) == pytest.approx(heat.get_clim()) and hi > lo


def test_retrain_panel_trains_a_new_version_live(loop, clips):
    store, ingest, version = loop
    score_all(ingest, clips)
    params = TransformationParams(brightness=(0.8, 1.2), p=1.0)
    panel = RetrainPanel(store, version, params=params)
    assert "brightness" in panel.params_view.value and hidden(panel.plot)  # no curves yet, no broken image
    assert panel.results.layout.display == "none"  # no empty tabs before the first retraining
    panel.epochs.value = 1
    panel.retrain_button.click()
    assert panel.errors == []
    child = panel.last_version
    versions = store.model_versions().set_index("model_version")
    assert child.version in versions.index and versions.loc[child.version, "parent"] == version
    assert panel.progress.max == 1 and panel.progress.value == 1
    assert len(panel.callback.history) == 1 and "val_loss" in panel.callback.history[0]
    assert shown_png(panel.plot) and png_size(bytes(panel.plot.value)) == (450, 252)  # 5.0 x 2.8 in
    assert panel.results.layout.display is None and panel.results.titles == ("new vs parent", "lineage")
    assert "accuracy" in panel.comparison.value and child.version in panel.comparison.value
    assert panel.lineage["chain"] == [child.version, version] and "chain" in panel.lineage_view.value
    assert set(panel.version.options) == {version, child.version} and not panel.retrain_button.disabled


def _forced(accuracy_before, accuracy_after):
    """``retrain`` as the panel calls it, with the held-out accuracies of parent and child forced."""

    def fake(*args, **kwargs):
        v = real_retrain(*args, **kwargs)
        before = dataclasses.replace(v.parent_evaluation, accuracy=accuracy_before)
        after = dataclasses.replace(v.evaluation, accuracy=accuracy_after)
        return dataclasses.replace(v, parent_evaluation=before, evaluation=after, comparison=compare(before, after))

    return fake


@pytest.mark.parametrize(("before", "after", "kept"), [(0.429, 0.286, "parent"), (0.286, 0.429, "child")])
def test_retrain_panel_keeps_the_better_version_selected(loop, clips, monkeypatch, before, after, kept):
    store, ingest, version = loop
    score_all(ingest, clips)
    monkeypatch.setattr("dlabel_lab.widgets.retrain.retrain", _forced(before, after))
    panel = RetrainPanel(store, version, epochs=1)
    panel.retrain_button.click()
    child = panel.last_version
    assert panel.errors == [] and child.improved is (after > before)
    shown = panel.comparison.value
    assert f"{version} (parent)" in shown and f"{child.version} (new)" in shown  # the table: parent vs new
    n = len(child.holdout_ids)
    if kept == "parent":
        assert panel.version.value == version
        assert (
            f"{child.version} (0.286) is worse than its parent {version} (0.429) on the same {n} held-out clips"
        ) in shown
        assert f"stays on {version}" in shown
        panel.version.value = child.version  # the user can still choose the new one
        assert panel.version.value == child.version
    else:
        assert panel.version.value == child.version
        assert f"is better than its parent {version} (0.286)" in shown and f"moves to {child.version}" in shown


def test_learning_curves_have_whole_epochs_and_a_legend_off_the_data():
    history = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "val_acc": [0.3, 0.6]})
    fig = draw_learning_curves(history)
    ax = fig.axes[0]
    fig.draw_without_rendering()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks == [0.0, 1.0]  # no half epochs
    assert ax.get_legend() is None and len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["train_loss", "val_loss", "val_acc"]
    assert legend.get_frame_on() and not legend.get_window_extent().overlaps(ax.get_window_extent())
    one = draw_learning_curves(history.head(1)).axes[0]  # one epoch: one tick at it
    assert list(one.get_xticks()) == [0.0] and one.get_xlim() == (-0.5, 0.5)
