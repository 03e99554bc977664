import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from dlabel_lab.errors import ConfigError  # noqa: E402
from dlabel_lab.plots import (  # noqa: E402
    ReliabilityDisplay,
    plot_accuracy_sweep,
    plot_attribution_overlay,
    plot_boxes,
    plot_confusion,
    plot_filmstrip,
    plot_frame_attribution,
    plot_interval,
    plot_learning_curves,
    plot_neuron_functions,
    plot_reliability,
    plot_slices_before_after,
    plot_tracks,
    save_figure,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def frames(t=5, h=6, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_confusion_annotates_every_cell():
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    ax = plot_confusion(cm, ["a", "b", "c"])
    assert isinstance(ax, Axes)
    assert [t.get_text() for t in ax.texts] == [str(v) for v in cm.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    norm = plot_confusion(cm, ["a", "b", "c"], normalize=True)
    assert norm.texts[0].get_text() == "0.83" and norm.texts[8].get_text() == "1.00"


def test_confusion_draws_on_given_axes_and_checks_shape():
    fig, (a, b) = plt.subplots(1, 2)
    assert plot_confusion(np.eye(2), ["x", "y"], ax=b) is b
    assert len(a.texts) == 0 and len(b.texts) == 4
    with pytest.raises(ConfigError, match="classes"):
        plot_confusion(np.eye(3), ["x", "y"])


def test_reliability_bins_and_ece():
    conf = np.array([0.95, 0.85, 0.55, 0.15, 1.0])
    correct = np.array([True, False, True, False, True])
    d = ReliabilityDisplay.from_predictions(conf, correct, n_bins=4)
    assert d.bins["count"].tolist() == [1, 0, 1, 3]
    top = d.bins.iloc[3]
    assert top["confidence"] == pytest.approx(0.9333333) and top["accuracy"] == pytest.approx(2 / 3)
    expected = (1 * 0.15 + 1 * 0.45 + 3 * abs(2 / 3 - 0.9333333333)) / 5
    assert d.ece == pytest.approx(expected)
    ax = plot_reliability(conf, correct, n_bins=4)
    assert f"{expected:.3f}" in ax.get_title()
    assert len(ax.patches) == 4 and len(ax.lines) == 1
    with pytest.raises(ConfigError):
        plot_reliability([1.2], [True])
    with pytest.raises(ConfigError):
        plot_reliability([0.5, 0.4], [True])


def test_filmstrip_is_one_image_of_frames_side_by_side():
    f = frames(t=5, h=6, w=7)
    ax = plot_filmstrip(f, title="clip")
    assert len(ax.images) == 1
    img = ax.images[0].get_array()
    assert img.shape == (6, 5 * 7, 3)
    assert np.array_equal(np.asarray(img[:, 7:14]), f[1])
    assert ax.get_title() == "clip"
    capped = plot_filmstrip(frames(t=20), max_frames=4)
    assert capped.images[0].get_array().shape[1] == 4 * 7
    with pytest.raises(ConfigError):
        plot_filmstrip(np.zeros((4, 4, 3)))


@pytest.mark.parametrize("t,max_frames,shown", [(5, 8, 5), (12, 4, 4)])
def test_attribution_overlay_one_axes_per_shown_frame(t, max_frames, shown):
    heat = torch.rand(t, 3, 3)
    axes = plot_attribution_overlay(frames(t=t, h=12, w=12), heat, max_frames=max_frames, alpha=0.4)
    assert len(axes) == shown
    for a in axes:
        assert len(a.images) == 2
        frame_img, heat_img = a.images
        assert isinstance(heat_img, AxesImage) and heat_img.get_alpha() == 0.4
        assert heat_img.get_array().shape == (12, 12)  # resized to the frame
    assert len({a.images[1].get_clim() for a in axes}) == 1  # one shared colour scale


def test_attribution_overlay_single_heatmap_and_given_axes():
    fig, given = plt.subplots(1, 3)
    axes = plot_attribution_overlay(frames(t=3), np.ones((2, 2)), axes=given)
    assert list(axes) == list(given)
    with pytest.raises(ConfigError, match="heatmap"):
        plot_attribution_overlay(frames(t=3), np.ones((4, 2, 2)))


def test_frame_attribution_bars():
    ax = plot_frame_attribution([0.1, -0.3, 0.5, 0.0], frame_indices=[0, 4, 8, 12])
    assert len(ax.patches) == 4
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.1, -0.3, 0.5, 0.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "4", "8", "12"]


def test_slices_before_after_grouped_bars():
    df = pd.DataFrame({"slice": ["dark", "small", "fast"], "before": [0.4, 0.5, 0.7], "after": [0.8, 0.6, 0.7],
                       "n": [10, 12, 9]})  # fmt: skip
    ax = plot_slices_before_after(df)
    assert len(ax.patches) == 6
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.4, 0.5, 0.7, 0.8, 0.6, 0.7])
    assert ax.get_xticklabels()[0].get_text() == "dark\n(n=10)"
    with pytest.raises(ConfigError, match="after"):
        plot_slices_before_after(df.drop(columns="after"))


