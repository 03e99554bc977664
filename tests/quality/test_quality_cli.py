"""`dlabel-lab report` and `dlabel-lab convert` on a real store."""

from __future__ import annotations

import dlabel_lab as dl
from dlabel_lab.cli import main

SPEC = dl.ClipSpec(frames=4, size=32)


def test_cli_reports_and_converts(tmp_path, capsys):
    train = dl.make_shape_clips(tmp_path / "train", 9, frames=8, size=32, seed=0)
    held = dl.read_manifest(dl.make_shape_clips(tmp_path / "held", 6, frames=8, size=32, seed=1))
    with dl.PayloadStore(tmp_path / "store") as store:
        v1 = dl.train_initial(store, train, name="shapes", spec=SPEC, epochs=1, seed=0, progress=False).version
        dl.deploy_version(store, v1).score_many([r["path"] for r in held], [r["label"] for r in held],
                                                progress=False)
    root = str(tmp_path / "store")
    assert main(["report", root, "--no-progress"]) == 0
    assert (tmp_path / "store" / "reports" / "data_report.html").stat().st_size > 0
    assert main(["report", root, "--kind", "model", "--model-version", v1, "--robustness-clips", "2",
                 "--no-progress"]) == 0
    assert (tmp_path / "store" / "reports" / f"model_report_{v1}.html").stat().st_size > 0
    assert main(["convert", root, "--model-version", v1]) == 0
    assert main(["convert", root, "--model-version", v1, "--to", "int8"]) == 0
    out = capsys.readouterr().out
    assert "data report written" in out and "model report written" in out and out.count("registered as a child") == 2
    with dl.PayloadStore(tmp_path / "store", read_only=True) as store:
        versions = store.model_versions()
        assert len(versions) == 4 and set(versions["parent"].dropna()) >= {v1}
        assert dl.load_model_report(store, v1).metrics["accuracy"] >= 0.0
