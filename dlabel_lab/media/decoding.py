"""Decoding sampled frames with PyAV: read the container's index, seek to keyframes, decode only what is needed.

A clip of 2,500 frames sampled at 8 needs 8 frames, not 2,500. The decoder
here reads the container's frame index (or, where a container keeps none,
demuxes its packets without decoding them), works out which group of
pictures (GOP: a keyframe and the frames that depend on it) each sampled
frame lives in, seeks to that GOP's keyframe and decodes forward to the
frame. Sampled frames that share a GOP, or sit in neighbouring GOPs, are
decoded in one forward pass: no GOP is decoded twice.

Frame-exactness. Frame ``i`` is the ``i``-th frame in presentation order,
exactly what a decode of the whole clip gives at index ``i``. Three ways of
finding it, each checked, the next one taken when a check fails:

1. ``"grid"``: the container's index (MP4, AVI, indexed MKV) lists every
   frame with evenly spaced decode timestamps and closed GOPs, so frame
   ``i`` has timestamp ``pts0 + i * step`` and its GOP starts at the last
   keyframe at or before decode position ``i``. Checked while decoding: each
   keyframe sought must carry the timestamp the grid gives it, and every
   decoded frame must fall on the grid.
2. ``"index"``: the packets are demuxed (not decoded) once; their sorted
   timestamps give each frame's position, open GOPs (frames shown before
   their keyframe) start one GOP earlier. Used for variable frame rates,
   containers without an index (MPEG-TS, Ogg, FLV, MKV without cues) and
   when a grid check fails.
3. ``"sequential"``: decode from the first frame and count. Used when
   packets carry no timestamps, a seek lands in the wrong place, or a
   sampled frame does not come out where the index said.

Integrity without a full decode. The frames the container declares are
compared with the frames present: index entries whose bytes lie inside the
file (grid) or demuxed packets (index). A clip that declares more frames
than it holds is truncated. FFmpeg's own error log is captured on every
frame that is decoded (PyAV's log capture), so damage inside the frames
read is still caught; damage in GOPs that no sampled frame needs is not
looked at, which is the price of not decoding them.

The container format is the one sniffed from the file's first bytes and is
forced on FFmpeg (no probing), and clips are read through a Python file
object, so FFmpeg never opens anything but the clip itself; bytes are read
from memory (no temporary copy).

Example:
    >>> from pathlib import Path
    >>> d = decode_frames(Path("clip.mp4"), container="mp4", name="'clip.mp4'",
    ...                   sample=lambda n: [0, n - 1], prep=lambda rgb: rgb)  # doctest: +SKIP
    >>> sorted(d.frames), d.method  # doctest: +SKIP
    ([0, 249], 'grid')
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.logging
import numpy as np
from av.video.reformatter import VideoReformatter

from ..errors import EmptyMedia, MediaTooLarge, TruncatedMedia

__all__ = ["Decoded", "decode_frames", "FFMPEG_FORMATS"]

#: FFmpeg demuxer forced for each sniffed container (no format probing).
FFMPEG_FORMATS = {"mp4": "mp4", "avi": "avi", "mkv": "matroska", "ogg": "ogg", "flv": "flv", "asf": "asf",
                  "mpeg-ps": "mpeg", "mpeg-ts": "mpegts"}

_LOCK = threading.Lock()  # FFmpeg's decoder threads log outside the calling thread: one capture at a time
_LOG_ERRORS = av.logging.ERROR
_AVINDEX_KEYFRAME, _AVINDEX_DISCARD = 0x0001, 0x0002  # libavformat's AVIndexEntry flags


class _Fallback(Exception):
    """A check of the current method failed; try the next, more general one."""


@dataclass
class Decoded:
    """What :func:`decode_frames` read.

    Attributes:
        array: The prepared frames in sampling order, one array ``(len(indices), H, W, 3)``.
        frames: Views of ``array`` by frame index (the sampled ones only).
        indices: The sampled indices, in sampling order (may repeat).
        frame_count: Frames in the clip (present; the declared count when it is lower).
        declared: Frames the container declares (0 when it declares none).
        fps: Frames per second.
        width: Frame width in pixels (after the display rotation).
        height: Frame height in pixels (after the display rotation).
        codec: The stream's codec tag (FourCC such as ``"avc1"``, ``"mp4v"``, ``"MJPG"``) or codec name.
        method: ``"grid"``, ``"index"`` or ``"sequential"`` (see the module docstring).
        decoded: Frames the decoder produced (sampled or not): the work done.
        errors: FFmpeg error messages logged while decoding.
    """

    array: np.ndarray
    frames: dict[int, np.ndarray]
    indices: list[int]
    frame_count: int
    declared: int
    fps: float
    width: int
    height: int
    codec: str
    method: str
    decoded: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Index:
    """Where frames are: keyframes in decode order and how a timestamp maps to a frame index."""

    n: int  # frames present
    key_pos: list[int]  # decode positions of keyframes
    key_seek: list[int]  # timestamps to seek to (decode timestamp where known: at or before the keyframe)
    key_pts: list[int]  # their presentation timestamps (grid: predicted; index: read)
    key_byte: list[int]  # their byte offsets in the file (-1: unknown)
    key_dts: list[int | None]  # their decode timestamps (None: unknown)
    frame_gop: Callable[[int], int]  # frame index -> keyframe (position in key_pos) to start decoding from
    frame_of: Callable[[int | None], int | None]  # a decoded frame's pts -> frame index (None: off the index)
    method: str


# --- limits and opening -----------------------------------------------------------
def _too_many(name: str, count: int, limit: int, what: str) -> MediaTooLarge:
    return MediaTooLarge(f"{name} {what} {count} frames, over the limit of {limit}. "
                         "Cut the clip or raise ClipSpec.max_frames.")


@contextlib.contextmanager
def _open(source: Path | bytes, container: str, name: str) -> Iterator[av.container.InputContainer]:
    fh = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115 - closed below
    try:
        try:
            box = av.open(fh, mode="r", format=FFMPEG_FORMATS.get(container))
        except av.FFmpegError as error:
            raise TruncatedMedia(
                f"{name} looks like an {container} file but cannot be opened ({error}): it is truncated or "
                "damaged. Re-export or re-download the clip."
            ) from None
        try:
            yield box
        finally:
            box.close()
    finally:
        fh.close()


def _codec_tag(stream) -> str:
    tag = stream.codec_context.codec_tag or ""
    tag = tag.strip("\x00 ")
    if tag and all(32 <= ord(c) < 127 for c in tag):
        return tag
    return (stream.codec_context.name or "").upper()


# --- indexes ----------------------------------------------------------------------
def _grid_index(stream, declared: int, file_size: int | None, first_pts: int | None) -> _Index | None:
    """The index from the container's own entries, when they are a clean, evenly spaced grid.

    ``first_pts`` is the stream's start time (the first frame's timestamp); every keyframe's timestamp on the
    grid is checked against the packet when decoding reaches it.
    """
    try:
        entries = stream.index_entries
        n = len(entries)
    except (AttributeError, av.FFmpegError):
        return None
    if n < 1 or first_pts is None or n != declared:
        return None  # no count to check against (e.g. Matroska cues list keyframes only), or a mismatch
    rows = entries[0:n]  # one list of entries; each attribute read costs a Python call, so read few
    ts = np.fromiter((e.timestamp for e in rows), dtype=np.int64, count=n)
    if n > 1:
        steps = np.diff(ts)
        step = int(steps[0])
        if step <= 0 or not np.all(steps == step):
            return None
    else:
        step = 1
    flags = np.fromiter((e.flags for e in rows), dtype=np.int64, count=n)
    key = np.flatnonzero(flags & _AVINDEX_KEYFRAME).tolist()
    if np.any(flags & _AVINDEX_DISCARD) or not key or key[0] != 0:
        return None
    # The container's structure was checked before (MP4 boxes and AVI chunks tile the file); the entries that
    # end last must also lie inside it (a sample table that outruns its data is a truncation).
    ends = max(int(e.pos) + int(e.size) for e in rows[-64:])
    if file_size is not None and ends > file_size:
        return None  # let the demuxer count what is there
    pts0, dts0 = int(first_pts), int(ts[0])
    delay = pts0 - dts0

    def frame_of(pts):
        if pts is None:
            return None
        q, r = divmod(int(pts) - pts0, step)
        return q if r == 0 and 0 <= q < n else None

    pos = [int(rows[k].pos) for k in key]
    return _Index(
        n=n, key_pos=key, key_seek=[int(ts[k]) for k in key], key_pts=[int(ts[k]) + delay for k in key],
        key_byte=pos, key_dts=[int(ts[k]) for k in key],
        frame_gop=lambda i: bisect.bisect_right(key, i) - 1, frame_of=frame_of, method="grid",
    )


def _demux_index(box, stream, max_frames: int, name: str) -> _Index | None:
    """The index from demuxed packets (no decoding); ``None`` when packets carry no usable timestamps."""
    pts, dts, byte, keys = [], [], [], []
    for packet in box.demux(stream):
        if packet.size == 0:
            continue
        if len(pts) >= max_frames:
            raise _too_many(name, len(pts) + 1, max_frames, "holds more than")
        if packet.pts is None:
            return None
        if packet.is_keyframe:
            keys.append(len(pts))
        pts.append(int(packet.pts))
        dts.append(None if packet.dts is None else int(packet.dts))
        byte.append(-1 if packet.pos is None else int(packet.pos))
    n = len(pts)
    if n == 0:
        return _Index(0, [], [], [], [], [], lambda i: 0, lambda p: None, "index")
    if len(set(pts)) != n:
        return None
    order = sorted(range(n), key=pts.__getitem__)
    rank = {pts[j]: r for r, j in enumerate(order)}  # pts -> frame index
    if not keys or keys[0] != 0:
        keys = [0, *[k for k in keys if k != 0]]  # decoding can only start at the first packet
    start = []
    for j in order:  # frame r is packet j in decode order
        g = bisect.bisect_right(keys, j) - 1
        if g > 0 and pts[j] < pts[keys[g]]:
            g -= 1  # shown before its keyframe (open GOP): it needs the previous GOP
        start.append(g)
    return _Index(
        n=n, key_pos=keys, key_seek=[pts[k] if dts[k] is None else min(dts[k], pts[k]) for k in keys],
        key_pts=[pts[k] for k in keys], key_byte=[byte[k] for k in keys], key_dts=[dts[k] for k in keys],
        frame_gop=start.__getitem__, frame_of=lambda p: None if p is None else rank.get(int(p)), method="index",
    )


def _seek(box, stream, timestamp: int):
    """Seek to the keyframe at or before ``timestamp``, reset the decoder, and return a fresh packet iterator."""
    try:
        box.seek(timestamp, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        raise _Fallback from None
    stream.codec_context.flush_buffers()
    return box.demux(stream)


def _past(packet, index: _Index, g: int) -> bool:
    """Whether ``packet`` comes after keyframe ``g`` in decode order (so a seek overshot it)."""
    if index.key_byte[g] >= 0 and packet.pos is not None and packet.pos >= 0:
        return packet.pos > index.key_byte[g]
    if index.key_dts[g] is not None and packet.dts is not None:
        return packet.dts > index.key_dts[g]
    return False


# --- decoding ---------------------------------------------------------------------
class _Reader:
    """Decodes frames and turns the kept ones into prepared RGB arrays."""

    def __init__(self, box, stream, prep: Callable[[np.ndarray], np.ndarray], name: str) -> None:
        self.box, self.stream, self.prep, self.name = box, stream, prep, name
        self.reformatter = VideoReformatter()  # one swscale context for the clip, not one per frame
        self.decoded = 0
        self.turn = 0  # quarter turns of the display rotation (counter-clockwise)
        self.start([])

    def start(self, wanted: list[int]) -> set[int]:
        """Expect ``wanted`` (sampling order, repeats allowed); returns the set of indices kept so far."""
        self.rows: dict[int, list[int]] = {}
        for row, i in enumerate(wanted):
            self.rows.setdefault(i, []).append(row)
        self.n_rows, self.out, self.done = len(wanted), None, set()
        return self.done

    def keep(self, i: int, frame) -> None:
        """Prepare frame ``i`` straight into its rows of the output (one array, filled once)."""
        arr = self.rgb(frame)
        if self.out is None:
            self.out = np.empty((self.n_rows, *arr.shape), arr.dtype)
        rows = self.rows[i]
        self.out[rows[0]] = arr
        for r in rows[1:]:
            self.out[r] = self.out[rows[0]]
        self.done.add(i)

    def rgb(self, frame) -> np.ndarray:
        arr = self.reformatter.reformat(frame, format="rgb24").to_ndarray()
        turn = self.turn = int(round((frame.rotation or 0) / 90.0)) % 4
        if turn:
            arr = np.ascontiguousarray(np.rot90(arr, k=turn))
        return self.prep(arr)

    def decode(self, packet) -> list:
        try:
            frames = self.stream.codec_context.decode(packet)
        except av.FFmpegError as error:
            raise TruncatedMedia(
                f"{self.name}: the decoder failed ({error}); the clip is damaged. Re-export the clip, or pass "
                "ClipSpec(allow_truncated=True) to use the frames that decode."
            ) from None
        self.decoded += len(frames)
        return frames


def _seek_decode(reader: _Reader, index: _Index, wanted: list[int], *, at_start: bool = False) -> set[int]:
    """Decode the wanted frames, seeking to a keyframe only to skip GOPs no wanted frame needs.

    ``at_start``: nothing was demuxed yet, so a first GOP that starts at the first keyframe needs no seek.
    """
    box, stream = reader.box, reader.stream
    pending = sorted(set(wanted))
    want = set(pending)
    out = reader.start(wanted)
    packets, fed, target, landing, ended = None, -2, 0, False, False
    at = 0  # pending[at] is the first wanted frame not yet decoded
    pos = -1  # decode position of the last packet taken since the keyframe we landed on
    # Seek by presentation time first (index-based demuxers land on the keyframe itself); a demuxer that
    # overshoots (MPEG-TS searches by decode time) is sought by the decode time from then on.
    safe = False
    while at < len(pending):
        g = index.frame_gop(pending[at])
        # Decode on when the next wanted frame is in this GOP, or in the next one with at most a few packets of
        # this GOP left; otherwise seek past the rest. Either way no GOP is decoded twice.
        onward = landing or g <= fed or (g == fed + 1 and index.key_pos[g] - pos <= 3)
        if packets is None and at_start and g == 0:
            packets, fed, target, landing = box.demux(stream), -1, 0, True
        elif packets is None or not onward:
            packets = _seek(box, stream, index.key_seek[g] if safe else index.key_pts[g])
            fed, target, landing = g - 1, g, True
        packet = next(packets, None)
        if packet is None or packet.size == 0:  # end of stream: flush the decoder's delayed frames
            frames, ended = reader.decode(None), True
        else:
            if landing:
                if not (packet.is_keyframe and packet.pts == index.key_pts[target]):
                    if _past(packet, index, target):
                        if safe:
                            raise _Fallback  # the seek went past the keyframe, or the index does not describe it
                        safe = True
                        packets = _seek(box, stream, index.key_seek[target])
                    continue  # the seek landed early: skip to the keyframe without decoding
                landing, fed, pos = False, target, index.key_pos[target]
            else:
                pos += 1
                if packet.is_keyframe and fed + 1 < len(index.key_pts) and packet.pts == index.key_pts[fed + 1]:
                    fed += 1
                    pos = index.key_pos[fed]
                elif fed == target and packet.pts is not None and packet.pts < index.key_pts[target]:
                    continue  # shown before the keyframe we started at (open GOP): not needed, not decodable
            frames = reader.decode(packet)
        for frame in frames:
            i = index.frame_of(frame.pts)
            if i is None:
                if index.method == "grid":
                    raise _Fallback  # a frame off the grid: the grid is not the clip's
                continue
            if i > pending[at] and pending[at] not in out:
                raise _Fallback  # the wanted frame did not come out where the index said
            if i in want and i not in out:
                reader.keep(i, frame)
            while at < len(pending) and pending[at] in out:
                at += 1
            if at == len(pending):
                break
        if ended and at < len(pending):
            raise _Fallback  # the stream ended before a wanted frame came out
    return out


def _sequential(reader: _Reader, wanted: list[int], stop_after: bool) -> tuple[set[int], int]:
    """Decode from the first frame, counting; keep the wanted ones. Returns the indices kept and the count."""
    box, stream = reader.box, reader.stream
    try:
        box.seek(0, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        pass
    stream.codec_context.flush_buffers()
    want, last = set(wanted), max(wanted, default=-1)
    out = reader.start(wanted)
    count = 0
    for packet in box.demux(stream):
        for frame in reader.decode(None if packet.size == 0 else packet):
            if count in want:
                reader.keep(count, frame)
            count += 1
        if stop_after and count > last:
            break
    return out, count


def decode_frames(source: Path | bytes, *, container: str, name: str, sample: Callable[[int], list[int]],
                  prep: Callable[[np.ndarray], np.ndarray], max_frame_pixels: int = 4096 * 4096,
                  max_frames: int = 1_000_000, max_bytes: int = 1 << 30, allow_truncated: bool = False,
                  method: str | None = None) -> Decoded:
    """Decode the frames ``sample(n)`` picks from a clip of ``n`` frames.

    Args:
        source: A local file (already checked) or the clip's bytes.
        container: The sniffed container (a key of :data:`FFMPEG_FORMATS`).
        name: How messages name the clip.
        sample: Given the frame count, the frame indices to return.
        prep: Applied to each kept frame (``uint8`` RGB ``(H, W, 3)``): crop and resize.
        max_frame_pixels: Refuse larger frames.
        max_frames: Refuse clips declaring (or holding) more frames.
        max_bytes: Budget for the kept frames at native size.
        allow_truncated: Use what is there when a clip holds fewer frames than it declares.
        method: Force ``"index"`` or ``"sequential"`` (tests and benchmarks); default: the fastest that holds.

    Returns:
        A :class:`Decoded`; ``errors`` lists FFmpeg's error messages (the caller decides).

    Raises:
        EmptyMedia: No video stream or no frames.
        MediaTooLarge: A limit is exceeded (before anything is decoded).
        TruncatedMedia: The container cannot be opened, holds fewer frames than it declares, or a
            frame cannot be decoded.

    Example:
        >>> d = decode_frames(b"...", container="mp4", name="clip", sample=lambda n: [0],
        ...                   prep=lambda a: a)  # doctest: +SKIP
    """
    if av.logging.get_level() is None or av.logging.get_level() > _LOG_ERRORS:
        av.logging.set_level(_LOG_ERRORS)  # damaged streams only show in FFmpeg's error log
    file_size = len(source) if isinstance(source, bytes) else os.stat(source).st_size
    with _LOCK:
        repeated = av.logging.get_skip_repeated()
        av.logging.set_skip_repeated(False)  # the same damage in two clips must be reported twice
        try:
            with av.logging.Capture(local=False) as logs, _open(source, container, name) as box:
                result = _decode(box, file_size, logs, name=name, sample=sample, prep=prep,
                                 max_frame_pixels=max_frame_pixels, max_frames=max_frames, max_bytes=max_bytes,
                                 allow_truncated=allow_truncated, method=method)
        finally:
            av.logging.set_skip_repeated(repeated)
    result.errors = [str(m).strip() for level, _, m in logs if level <= _LOG_ERRORS]
    return result


def _decode(box, file_size: int, logs: list, *, name: str, sample, prep, max_frame_pixels: int, max_frames: int,
            max_bytes: int, allow_truncated: bool, method: str | None) -> Decoded:
    """Open the stream, check limits and counts, then decode by the first method whose checks hold.

    ``logs`` is the running capture of FFmpeg's log: what an abandoned attempt logged is dropped.
    """
    if not box.streams.video:
        raise EmptyMedia(f"{name} has no video stream. Pass a clip with at least one frame.")
    stream = box.streams.video[0]
    cc = stream.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        raise EmptyMedia(f"{name} has no decodable video stream. Pass a clip with at least one frame.")
    if width * height > max_frame_pixels:
        raise MediaTooLarge(
            f"{name} has {width}x{height} frames, over the limit of {max_frame_pixels} pixels. "
            "Downscale the clip or raise ClipSpec.max_frame_pixels."
        )
    declared = int(stream.frames or 0)
    if declared > max_frames:
        raise _too_many(name, declared, max_frames, "declares")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0

    index, at_start = None, True  # at_start: nothing demuxed yet, the first keyframe is next
    if method is None:
        index = _grid_index(stream, declared, file_size, stream.start_time)
    if index is None and method != "sequential":
        index, at_start = _demux_index(box, stream, max_frames, name), False
    present = index.n if index is not None else None

    reader = _Reader(box, stream, prep, name)
    n = declared
    if present is not None:
        if present == 0:
            raise EmptyMedia(f"{name} declares {declared} frames but holds none. The file is damaged.")
        if declared > present and not allow_truncated:
            raise TruncatedMedia(
                f"{name} declares {declared} frames but only {present} are present: it is truncated or partly "
                "damaged. Re-export the clip, or pass ClipSpec(allow_truncated=True) to use the frames that are."
            )
        n = declared if 0 < declared <= present else present
        wanted = sample(n)
        _check_budget(name, wanted, width, height, max_bytes)
        indexes = [index]
        while indexes:
            idx = indexes.pop(0)
            mark, at_start = len(logs), at_start and idx is index
            try:
                frames = _seek_decode(reader, idx, wanted, at_start=at_start)
            except _Fallback:
                del logs[mark:]
                if idx.method == "grid":
                    box.seek(0, stream=stream, backward=True, any_frame=False)
                    exact = _demux_index(box, stream, max_frames, name)
                    if exact is not None and exact.n == present:
                        indexes.append(exact)
                continue
            if any(entry[0] <= _LOG_ERRORS for entry in logs[mark:]):
                # A seek into an open GOP can log reference errors that a decode from the start does not:
                # the sequential decode below decides whether the clip is damaged.
                del logs[mark:]
                break
            return _result(frames, wanted, n, declared, fps, width, height, stream, idx.method, reader)
    if n > 0:  # sequential: decode from the start and count
        wanted = sample(n)
        _check_budget(name, wanted, width, height, max_bytes)
        frames, count = _sequential(reader, wanted, stop_after=True)
        if all(i in frames for i in wanted):
            return _result(frames, wanted, n, declared, fps, width, height, stream, "sequential", reader)
    # frame count unknown, or fewer frames decode than expected: count them all, then read the sample
    _, count = _sequential(reader, [], stop_after=False)
    if count == 0:
        raise EmptyMedia(f"{name} contains no decodable frames. Pass a clip with at least one frame.")
    if n > 0 and count < n and not allow_truncated:
        raise TruncatedMedia(
            f"{name} declares {n} frames but only {count} decode: it is truncated or partly damaged. Re-export "
            "the clip, or pass ClipSpec(allow_truncated=True) to use the frames that decode."
        )
    if count > max_frames:
        raise _too_many(name, count, max_frames, "decodes to")
    wanted = sample(count)
    _check_budget(name, wanted, width, height, max_bytes)
    frames, _ = _sequential(reader, wanted, stop_after=True)
    return _result(frames, wanted, count, declared, fps, width, height, stream, "sequential", reader)


def _check_budget(name: str, wanted: list[int], width: int, height: int, max_bytes: int) -> None:
    keep = len(set(wanted))
    need = keep * width * height * 3
    if need > max_bytes:
        raise MediaTooLarge(
            f"{name}: decoding {keep} frames of {width}x{height} needs {need / 2**20:.0f} MiB, over the "
            f"budget of {max_bytes / 2**20:.0f} MiB. Sample fewer frames or raise ClipSpec.max_bytes."
        )


def _result(frames, wanted, n, declared, fps, width, height, stream, method, reader) -> Decoded:
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise TruncatedMedia(f"{reader.name}: frames {missing[:5]} could not be decoded. The clip is damaged; "
                             "re-export it.")
    if reader.turn % 2:
        width, height = height, width  # shown turned a quarter: report the frames as they are returned
    array = reader.out if reader.out is not None else np.zeros((0, 0, 0, 3), np.uint8)
    return Decoded(array=array, frames={i: array[rows[0]] for i, rows in reader.rows.items()},
                   indices=list(wanted), frame_count=n, declared=declared, fps=fps, width=width,
                   height=height, codec=_codec_tag(stream), method=method, decoded=reader.decoded)