def test_learning_curves_from_lightning_csv_rows():
    # CSVLogger writes one row per logging call, NaN elsewhere
    df = pd.DataFrame(
        {
            "epoch": [0, 0, 0, 1, 1, 1],
            "step": [0, 1, 1, 2, 3, 3],
            "train_loss": [1.0, 0.8, np.nan, 0.6, 0.4, np.nan],
            "val_loss": [np.nan, np.nan, 0.9, np.nan, np.nan, 0.5],
            "val_acc": [np.nan, np.nan, 0.5, np.nan, np.nan, 0.75],
        }
    )
    ax = plot_learning_curves(df)
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["train_loss", "val_loss"]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.9, 0.5])
    twin = [a for a in ax.figure.axes if a is not ax]
    assert len(twin) == 1 and list(twin[0].lines[0].get_ydata()) == pytest.approx([0.5, 0.75])
    assert len(ax.get_legend().get_texts()) == 3
    acc_only = plot_learning_curves({"train_acc": [0.5, 0.6, 0.7]})
    assert len(acc_only.lines) == 1 and list(acc_only.lines[0].get_xdata()) == [0, 1, 2]


def test_neuron_functions_heatmap():
    df = pd.DataFrame(
        {
            "neuron": ["fc:2", "fc:2", "fc:10", "fc:10", "fc:10"],
            "factor": ["brightness", "scale", "brightness", "scale", "scale"],
            "corr": [0.9, -0.1, 0.2, 0.4, 0.6],
        }
    )
    ax = plot_neuron_functions(df)
    values = np.asarray(ax.images[0].get_array())
    assert values.shape == (2, 2)
    assert values[1, 1] == pytest.approx(0.5)  # duplicates averaged
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fc:2", "fc:10"]  # order of appearance
    assert len(ax.texts) == 4
    assert len(ax.figure.axes) == 2  # plus the colour bar


def test_accuracy_sweep_one_line_per_axis():
    df = pd.DataFrame(
        {
            "axis": ["brightness"] * 3 + ["blur"] * 2,
            "value": [1.5, 0.5, 1.0, 0.0, 2.0],
            "accuracy": [0.7, 0.4, 0.9, 0.9, 0.5],
        }
    )
    ax = plot_accuracy_sweep(df, baseline=0.9)
    assert [line.get_label() for line in ax.lines] == ["brightness", "blur", "baseline"]
    assert list(ax.lines[0].get_xdata()) == [0.5, 1.0, 1.5]


def test_save_figure_writes_png(tmp_path):
    ax = plot_frame_attribution([1.0, 2.0])
    out = save_figure(ax, tmp_path / "deep" / "dir" / "frames.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    axes = plot_attribution_overlay(frames(t=2), np.ones((2, 2)))
    assert save_figure(axes, tmp_path / "overlay.png").stat().st_size > 0
    with pytest.raises(ConfigError):
        save_figure("not a figure", tmp_path / "x.png")


def test_plot_interval_draws_the_estimate_its_interval_and_the_target():
    ax = plot_interval(0.8, 0.6, 0.9, target=0.95, label="auto-label precision")
    assert len(ax.containers) == 1  # the error bar
    assert ax.get_xlabel() == "auto-label precision" and ax.get_xlim() == (0.0, 1.02)
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["0.800 [0.600, 0.900]", "target 0.95"]
    empty = plot_interval(None, 0.0, 1.0)  # nothing audited yet: only the axis
    assert empty.containers == [] and empty.get_legend() is None


def test_boxes_over_a_frame_predictions_and_truth():
    frame = np.zeros((40, 60, 3), np.uint8)
    ax = plot_boxes(frame, torch.tensor([[2.0, 3, 20, 30], [30, 5, 50, 25]]), labels=["circle", "square"],
                          scores=[0.91, 0.4], truth=[[1, 1, 19, 29]])  # fmt: skip
    assert len(ax.patches) == 3 and [t.get_text() for t in ax.texts] == ["circle 0.91", "square 0.40"]
    assert ax.patches[0].get_linestyle() == "--"  # truth first, dashed
    assert len(plot_boxes(frame, []).patches) == 0
    with pytest.raises(ConfigError, match="labels"):
        plot_boxes(frame, [[0, 0, 1, 1]], labels=["a", "b"])
    with pytest.raises(ConfigError, match="frame"):
        plot_boxes(np.zeros((4, 4)), [])


def test_track_timelines_one_row_per_track():
    df = pd.DataFrame({"track_id": [3, 3, 7, 7, 7, None], "frame_index": [0, 1, 1, 2, 3, 0],
                       "label": ["a", "a", "b", "b", "b", "a"]})  # fmt: skip
    ax = plot_tracks(df)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["3", "7"]
    assert sorted(len(c.get_offsets()) for c in ax.collections) == [2, 3]


def test_track_timelines_keep_the_longest_tracks():
    df = pd.DataFrame({"track_id": [1, 2, 2, 3, 3, 3], "frame_index": [0, 0, 1, 0, 1, 2], "label": ["a"] * 6})
    ax = plot_tracks(df, max_tracks=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "3"] and ax.get_title() == "2 longest tracks of 3"
    with pytest.raises(ConfigError, match="max_tracks"):
        plot_tracks(df, max_tracks=0)
