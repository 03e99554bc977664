"""Checks a clip source must pass before it is decoded.

Unsafe sources (URLs, stream schemes, playlists) are refused before any
decoder sees them; only recognised video containers are opened (and the
decoder is told which one, so FFmpeg never probes for another); MP4 and AVI
files must be structurally whole and unpadded. FFmpeg's own error log is
collected while decoding (:mod:`dlabel_lab.media.decoding`).
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .video import ClipSpec

from ..errors import EmptyMedia, MediaTooLarge, MissingMedia, TruncatedMedia, UnsafeSource, UnsupportedMedia

MAX_FILE_BYTES = 2 << 30  # the default per-clip limit (ClipSpec.max_file_bytes, the scoring service's uploads)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_PLAYLIST_SUFFIXES = {".m3u", ".m3u8", ".ffconcat", ".concat", ".sdp", ".pls", ".xspf", ".cue", ".mpd"}
_PLAYLIST_MAGIC = (b"#EXTM3U", b"ffconcat", b"[playlist]", b"<?xml", b"v=0\n", b"v=0\r", b"#EXT")


# --- source checks -----------------------------------------------------------
def sniff_container(head: bytes) -> str | None:
    """Name the video container in the first bytes of a file, or ``None``.

    Only containers that the decoder (FFmpeg, through PyAV) reads as local files are
    recognised; anything else (images, documents, playlists) returns ``None``.

    Example:
        >>> sniff_container(b"RIFF\\x00\\x00\\x00\\x00AVI LIST")
        'avi'
    """
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "mkv"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "asf"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpeg-ts"
    return None


def _check_head(head: bytes, name: str, suffix: str) -> str:
    if not head:
        raise EmptyMedia(f"{name} is empty (0 bytes). Pass a non-empty video file.")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix.lower() in _PLAYLIST_SUFFIXES or stripped.startswith(_PLAYLIST_MAGIC):
        raise UnsafeSource(
            f"{name} is a playlist or stream description; a decoder would follow it to the network "
            "or to other files. Pass the video file itself."
        )
    container = sniff_container(head)
    if container is None:
        kind = _describe(head)
        raise UnsupportedMedia(
            f"{name} is not a video file ({kind}). Pass an mp4, avi, mkv, webm, ogg, flv or "
            "MPEG file."
        )
    return container


def _describe(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "it looks like a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "it looks like a JPEG image"
    if head.startswith(b"%PDF"):
        return "it looks like a PDF document"
    if head.startswith(b"GIF8"):
        return "it looks like a GIF image"
    try:
        head.decode("utf-8")
        return "it looks like text"
    except UnicodeDecodeError:
        return "its first bytes match no known video container"


def _check_path(source: str | os.PathLike) -> Path:
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    if _SCHEME.match(text) or text.startswith("//") or "://" in text:
        raise UnsafeSource(
            f"{text!r} is a URL or stream address; dlabel_lab reads local files only "
            "(no network access). Download the clip first and pass its path."
        )
    path = Path(text).expanduser()
    if path.suffix.lower() in _PLAYLIST_SUFFIXES:
        raise UnsafeSource(
            f"{text!r} is a playlist; a decoder would follow it to other files or the network. "
            "Pass the video file itself."
        )
    if not path.exists():
        raise MissingMedia(f"{text!r} does not exist. Check the path (relative paths start at {os.getcwd()}).")
    if path.is_dir():
        raise UnsupportedMedia(f"{text!r} is a directory, not a video file. Pass one clip file.")
    if not path.is_file():
        raise UnsupportedMedia(f"{text!r} is not a regular file. Pass a video file.")
    return path.resolve()


# --- container integrity ------------------------------------------------------
def container_problem(data: bytes, container: str) -> str | None:
    """Say what is structurally wrong with a container, or ``None``.

    MP4 boxes and AVI RIFF chunks must tile the file exactly: a file cut
    short, or with a damaged box header, does not. Other containers are not
    checked here (their decoding errors are still caught).

    Example:
        >>> container_problem(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00", "mp4")
        "the file has no 'moov' box (the index of frames)"
    """
    n = len(data)
    if container == "mp4":
        i, seen = 0, set()
        while i < n:
            if n - i < 8:
                return f"{n - i} stray bytes after the last box"
            size, kind = struct.unpack(">I4s", data[i : i + 8])
            if size == 1:
                if n - i < 16:
                    return "a box header is cut off"
                size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            elif size == 0:
                size = n - i
            if size < 8 or i + size > n:
                return f"box {kind!r} at byte {i} claims {size} bytes but the file ends at {n}"
            if not all(32 <= c < 127 for c in kind):
                return f"box type {kind!r} at byte {i} is not valid"
            seen.add(kind)
            i += size
        if b"moov" not in seen:
            return "the file has no 'moov' box (the index of frames)"
        return None
    if container == "avi":
        i = 0
        while i < n:
            if n - i < 12:
                return f"{n - i} stray bytes after the last RIFF chunk"
            tag, size, form = struct.unpack("<4sI4s", data[i : i + 12])
            if tag != b"RIFF" or form not in (b"AVI ", b"AVIX"):
                return f"chunk at byte {i} is not a RIFF AVI chunk"
            end = i + 8 + size
            if end > n:
                return f"RIFF chunk at byte {i} claims {size} bytes but the file ends at {n}"
            problem = _riff_children(data, i + 12, end, in_movi=False)
            if problem:
                return problem
            i = end + (size & 1)
        return None
    return None


def container_padding(data, container: str) -> int:
    """Bytes of top-level padding: MP4 ``free``/``skip`` boxes, AVI ``JUNK`` chunks inside a RIFF list.

    Only headers are read, so ``data`` can be an ``mmap`` of a file of any size.
    A structure that does not parse counts what was found before the damage
    (:func:`container_problem` reports the damage itself).

    Example:
        >>> container_padding(b"\x00\x00\x00\x10free" + bytes(8), "mp4")
        16
    """
    n, i, padding = len(data), 0, 0
    if container == "mp4":
        while n - i >= 8:
            size, kind = struct.unpack(">I4s", data[i : i + 8])
            if size == 1 and n - i >= 16:
                size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            elif size == 0:
                size = n - i
            if size < 8:
                break
            if kind in (b"free", b"skip"):
                padding += min(size, n - i)
            i += size
    elif container == "avi":
        while n - i >= 12:
            size = struct.unpack("<I", data[i + 4 : i + 8])[0]
            j, end = i + 12, min(n, i + 8 + size)
            while end - j >= 8:
                cid, csize = struct.unpack("<4sI", data[j : j + 8])
                if cid == b"JUNK":
                    padding += min(8 + csize, end - j)
                j += 8 + csize + (csize & 1)
            i += 8 + size + (size & 1)
    return padding


_MOVI_ID = re.compile(rb"^(\d\d(dc|db|wb|pc|tx)|ix\d\d|JUNK|LIST|rec )$")


def _riff_children(data: bytes, i: int, end: int, *, in_movi: bool) -> str | None:
    """Walk RIFF sub-chunks in ``data[i:end]``; MJPG frames must be whole JPEGs."""
    while i + 8 <= end:
        cid, size = struct.unpack("<4sI", data[i : i + 8])
        body_end = i + 8 + size
        if body_end > end:
            return f"chunk {cid!r} at byte {i} claims {size} bytes past the end of its list"
        if in_movi and not _MOVI_ID.match(cid):
            return f"chunk id {cid!r} at byte {i} is not a valid stream chunk"
        if cid == b"LIST":
            if size < 4:
                return f"LIST at byte {i} is too short"
            problem = _riff_children(data, i + 12, body_end, in_movi=data[i + 8 : i + 12] == b"movi")
            if problem:
                return problem
        elif in_movi and cid[2:] == b"dc" and size >= 2 and data[i + 8 : i + 10] == b"\xff\xd8":
            tail = data[max(i + 8, body_end - 4) : body_end]
            if b"\xff\xd9" not in tail:
                return f"JPEG frame at byte {i} has no end marker"
        elif in_movi and cid[2:] == b"dc" and size >= 2 and b"MJPG" in data[:512]:
            return f"frame chunk at byte {i} does not start with a JPEG marker"
        i = body_end + (size & 1)
    return None


def _check_structure(data, container: str, name: str, spec) -> None:
    """Refuse damaged containers and padded ones; ``data`` is bytes, a memoryview or an mmap."""
    padding = container_padding(data, container)
    if padding > spec.max_padding_bytes:
        raise MediaTooLarge(
            f"{name} carries {padding / 2**20:.1f} MiB of padding ('free'/'skip' boxes or 'JUNK' chunks), over "
            f"the limit of {spec.max_padding_bytes / 2**20:.0f} MiB; nothing was stored. Re-mux the clip without "
            "padding (e.g. `ffmpeg -i in.mp4 -c copy out.mp4`) or raise ClipSpec.max_padding_bytes."
        )
    problem = container_problem(data, container)
    if problem and not spec.allow_truncated:
        raise TruncatedMedia(
            f"{name} is a damaged or truncated {container} file: {problem}. Re-export or re-copy the clip, "
            "or pass ClipSpec(allow_truncated=True) to use the frames that decode."
        )


# --- whole-file checks and in-memory clips --------------------------------------
def check_container_file(path: Path, spec: ClipSpec, *, name: str, suffix: str = "") -> str:
    """Check a clip file without decoding it: size limit, container type, structure and padding.

    Reads the first 512 bytes and the container's box or chunk headers only
    (through an ``mmap``), so it costs microseconds on a file of any size.

    Returns:
        The container name (``"mp4"``, ``"avi"``, ...).

    Raises:
        MediaTooLarge: The file or its padding exceeds the spec's limits.
        EmptyMedia, UnsupportedMedia, UnsafeSource, TruncatedMedia: As :func:`read_clip`.

    Example:
        >>> check_container_file(Path("clip.mp4"), ClipSpec(), name="'clip.mp4'")  # doctest: +SKIP
        'mp4'
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        check_file_size(size, spec, name)
        head = fh.read(512)
        container = _check_head(head, name, suffix)
        if container in ("mp4", "avi") and size:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                _check_structure(view, container, name, spec)
    return container


def check_file_size(size: int, spec: ClipSpec, name: str) -> None:
    """Refuse a clip larger than ``spec.max_file_bytes`` before it is read.

    Raises:
        MediaTooLarge: ``size`` exceeds the limit; the message names it and how to raise it.

    Example:
        >>> check_file_size(10, ClipSpec(), "clip.mp4")
    """
    if size > spec.max_file_bytes:
        raise MediaTooLarge(
            f"{name} is {size / 2**20:.1f} MiB, over the limit of {spec.max_file_bytes / 2**20:.0f} MiB per clip; "
            "nothing was read. Cut the clip, or raise ClipSpec.max_file_bytes if clips this large are expected."
        )
