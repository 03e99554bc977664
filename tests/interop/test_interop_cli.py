"""`dlabel-lab export --format ...` and `dlabel-lab import` on real stores and real clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.cli import main

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


def _store_with_model(path: Path):
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=8)
    store = dl.PayloadStore(path)
    return store, dl.deploy(model, store, classes=CLASSES, name="shapes", batch_size=4, num_threads=1)


@pytest.mark.parametrize("fmt", ["labelstudio", "cvat"])
def test_cli_exports_and_imports_labels_and_boxes(tmp_path, shape_rows, fmt, capsys):
    rows = shape_rows[:3]
    store, ingest = _store_with_model(tmp_path / "a")
    with store:
        results = ingest.score_many([r["path"] for r in rows], [r["label"] for r in rows], progress=False)
        store.log_object_labels([{"scoring_id": results[0].scoring_id, "frame_index": f, "kind": "box",
                                  "box": [2.0 + f, 3.0, 20.5 + f, 22.0], "label": "circle", "track_id": 4}
                                 for f in range(3)], author="ana")
    assert main(["export", str(tmp_path / "a"), str(tmp_path / "out"), "--format", fmt]) == 0
    assert f"{fmt} export written" in capsys.readouterr().out
    store, _ = _store_with_model(tmp_path / "b")
    store.close()
    assert main(["import", str(tmp_path / "b"), str(tmp_path / "out"), "--format", fmt, "--no-progress"]) == 0
    assert "imported 3 of 3 clips" in capsys.readouterr().out
    with dl.PayloadStore(tmp_path / "b", read_only=True) as b:
        assert sorted(b.matched_df()["user_label"]) == sorted(r["label"] for r in rows)
        boxes = b.object_labels(kind="box")
        assert list(boxes["track_id"]) == [4, 4, 4] and set(boxes["author"]) == {"ana"}
        assert list(boxes["x1"]) == pytest.approx([2.0, 3.0, 4.0], abs=1e-6)


def test_cli_import_refuses_a_hostile_path_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "tasks.json").write_text('[{"data": {"video": "/etc/passwd"}}]')
    store, _ = _store_with_model(tmp_path / "b")
    store.close()
    assert main(["import", str(tmp_path / "b"), str(tmp_path / "x"), "--format", "labelstudio"]) == 2
    assert "UnsafeSource" in capsys.readouterr().err
