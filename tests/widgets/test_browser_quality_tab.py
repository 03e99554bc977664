"""The DatasetBrowser's data quality tab on a real store: Build report, the page, the top label errors, the queue.

The store (built once for the module, then opened per test) holds a tiny
trained v1 and 12 shape clips scored by it, four of them with a wrong label,
so that the report's label check has clips to flag.
"""

from __future__ import annotations

import html
import json
import re

import ipywidgets as widgets
import pytest

import dlabel_lab as dl
from dlabel_lab.errors import ConfigError, StoreError
from dlabel_lab.widgets import DatasetBrowser, LabelQueue
from dlabel_lab.widgets import browser as browser_module

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality-tab")
    clips = dl.read_manifest(dl.make_shape_clips(root / "site-a", 12, frames=8, size=32, seed=2))
    labels = [c["label"] for c in clips]
    for i in range(4):  # planted label errors
        labels[i] = CLASSES[(CLASSES.index(labels[i]) + 1) % 3]
    with dl.PayloadStore(root / "store") as store:
        manifest = dl.make_shape_clips(root / "lab", 9, frames=8, size=32, seed=1)
        v1 = dl.train_initial(
            store, manifest, name="shapes", spec=dl.ClipSpec(frames=4, size=32), epochs=1, seed=0, progress=False
        )
        dl.deploy_version(store, v1.version).score_many([c["path"] for c in clips], labels, progress=False)
    return root / "store"


def status(browser) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", browser.quality_status.value))


def test_build_report_shows_the_page_and_queues_the_flagged_clips_in_rank_order(store_dir):
    with dl.PayloadStore(store_dir) as store:
        browser = DatasetBrowser(store)
        assert browser.report is None and browser.report_html.value == "" and browser.queue_button.disabled
        assert "Build report" in status(browser)  # nothing built at construction
        runs = len(store.runs("label-issues"))
        browser.report_button.click()
        report = browser.report
        assert browser.errors == [] and isinstance(report, dl.DataReport)
        assert html.escape(report.summary()) in browser.report_html.value
        assert f"model version {report.model_version}" in status(browser) and " built in " in status(browser)
        issues = report.label_issues
        assert len(issues) >= 1, report.notes
        shown = browser.top_issues.value
        assert f"likely label errors ({len(issues)} of {len(report.label_check.checked)}" in shown
        for sid in issues["scoring_id"].head(browser_module.TOP_ISSUES):
            assert html.escape(sid) in shown
        assert not browser.queue_button.disabled and browser.queue_button.description == (
            f"Queue {len(issues)} flagged clips"
        )

        browser.queue_button.click()
        queue = browser.label_queue
        assert browser.errors == [] and isinstance(queue, LabelQueue)
        assert browser.queue_box.children == (queue,)
        assert queue.suggestion.scoring_ids == issues["scoring_id"].tolist()  # the flagged ids, in rank order
        assert [r["scoring_id"] for r in queue.rows] == issues["scoring_id"].tolist()
        assert list(queue.buttons) == list(report.label_check.classes) == CLASSES
        run = store.runs("label-issues")
        assert len(run) == runs + 1 and run.iloc[-1]["run_id"] == queue.suggestion.run_id
        assert json.loads(run.iloc[-1]["result"])["scoring_ids"] == queue.suggestion.scoring_ids
        assert f"{len(issues)} flagged clips queued" in status(browser) and queue.suggestion.run_id in status(browser)

        # a label from the queue lands in the store, authored by the recorded query
        first = queue.suggestion.scoring_ids[0]
        queue.buttons[issues["suggested_label"].iloc[0]].click()
        history = store.score_history(first)
        assert history.iloc[-1]["author"] == f"suggest:{queue.suggestion.run_id}"

        # building again replaces the report and closes the queue
        browser.report_button.click()
        assert browser.report is not report and browser.label_queue is None and browser.queue_box.children == ()


def test_a_read_only_store_gets_the_report_and_an_unrecorded_queue(store_dir):
    with dl.PayloadStore(store_dir, read_only=True) as store:
        runs = len(store.runs())
        browser = DatasetBrowser(store)
        browser.report_button.click()
        assert browser.errors == [] and html.escape(browser.report.summary()) in browser.report_html.value
        browser.queue_button.click()
        queue = browser.label_queue
        assert browser.errors == [] and queue is not None
        assert queue.suggestion.run_id.startswith("data-report:")  # not recorded: no run id from the log
        assert queue.suggestion.scoring_ids == browser.report.label_issues["scoring_id"].tolist()
        assert "read-only" in status(browser)
        assert len(store.runs()) == runs  # nothing written
        queue.buttons[CLASSES[0]].click()  # the store refuses: shown in the queue, not raised
        assert queue.errors and isinstance(queue.errors[0], StoreError)


def test_an_empty_store_says_there_is_nothing_to_queue(tmp_path):
    with dl.PayloadStore(tmp_path / "empty") as store:
        browser = DatasetBrowser(store)
        browser.report_button.click()
        report = browser.report
        assert browser.errors == [] and report.label_check is None
        assert html.escape(report.summary()) in browser.report_html.value
        assert "nothing to queue" in html.unescape(browser.top_issues.value)
        assert browser.queue_button.disabled
        with pytest.raises(ConfigError, match="no label check"):
            browser.queue_flagged()  # from code: raised as usual
        browser.queue_button.disabled = False  # a click that arrives anyway: a message, not a traceback
        browser.queue_button.click()
        assert "ConfigError: this report has no label check" in status(browser)
        assert browser.label_queue is None and isinstance(browser.errors[-1], ConfigError)


@pytest.mark.parametrize("error", [ConfigError("no room left"), RuntimeError("boom")])
def test_a_failing_report_is_a_message_in_the_status(tmp_path, monkeypatch, error):
    def failing(*args, **kwargs):
        raise error

    with dl.PayloadStore(tmp_path / "s") as store:
        browser = DatasetBrowser(store)
        monkeypatch.setattr(browser_module, "data_report", failing)
        browser.report_button.click()  # does not raise
        assert status(browser) == f"{type(error).__name__}: {error}"
        assert browser.errors == [error] and browser.output.outputs == ()
        assert browser.report is None and browser.report_html.value == "" and browser.queue_button.disabled
        assert not browser.report_button.disabled  # ready to try again
        with pytest.raises(type(error)):
            browser.build_report()  # from code: raised as usual


def test_the_quality_tab_is_a_tab_of_the_browser(tmp_path):
    with dl.PayloadStore(tmp_path / "s") as store:
        browser = DatasetBrowser(store)
        (tabs,) = [c for c in browser.children if isinstance(c, widgets.Tab)]
        assert tabs.titles[-1] == "data quality"
        assert browser.report_button in tabs.children[-1].children[0].children
        store.close()
        browser.report_button.click()  # a closed store switches the browser off, as the other controls do
        assert browser.switched_off is not None and browser.report_button.disabled and browser.errors == []
