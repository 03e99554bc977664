"""A toy-size run of the ingest scale benchmark (bench/ingest_scale.py), in this process."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from bench_loader import load_bench

from dlabel_lab import read_manifest


def _bench():
    return load_bench("ingest_scale")


def test_toy_run_reports_every_chunk_and_the_store_size(tmp_path, monkeypatch, capsys):
    bench = _bench()
    monkeypatch.setattr(bench, "run_one", bench.worker)  # no child process: torch is loaded here already
    out = tmp_path / "scale.json"
    argv = ["ingest_scale.py", "--clips", "12", "--chunk", "8", "--threads", "1", "--modes", "prefetch,sequential",
            "--json", str(out), "--dir", str(tmp_path / "runs")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    table = capsys.readouterr().out
    assert "| clips/s, clips 0-7 |" in table and "| clips/s, clips 8-11 |" in table
    assert "prefetch, threads=1 (used 1)" in table and "sequential, threads=1 (used 1)" in table
    runs = json.loads(out.read_text())
    clips = [Path(r["path"]) for r in read_manifest(runs[0]["config"]["manifest"])]
    shas = [hashlib.sha256(clip.read_bytes()).hexdigest() for clip in clips]
    batches = [shas[:8], shas[8:]]  # chunks of 8 clips hold one batch (of up to 16) each
    fsyncs = sum(len(b) + len({sha[:2] for sha in b}) + 1 for b in batches)  # files, shard folders, media/
    assert [(r["config"]["mode"], [c["clips"] for c in r["chunks"]]) for r in runs] == [
        ("prefetch", [8, 4]), ("sequential", [8, 4])]
    for r in runs:
        assert r["matched"] == 12 and r["threads_used"] == 1
        assert r["media_bytes"] == r["clip_bytes"]  # every clip kept once, nothing left in staging
        assert sum(c["fsyncs"] for c in r["chunks"]) == fsyncs
