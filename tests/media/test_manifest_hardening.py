"""read_manifest refuses hostile or broken manifests with typed errors naming the file and the line."""

from __future__ import annotations

import csv
import os
import time

import pytest

import dlabel_lab as dl
from dlabel_lab.media.samples import check_manifest, read_manifest

HEADER = "path,label,brightness,scale,speed,clutter,noise\n"
GOOD = "a.mp4,circle,0.5,0.3,1,0,0\n"


def _write(folder, text, name="labels.csv", encoding="utf-8"):
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(text.encode(encoding))
    return p


# --- the file as a whole -------------------------------------------------------------------
def test_oversized_manifest_is_refused_from_its_size_alone(tmp_path):
    big = tmp_path / "labels.csv"
    with open(big, "wb") as fh:  # sparse: 65 MiB and one byte of zeros, no newline
        fh.truncate(64 * 2**20 + 1)
    t0 = time.perf_counter()
    with pytest.raises(dl.ConfigError, match=r"64 MiB.*max_bytes="):
        read_manifest(big)
    assert time.perf_counter() - t0 < 1.0
    small = _write(tmp_path / "s", HEADER + GOOD * 10)
    size = small.stat().st_size
    with pytest.raises(dl.ConfigError, match=rf"the 100 bytes limit.*pass max_bytes={size} "):
        read_manifest(small, max_bytes=100)
    assert len(read_manifest(small, max_bytes=size)) == 10


def test_non_regular_files_are_refused(tmp_path):
    with pytest.raises(dl.ConfigError, match="not a regular file"):
        read_manifest("/proc/self/mem")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(dl.ConfigError, match="not a regular file"):
        read_manifest(fifo)  # would block forever if opened
    (tmp_path / "d" / "labels.csv").mkdir(parents=True)
    with pytest.raises(dl.ConfigError, match="not a regular file"):
        read_manifest(tmp_path / "d")
    with pytest.raises(dl.ConfigError, match="does not exist"):
        read_manifest(tmp_path / "missing.csv")


def test_utf8_with_bom_is_read_and_other_encodings_are_refused(tmp_path):
    bom = _write(tmp_path / "bom", "\ufeff" + HEADER + "é.mp4,circle,0.5,,,,\n")
    rows = read_manifest(bom)
    assert rows == [{"path": str((tmp_path / "bom" / "é.mp4").resolve()), "label": "circle", "brightness": 0.5}]
    latin = _write(tmp_path / "latin", HEADER + "é.mp4,circle,0.5,,,,\n", encoding="latin-1")
    with pytest.raises(dl.ConfigError, match=r"labels\.csv is not UTF-8 \(line 2, byte 0xe9\); save it as UTF-8"):
        read_manifest(latin)


@pytest.mark.parametrize("text", ["", "\n\n", HEADER, "\ufeff" + HEADER + "\n"])
def test_empty_or_header_only_manifest_is_a_config_error(tmp_path, text):
    with pytest.raises(dl.ConfigError, match=r"labels\.csv has no (header|clip rows)"):
        read_manifest(_write(tmp_path, text))


def test_missing_columns_are_named(tmp_path):
    with pytest.raises(dl.ConfigError, match=r"labels\.csv needs the columns 'path' and 'label'"):
        read_manifest(_write(tmp_path, "file,class\na.mp4,circle\n"))


