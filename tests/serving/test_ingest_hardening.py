"""Hostile inputs at ingest: bounded reads, nothing in /tmp, duplicates reported, staged copies cleaned."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import pytest

import dlabel_lab as dl

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Point tempfile (and TMPDIR) at an empty folder so that anything left in 'tmp' is seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _staging(store) -> list[Path]:
    folder = Path(store.path) / "media" / "staging"
    return sorted(folder.iterdir()) if folder.exists() else []


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def _padded_mp4(src: str, dst: Path, padding: int) -> Path:
    """A valid mp4 followed by a top-level 'free' box of ``padding`` bytes (sparse on disk)."""
    data = Path(src).read_bytes()
    with open(dst, "wb") as fh:
        fh.write(data)
        fh.write(struct.pack(">I4s", 1, b"free") + struct.pack(">Q", padding))
        fh.truncate(len(data) + padding)
    return dst


def test_a_10_gib_sparse_file_is_refused_before_reading(ingest, store, tmp_path, mp4_path):
    head = Path(mp4_path).read_bytes()[:512]
    big = _sparse(tmp_path / "huge.mp4", 10 << 30, head)
    with pytest.raises(dl.MediaTooLarge, match="over the limit of 2048 MiB.*max_file_bytes"):
        dl.read_clip(big, SPEC)
    with pytest.raises(dl.MediaTooLarge, match="huge.mp4"):
        ingest.score(big, label="circle")
    assert store.matched().df().empty and _staging(store) == []


def test_the_limit_is_configurable(ingest, store, mp4_path):
    small = dl.ClipSpec(frames=4, size=32, max_file_bytes=1024)
    with pytest.raises(dl.MediaTooLarge, match="limit of 0 MiB"):
        dl.read_clip(mp4_path, small)
    with pytest.raises(dl.MediaTooLarge):
        dl.read_clip(Path(mp4_path).read_bytes(), small)
    ingest.spec = small
    with pytest.raises(dl.MediaTooLarge):
        ingest.score(mp4_path, label="circle")
    assert store.matched().df().empty and _staging(store) == []


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_limits_must_be_positive_ints(limit):
    with pytest.raises(dl.ConfigError, match="max_file_bytes must be a positive int"):
        dl.ClipSpec(max_file_bytes=limit)


def test_an_mp4_padded_with_a_free_box_is_refused_and_nothing_is_copied(ingest, store, tmp_path, mp4_path):
    padded = _padded_mp4(mp4_path, tmp_path / "padded.mp4", 1 << 30)
    with pytest.raises(dl.MediaTooLarge, match="1024.0 MiB of padding.*max_padding_bytes"):
        dl.read_clip(padded, SPEC)
    with pytest.raises(dl.MediaTooLarge, match="padding"):
        ingest.score(padded, label="circle")
    assert store.matched().df().empty and _staging(store) == []
    media = [p for p in (Path(store.path) / "media").rglob("*") if p.is_file()]
    assert media == []


def test_small_padding_is_accepted(ingest, tmp_path, mp4_path):
    padded = _padded_mp4(mp4_path, tmp_path / "padded.mp4", 4096)
    clip = dl.read_clip(padded, SPEC)
    assert clip.frames.shape == (4, 32, 32, 3)
    assert ingest.score(padded, label="circle").ok


def test_scoring_and_reading_bytes_leave_nothing_in_tmp(ingest, store, private_tmp, shape_rows):
    results = ingest.score_many([r["path"] for r in shape_rows[:3]], [r["label"] for r in shape_rows[:3]],
                                progress=False)
    ingest.score(Path(shape_rows[3]["path"]).read_bytes(), label=shape_rows[3]["label"])
    dl.read_clip(Path(shape_rows[4]["path"]).read_bytes(), SPEC)
    assert all(r.ok for r in results)
    assert sorted(private_tmp.iterdir()) == []
    assert _staging(store) == []


def test_a_clip_that_fails_to_decode_leaves_no_staged_copy(ingest, store, tmp_path, mp4_path):
    data = Path(mp4_path).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(dl.TruncatedMedia):
        ingest.score(cut, label="circle")
    results = ingest.score_many([cut, mp4_path], ["circle", "square"], on_error="skip", progress=False)
    assert [r.label for r in results] == ["square"]
    assert _staging(store) == []
    assert len(store.matched().df()) == 1


def test_staged_copies_a_killed_process_left_are_removed_on_open(tmp_path):
    root = tmp_path / "store"
    with dl.PayloadStore(root):
        pass
    leftover = root / "media" / "staging" / f".tmp-stage-{os.getpid()}-abc"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"x" * 100)
    with dl.PayloadStore(root):
        assert not leftover.exists()


def test_the_same_clip_twice_is_reported_as_a_duplicate(ingest, store, shape_rows):
    row = shape_rows[0]
    first = ingest.score(row["path"], label=row["label"])
    assert first.duplicate_of is None
    again = ingest.score(Path(row["path"]).read_bytes(), label="square")
    assert again.duplicate_of == first.scoring_id and again.sha256 == first.sha256
    runs = store.runs("duplicate_clip")
    assert len(runs) == 1 and runs.iloc[0]["scoring_id"] == again.scoring_id
    # one media file for both events
    media = [p for p in (Path(store.path) / "media").rglob("*.mp4")]
    assert len(media) == 1
    # the conflicting labels on identical content are reported by evaluate
    ev = dl.evaluate(store.matched().df(), classes=CLASSES)
    assert len(ev.conflicts) == 1
    assert ev.conflicts.iloc[0]["labels"] == sorted({row["label"], "square"})
    assert sorted(ev.conflicts.iloc[0]["scoring_ids"]) == sorted([first.scoring_id, again.scoring_id])


def test_logged_clips_are_decoded_from_their_verified_file(ingest, store, shape_rows):
    result = ingest.score(shape_rows[0]["path"], label=shape_rows[0]["label"])
    x, ok = dl.replay(store, result.scoring_id, result.model_version)
    assert ok and tuple(x.shape) == (3, 4, 32, 32)
    path = store.raw_path(result.scoring_id)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(dl.StoreCorrupt, match="no longer matches its sha256"):
        dl.replay(store, result.scoring_id, result.model_version)


def test_score_many_names_the_clips_it_leaves_out_and_can_stop_at_the_first(ingest, store, tmp_path, shape_rows):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    paths = [shape_rows[0]["path"], bad, shape_rows[1]["path"]]
    failures: list = []
    results = ingest.score_many(paths, on_error="skip", failures=failures, progress=False)
    assert len(results) == 2 and [(i, type(e)) for i, e in failures] == [(1, dl.UnsupportedMedia)]
    failures.clear()
    results = ingest.score_many(paths, on_error="stop", failures=failures, progress=False)
    assert len(results) == 1 and [i for i, _ in failures] == [1]  # the clip before is logged, none after
    assert len(store.matched().df()) == 3 and _staging(store) == []
