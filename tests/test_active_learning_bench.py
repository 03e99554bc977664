"""A tiny real run of the label-less benchmark (bench/active_learning.py) end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bench_loader import load_bench


def _bench():
    return load_bench("active_learning")


def test_curve_figures_are_exact_on_hand_made_curves():
    bench = _bench()
    assert bench.normalised_auc([20, 40, 60], [0.5, 0.7, 0.7]) == pytest.approx((0.6 * 20 + 0.7 * 20) / 40)
    assert bench.normalised_auc([20], [0.4]) == 0.4
    assert bench.labels_to_reach([20, 40, 60], [0.5, 0.8, 0.7], 0.75) == 40
    assert bench.labels_to_reach([20, 40], [0.5, 0.6], 0.75) is None
    lo, hi = bench.bootstrap([0.1, 0.2, 0.3, 0.4])
    assert lo <= 0.25 <= hi and np.isnan(bench.bootstrap([0.5])[0])


def test_an_epoch_has_the_same_size_at_every_label_count_and_shows_every_clip():
    bench = _bench()
    for n in (5, 7, 20):
        x, y = torch.arange(n, dtype=torch.float32).view(n, 1), torch.arange(n)
        data = bench._Clips(x, y, size=20, seed=3)
        seen = np.bincount([int(data[i][1]) for i in range(len(data))], minlength=n)
        assert len(data) == 20 and seen.min() >= 1 and seen.max() - seen.min() <= 1 and seen.sum() == 20
        assert len(data.without_augment()) == n
    assert list(bench._Clips(x, y, size=20, seed=3).index) == list(bench._Clips(x, y, size=20, seed=3).index)
    with pytest.raises(ValueError, match="raise --epoch-clips"):
        bench._Clips(x, y, size=19)


def test_a_file_of_another_recipe_is_neither_resumed_nor_mixed(tmp_path):
    bench = _bench()
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"dataset": "shapes", "seed": 0, "arm": "random"}) + "\n")  # v1 wrote no recipe
    with pytest.raises(SystemExit):
        bench.main(["--dataset", "shapes", "--seeds", "1", "--json", str(old)])
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"dataset": "shapes", "seed": 1, "arm": "random", "recipe": bench.RECIPE}) + "\n")
    with pytest.raises(SystemExit):
        bench.main(["--summarise", str(old), str(new)])
    with pytest.raises(SystemExit):
        bench.main(["--dataset", "shapes", "--max-labels", "300", "--epoch-clips", "200"])


@pytest.mark.slow
def test_tiny_run_records_real_learning_curves_and_autolabelling(tmp_path, capsys):
    bench = _bench()
    out, fig = tmp_path / "raw.jsonl", tmp_path / "curves.png"
    arms = ["random", "margin", "cluster_margin"]
    results = bench.main(["--dataset", "shapes", "--seeds", "1", "--pool", "40", "--test", "30", "--start", "6",
                          "--step", "6", "--max-labels", "18", "--epochs", "1", "--epoch-clips", "18",
                          "--frames-in", "8", "--size-in", "32", "--min-support", "1", "--arms", ",".join(arms),
                          "--json", str(out), "--plot", str(fig)])
    assert [r["arm"] for r in results] == arms
    for r in results:
        assert r["labels"] == [6, 12, 18] and len(r["accuracy"]) == 3
        assert all(0.0 <= a <= 1.0 for a in r["accuracy"]) and 0.0 <= r["auc"] <= 1.0
        assert r["final_accuracy"] == r["accuracy"][-1] and r["recipe"] == bench.RECIPE
        assert len(r["order"]) == 18 and len(set(r["order"])) == 18 and all(0 <= i < 40 for i in r["order"])
        assert r["order"][:6] == results[0]["order"][:6]  # every arm starts from the seed's shared draw
        assert r["accuracy"][0] == results[0]["accuracy"][0]  # ... and the same first model
        a = r["autolabel"]
        assert a["n_train"] + a["n_val"] == 18 and a["n_val"] >= 1 and a["n_remaining"] == 40 - 18
        assert a["coverage"] == a["n_auto"] / a["n_remaining"] and a["auto_share"] == a["n_auto"] / (a["n_auto"] + 18)
        if a["threshold"] is None:
            assert a["n_auto"] == 0 and a["precision"] is None
        else:
            assert a["ci_low"] <= a["precision"] <= a["ci_high"] and a["precision"] == a["n_correct"] / a["n_auto"]
    assert any(r["autolabel"]["n_auto"] > 0 for r in results)
    assert results[0]["order"] != results[1]["order"]  # margin did not simply repeat random's picks
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    def key(r):
        return r["arm"], r["labels"], r["order"], r["autolabel"]["n_auto"]

    assert [key(r) for r in lines] == [key(r) for r in results]
    assert fig.stat().st_size > 0
    text = capsys.readouterr().out
    assert "random's mean final accuracy" in text and "auto-labelling" in text and "Goals" in text
    again = bench.main(["--summarise", str(out)])
    assert [r["auc"] for r in again] == [r["auc"] for r in results]


@pytest.mark.slow
def test_a_run_resumes_from_its_json_lines(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "raw.jsonl"
    args = ["--dataset", "shapes", "--seeds", "1", "--pool", "24", "--test", "12", "--start", "4", "--step", "4",
            "--max-labels", "8", "--epochs", "1", "--epoch-clips", "8", "--frames-in", "8", "--size-in", "32",
            "--min-support", "1", "--json", str(out)]
    first = bench.main([*args, "--arms", "random"])
    both = bench.main([*args, "--arms", "random,margin"])  # random is read back, only margin runs
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["arm"] for r in lines] == ["random", "margin"]
    assert [r["arm"] for r in both] == ["random", "margin"] and both[0]["order"] == first[0]["order"]
    assert "resuming: 1 arm runs already in" in capsys.readouterr().out


def test_a_later_round_fine_tunes_a_copy_of_the_previous_model(tmp_path):
    bench = _bench()
    import argparse

    import dlabel_lab as dl

    spec = dl.ClipSpec(frames=4, size=32)
    args = argparse.Namespace(dropout=0.3, lr=1e-3, epoch_clips=8, epochs=1, batch_size=4)
    x, y = torch.randn(6, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2] * 2)
    first = bench._train(x[:4], y[:4], ["a", "b", "c"], spec, 0, tmp_path, args)
    before = {k: v.clone() for k, v in first.state_dict().items()}
    second = bench._train(x, y, ["a", "b", "c"], spec, 1, tmp_path, args, start=first)
    fresh = bench._train(x, y, ["a", "b", "c"], spec, 1, tmp_path, args)
    assert second is not first and all(torch.equal(v, first.state_dict()[k]) for k, v in before.items())
    w = next(k for k, v in before.items() if k.endswith("weight") and v.dim() > 1)  # the first conv's kernels
    assert not torch.equal(second.state_dict()[w], first.state_dict()[w])
    assert not torch.equal(second.state_dict()[w], fresh.state_dict()[w])