# --- bad rows -----------------------------------------------------------------------------------
BAD_ROWS = {
    "short": ("b.mp4\n", "has 1 fields; the header has 7"),
    "long": ("b.mp4,circle,1,1,1,1,1,extra\n", "has 8 fields; the header has 7"),
    "factor": ("b.mp4,circle,bright,,,,\n", "brightness 'bright' is not a number"),
    "nan": ("b.mp4,circle,,nan,,,\n", "scale 'nan' is not a finite number"),
    "nul": ("b\x00.mp4,circle,,,,,\n", "contains a NUL character"),
    "field": ("b" * (200 * 1024) + ".mp4,circle,,,,,\n", "longer than 65536 characters"),
    "empty_path": (",circle,,,,,\n", "has an empty path"),
    "empty_label": ("b.mp4, ,,,,,\n", "has an empty label"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_every_bad_row_names_file_and_line(tmp_path, kind):
    bad, reason = BAD_ROWS[kind]
    limit = csv.field_size_limit()
    m = _write(tmp_path, HEADER + GOOD + bad + "c.mp4,square,,,,,\n")
    with pytest.raises(dl.ConfigError) as info:
        read_manifest(m)
    assert str(info.value).startswith(f"{m} line 3: ") and reason in str(info.value)
    rows, problems = check_manifest(m)
    assert [r["label"] for r in rows] == ["circle", "square"]
    assert len(problems) == 1 and problems[0]["row"] == 3 and reason in problems[0]["reason"]
    assert read_manifest(m, skip_bad=True) == rows
    assert csv.field_size_limit() == limit  # the process-wide csv limit is untouched


def test_unclosed_quote_is_one_bad_row_not_the_rest_of_the_file(tmp_path):
    m = _write(tmp_path, HEADER + GOOD + '"b.mp4,circle,,,,,\n' + ("x" * 1000 + "\n") * 80)
    rows, problems = check_manifest(m)
    assert [r["label"] for r in rows] == ["circle"]
    assert problems[0]["row"] == 3 and "longer than 65536 characters" in problems[0]["reason"]


def test_check_manifest_lists_all_problems_with_paths(tmp_path):
    m = _write(tmp_path, HEADER + "a.mp4,circle,x,,,,\n" + GOOD + "../escape.mp4,circle,,,,,\n")
    rows, problems = check_manifest(m)
    assert [r["path"] for r in rows] == [str((tmp_path / "a.mp4").resolve())]
    assert [(p["row"], p["path"]) for p in problems] == [(2, "a.mp4"), (4, "../escape.mp4")]
    assert "outside" in problems[1]["reason"]


# --- confinement --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.mp4"])
def test_paths_outside_the_manifest_folder_are_refused(tmp_path, path):
    m = _write(tmp_path / "clips", HEADER + GOOD + f"{path},circle,,,,,\n")
    with pytest.raises(dl.UnsafeSource, match=r"labels\.csv line 3: .*outside .*root="):
        read_manifest(m)


def test_symlinks_are_resolved_before_the_confinement_check(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.mp4").write_bytes(b"x")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "link").symlink_to(tmp_path / "outside")
    m = _write(clips, HEADER + "link/secret.mp4,circle,,,,,\n")
    with pytest.raises(dl.UnsafeSource, match="outside"):
        read_manifest(m)
    rows = read_manifest(m, root=tmp_path)
    assert rows[0]["path"] == str((tmp_path / "outside" / "secret.mp4").resolve())


def test_root_allows_paths_under_a_chosen_folder(tmp_path):
    m = _write(tmp_path / "a" / "manifests", HEADER + "../clips/x.mp4,circle,,,,,\n"
               + f"{tmp_path / 'a' / 'clips' / 'y.mp4'},square,,,,,\n")
    with pytest.raises(dl.UnsafeSource):
        read_manifest(m)
    rows = read_manifest(m, root=tmp_path / "a")
    assert [r["path"] for r in rows] == [str((tmp_path / "a" / "clips" / n).resolve()) for n in ("x.mp4", "y.mp4")]
    with pytest.raises(dl.ConfigError, match="root"):
        read_manifest(m, root=tmp_path / "nowhere")


def test_generated_manifests_still_read(tmp_path):
    m = dl.make_shape_clips(tmp_path, 3, seed=0, frames=4, size=32)
    rows = read_manifest(m)
    assert [r["label"] for r in rows] == ["circle", "square", "triangle"]
    assert read_manifest(tmp_path) == rows
    assert check_manifest(m) == (rows, [])


def test_duplicate_columns_and_all_bad_rows_are_config_errors(tmp_path):
    with pytest.raises(dl.ConfigError, match="repeats column names"):
        read_manifest(_write(tmp_path / "dup", "path,label,path\na.mp4,circle,b.mp4\n"))
    m = _write(tmp_path / "bad", HEADER + ",circle,,,,,\n" + "b.mp4,,,,,,\n")
    with pytest.raises(dl.ConfigError, match=r"no good clip rows: .*line 2: has an empty path \(and 1 more"):
        read_manifest(m, skip_bad=True)
    assert [p["row"] for p in check_manifest(m)[1]] == [2, 3]


def test_check_manifest_can_number_the_good_rows(tmp_path):
    m = _write(tmp_path, HEADER + GOOD + "\n" + "b.mp4,x,,,,,\n" + "c.mp4,square,,,,,\n")
    rows, problems = check_manifest(m, line_numbers=True)
    assert [(r["row"], r["label"]) for r in rows] == [(2, "circle"), (4, "x"), (5, "square")] and problems == []
    assert "row" not in read_manifest(m)[0]
