"""CVAT for video 1.1 XML: lossless round trips, CVAT's interpolation and ``outside`` semantics, hostile files.

No store and no video decoding: media paths name files that need not exist (reading only resolves them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop_helpers import (
    HOSTILE,
    HOSTILE_WRITES,
    TEXTS,
    TRACK_CLASS_POOL,
    assert_write_refused,
    close,
    forbid_opening,
    gappy_track_boxes,
    label_sets,
    one_per_track_and_frame,
    small_track_set,
    track_box,
)

from dlabel_lab.errors import ConfigError, DLabelError, UnsafeSource
from dlabel_lab.interop import cvat
from dlabel_lab.interop.labelset import Box, ClipLabels, LabelSet, canonical

FIXTURES = Path(__file__).parent / "fixtures" / "cvat"


def _boxes(clip: ClipLabels) -> list[tuple]:
    """(frame, track, label, x1, y1, x2, y2, source, author) sorted, for exact comparisons."""
    return sorted(((b.frame_index, -1 if b.track_id is None else b.track_id, b.label, b.x1, b.y1, b.x2, b.y2,
                    b.source, b.author) for b in clip.boxes), key=repr)


def _handmade() -> LabelSet:
    """Tracks with gaps and a change of label, untracked boxes, a clip with nothing, odd texts."""
    a = ClipLabels(
        media="media/a.mp4", width=200, height=100, fps=25.0, frame_count=12, scoring_id="s-a", label="cat",
        label_source="human", label_author="ann",
        boxes=[*gappy_track_boxes(), Box(7, -5.0, -2.5, 5.0, 2.5, "cat", None, source="", author="\r\n\t é <&>")],
        predictions=[Box(0, 1.0, 1.0, 5.0, 5.0, "cat", 0, score=0.5)], predicted_label="dog",
        predicted_confidence=0.5)
    b = ClipLabels(media="media/b.mp4", label_source="auto")  # nothing else known; a source without a label
    c = ClipLabels(media="media/sub dir/c.mp4", width=64, height=None, fps=29.97, frame_count=None, label="dog",
                   label_source="auto", label_author=None, scoring_id="../../etc/evil id",
                   boxes=[Box(20, 1.0, 2.0, 3.0, 4.0, "bird & <fish>", -1, source="human", author='"q"')])
    return LabelSet(clips=[a, b, c], classes=["cat", "dog", "bird & <fish>"], model_version="shapes-v1")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.xml"))}


def test_handmade_round_trip_is_lossless_and_a_rewrite_is_byte_identical(tmp_path):
    ls = _handmade()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert cvat.write(ls, tmp_path / "one") == tmp_path / "one"
    assert list(_files(tmp_path / "one")) == ["cvat_00000_s-a.xml", "cvat_00001_clip.xml",
                                              "cvat_00002_etc_evil_id.xml"]
    back = cvat.read(tmp_path / "one")
    assert close(canonical(back, predictions=False), canonical(ls, predictions=False))
    assert back.classes == ls.classes
    assert [c.media for c in back.clips] == [str((tmp_path / "one" / c.media).resolve()) for c in ls.clips]
    assert [(c.scoring_id, c.fps) for c in back.clips] == [("s-a", 25.0), (None, None), ("../../etc/evil id", 29.97)]
    assert all(c.predictions == [] and c.predicted_label is None for c in back.clips)  # not written to CVAT
    cvat.write(back.with_media([c.media for c in ls.clips]), tmp_path / "two")
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    cvat.write(ls, tmp_path / "two")  # the same set always gives the same bytes
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_written_tracks_are_keyframes_closed_by_outside_boxes(tmp_path):
    cvat.write(_handmade(), tmp_path)
    from defusedxml import ElementTree

    root = ElementTree.parse(tmp_path / "cvat_00000_s-a.xml").getroot()
    assert root.findtext("version") == "1.1" and root.findtext("meta/task/mode") == "interpolation"
    assert root.findtext("meta/task/size") == "12" and root.findtext("meta/source") == "media/a.mp4"
    assert [lab.findtext("name") for lab in root.findall("meta/task/labels/label")] == ["cat", "dog", "bird & <fish>"]
    assert (root.findtext("meta/task/original_size/width"), root.findtext("meta/task/original_size/height")) == \
        ("200", "100")
    tracks = root.findall("track")
    assert [(t.get("id"), t.get("label"), t.get("source")) for t in tracks][:2] == [("0", "dog", "manual"),
                                                                                     ("1", "cat", "manual")]
    rows = [(int(b.get("frame")), b.get("outside"), b.get("keyframe")) for b in tracks[1].findall("box")]
    assert rows == [(0, "0", "1"), (1, "0", "1"), (2, "0", "1"), (3, "1", "1"), (5, "0", "1"), (6, "1", "1")]
    assert [(int(b.get("frame")), b.get("outside")) for b in tracks[0].findall("box")] == [(11, "0")]  # clip ends
    attrs = {a.get("name"): a.text for a in tracks[1].find("box").findall("attribute")}
    assert attrs == {"dlabel_track_id": "3", "dlabel_source": "human", "dlabel_author": "ann"}
    untracked = tracks[-1].find("box").findall("attribute")
    assert [(a.get("name"), a.text) for a in untracked][0] == ("dlabel_track_id", None)
    clip = root.find("meta/dlabel_clip")
    assert dict(clip.attrib) == {"scoring_id": "s-a", "width": "200", "height": "100", "fps": "25.0",
                                 "frame_count": "12", "label": "cat", "label_source": "human", "label_author": "ann"}
    assert root.find("tag") is None  # CVAT's importer fails on a top-level <tag>: the class lives in <meta>


def test_no_labels_at_all_round_trips(tmp_path):
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", width=10, height=10), ClipLabels(media="b.mp4")], classes=["x"])
    cvat.write(ls, tmp_path)
    back = cvat.read(tmp_path)
    assert canonical(back) == canonical(ls) and back.classes == ["x"]
    assert canonical(cvat.read(tmp_path / "cvat_00001_clip.xml")) == canonical(ls)[1:]


def test_a_smaller_export_into_the_same_folder_leaves_no_stale_files(tmp_path):
    ls = LabelSet(clips=[ClipLabels(media=f"{i}.mp4", label="x") for i in range(3)], classes=["x"])
    cvat.write(ls, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    cvat.write(LabelSet(clips=ls.clips[:1], classes=["x"]), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cvat_00000_clip.xml", "notes.txt"]
    assert len(cvat.read(tmp_path).clips) == 1


def test_keyframe_only_tracks_interpolate_and_outside_hides():
    ls = cvat.read(FIXTURES / "keyframes.xml")
    assert ls.classes == ["person", "car"]
    (clip,) = ls.clips
    assert clip.media == str((FIXTURES / "walk.mp4").resolve())
    assert (clip.width, clip.height, clip.frame_count, clip.fps, clip.label) == (640, 480, 12, None, None)
    person = [(0, 10.0, 20.0, 30.0, 60.0), (1, 20.0, 20.0, 40.0, 65.0), (2, 30.0, 20.0, 50.0, 70.0),
              (3, 40.0, 20.0, 60.0, 75.0), (4, 50.0, 20.0, 70.0, 80.0),
              (5, 50.0, 20.0, 70.0, 80.0),  # toward the outside box on frame 6, which has the same corners
              (9, 100.0, 100.0, 120.0, 140.0), (10, 100.0, 100.0, 120.0, 140.0),  # held to the task's last frame
              (11, 100.0, 100.0, 120.0, 140.0)]
    expected = [(f, 0, "person", *xy, "cvat", None) for f, *xy in person]
    expected.append((2, 1, "car", 200.0, 200.0, 260.0, 230.0, "cvat", None))  # source="auto" is CVAT's: "cvat"
    assert _boxes(clip) == sorted(expected, key=repr)


def test_every_frame_export_with_a_tag_and_attributes():
    ls = cvat.read(FIXTURES / "tagged.xml")
    assert ls.classes == ["car", "highway"]
    (clip,) = ls.clips
    assert clip.media == str((FIXTURES / "clips" / "cars.mp4").resolve())  # <task><source> works as well
    assert (clip.label, clip.label_source, clip.label_author) == ("highway", "cvat", "cy")
    assert (clip.width, clip.height, clip.frame_count) == (100, 50, 5)
    expected = [(1, 0, "car", 0.0, 0.0, 10.0, 10.0, "cvat", "cy"), (2, 0, "car", 5.0, 2.5, 15.0, 12.5, "cvat", "cy"),
                (3, 0, "car", 10.0, 5.0, 20.0, 15.0, "cvat", "cy")]
    expected += [(f, 1, "car", 50.0, 20.0, 60.0, 30.0, "cvat", None) for f in range(5)]  # keyframe held to the end
    assert _boxes(clip) == sorted(expected, key=repr)


def test_a_folder_reads_every_xml_in_name_order():
    ls = cvat.read(FIXTURES)
    assert [Path(c.media).name for c in ls.clips] == ["walk.mp4", "cars.mp4"]  # keyframes.xml, tagged.xml
    assert ls.classes == ["person", "car", "highway"]


# --- property ----------------------------------------------------------------------------
_TEXT = st.sampled_from([*TEXTS, "a\r\nb\t"])


def _clip(draw, classes: list[str], i: int) -> ClipLabels:
    """Random labels, sources, authors (texts XML must escape), fractional boxes on random frames and tracks; the
    size, each side, known or not."""
    frame_count = draw(st.one_of(st.none(), st.integers(1, 12)))
    width, height = draw(st.integers(16, 640)), draw(st.integers(16, 480))
    boxes = one_per_track_and_frame(draw(st.lists(track_box(classes, (frame_count or 16) - 1, width, height, _TEXT),
                                                  max_size=10)))
    label = draw(st.one_of(st.none(), st.sampled_from(classes)))
    return ClipLabels(
        media=f"media/clip {i}.mp4", width=draw(st.one_of(st.none(), st.just(width))),
        height=draw(st.one_of(st.none(), st.just(height))),
        fps=draw(st.one_of(st.none(), st.sampled_from([10.0, 25.0, 29.97]))), frame_count=frame_count,
        scoring_id=draw(st.one_of(st.none(), st.sampled_from(["s1", "../evil", "a b/c", "é"]))), label=label,
        label_source=draw(st.one_of(st.none(), _TEXT)), label_author=draw(st.one_of(st.none(), _TEXT)),
        boxes=boxes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ls=label_sets(_clip, TRACK_CLASS_POOL, model_version=False))
def test_random_label_sets_round_trip(tmp_path_factory, ls):
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    cvat.write(ls, one)
    back = cvat.read(one)
    assert close(canonical(back, predictions=False), canonical(ls, predictions=False))
    cvat.write(back.with_media([c.media for c in ls.clips]), two)
    assert _files(one) == _files(two)


# --- hostile and malformed files ---------------------------------------------------------
def _valid(tmp_path: Path) -> Path:
    cvat.write(small_track_set(), tmp_path)
    return tmp_path / "cvat_00000_clip.xml"


@pytest.mark.parametrize("name", [*HOSTILE, "C:\\x.mp4"])
def test_hostile_media_names_are_refused_on_reading(tmp_path, name):
    f = _valid(tmp_path)
    f.write_text(f.read_text().replace("<source>v.mp4</source>", f"<source>{name}</source>"))
    with pytest.raises(UnsafeSource):
        cvat.read(f)


@pytest.mark.parametrize("name", HOSTILE_WRITES)
def test_writing_refuses_hostile_media_and_writes_nothing(tmp_path, name):
    ls = LabelSet(clips=[ClipLabels(media="ok.mp4", label="x"), ClipLabels(media=name, label="x")], classes=["x"])
    assert_write_refused(cvat.write, ls, tmp_path)


def test_hostile_scoring_ids_never_name_files_outside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ids = ["../../evil", "/etc/passwd", "a/../../../b", "..", "con:aux"]
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", scoring_id=s) for s in ids], classes=["x"])
    cvat.write(ls, out)
    assert sorted(p.name for p in out.iterdir()) == ["cvat_00000_evil.xml", "cvat_00001_etc_passwd.xml",
                                                     "cvat_00002_a_b.xml", "cvat_00003_clip.xml",
                                                     "cvat_00004_con_aux.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [c.scoring_id for c in cvat.read(out).clips] == ids
    for bad in ("../x", "", "a.b", "x" * 65):
        with pytest.raises(ConfigError, match="name must be"):
            cvat.write(ls, out, name=bad)


def test_text_xml_cannot_carry_is_refused_before_writing(tmp_path):
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", label="x", label_author="bell\x07")], classes=["x"])
    with pytest.raises(ConfigError, match="XML cannot carry"):
        cvat.write(ls, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_file_over_max_bytes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    f = _valid(tmp_path)
    forbid_opening(monkeypatch)
    with pytest.raises(ConfigError, match="max_bytes"):
        cvat.read(f, max_bytes=f.stat().st_size - 1)


_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
           '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
           '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
           '<annotations><meta><task><name>&lol3;</name></task><source>v.mp4</source></meta></annotations>')
_XXE = ('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        '<annotations><meta><source>&xxe;</source></meta></annotations>')


@pytest.mark.parametrize("text", [_LAUGHS, _XXE, '<!DOCTYPE annotations []><annotations/>'])
def test_entity_expansion_and_dtds_are_refused(tmp_path, text):
    (tmp_path / "bomb.xml").write_text(text)
    with pytest.raises(DLabelError) as info:
        cvat.read(tmp_path / "bomb.xml")
    assert isinstance(info.value, ConfigError) and "DTD or entities" in str(info.value)


def _edit(old: str, new: str):
    def change(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return change


@pytest.mark.parametrize("change, match", [
    (lambda t: "<annotations><track", "not well-formed"),
    (lambda t: "<root/>", "not <annotations>"),
    (_edit('frame="0"', 'frame="-1"'), "frame must be an integer >= 0"),
    (_edit('frame="0"', 'frame="1_0"'), "frame must be an integer"),
    (_edit('frame="1" keyframe="1" outside="0"', 'frame="0" keyframe="1" outside="0"'), "two boxes on frame 0"),
    (_edit('outside="0"', 'outside="2"'), "outside must be 0 or 1"),
    (_edit('xtl="1.0"', 'xtl="9.0"'), "needs xtl < xbr"),
    (_edit('xtl="1.0"', 'xtl="nan"'), "xtl must be a finite number"),
    (_edit('ytl="1.0"', 'ytl=""'), "ytl must be a finite number"),
    (_edit("<source>v.mp4</source>", ""), "names no <source>"),
    (_edit("<size>5</size>", "<size>five</size>"), "<size> must be an integer"),
    (_edit('label="x" source="manual"', 'source="manual"'), "has no label"),
    (_edit(">0</attribute>", ">zero</attribute>"), "dlabel_track_id must be an integer"),
    (_edit('<attribute name="dlabel_track_id">', "<attribute>"), "has no name"),
    (_edit('frame_count="5"', 'frame_count="0"'), "frame_count must be an integer >= 1"),
    (_edit('width="100"', 'width="-3"'), "width must be an integer >= 1"),
    (_edit("</track>", '<polygon frame="0" points="1,1;2,2" outside="0" keyframe="1"/></track>'),
     "holds <polygon> shapes"),
    (_edit("  </meta>", '  </meta>\n  <image id="0" name="a.png"/>'), "CVAT for images"),
    (_edit("<meta>", "<meta><project/>"), "project export"),
    (_edit('frame="1" keyframe="1" outside="0"', 'frame="9" keyframe="1" outside="0"'), "but the clip has 5 frames"),
])
def test_malformed_files_raise_config_errors_naming_the_entry(tmp_path, change, match):
    f = _valid(tmp_path)
    f.write_text(change(f.read_text()))
    with pytest.raises(ConfigError, match=match):
        cvat.read(f)


def test_foreign_tags_must_agree_on_one_class(tmp_path):
    text = (FIXTURES / "tagged.xml").read_text().replace(
        '<tag frame="0" label="highway" source="manual">',
        '<tag frame="1" label="car"/><tag frame="0" label="highway">')
    (tmp_path / "t.xml").write_text(text)
    with pytest.raises(ConfigError, match="a clip has one class"):
        cvat.read(tmp_path / "t.xml")


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="cannot be opened"):
        cvat.read(tmp_path / "nope.xml")
    with pytest.raises(ConfigError, match="holds no .xml files"):
        cvat.read(tmp_path)


def test_expansion_budget_refuses_a_track_held_over_a_huge_task(tmp_path, monkeypatch):
    monkeypatch.setattr(cvat, "MAX_EXPANDED_BOXES", 1000)
    text = (FIXTURES / "keyframes.xml").read_text().replace("<size>12</size>", "<size>1000000000000</size>")
    (tmp_path / "big.xml").write_text(text)
    with pytest.raises(ConfigError, match="more than 1000 boxes"):
        cvat.read(tmp_path / "big.xml")
