"""Annotated clip frames as a torch dataset: native-resolution frames with their COCO boxes.

:func:`frames_dataset` reads an ``annotations.json`` (validated by
:func:`~dlabel_lab.read_object_annotations`) and decodes each clip's annotated frames at once with
:func:`~dlabel_lab.read_clip` and an explicit ``ClipSpec(indices=...)``. Items are what torchvision's
detection models take: a float image ``(3, H, W)`` in ``[0, 1]`` and ``{"boxes", "labels"}``.

Example:
    >>> ds = frames_dataset("clips/objects/annotations.json")  # doctest: +SKIP
    >>> loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate_detections)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..media.objects import MAX_ANNOTATION_BYTES, ObjectAnnotations, read_object_annotations
from ..media.video import ClipSpec, read_clip

__all__ = ["FrameDataset", "frames_dataset", "collate_detections"]


class FrameDataset(Dataset):
    """Annotated clip frames: items ``(image (3, H, W) float in [0, 1], target)``; see :func:`frames_dataset`.

    ``target`` is ``{"boxes": float32 (n, 4) xyxy, "labels": int64 (n,), "image_id": int}``. Frames
    are decoded at native resolution, per clip (all its annotated frames at once, with explicit
    ``ClipSpec(indices=...)``), and the last ``cache_clips`` clips are kept in memory.
    """

    def __init__(self, annotations: ObjectAnnotations, image_ids: Sequence[int], cache_clips: int) -> None:
        self.annotations = annotations
        self.image_ids = list(image_ids)
        self.cache_clips = cache_clips
        self._images = {im["id"]: im for im in annotations.images}
        self._by_clip: dict[str, list[int]] = {}
        for im in annotations.images:
            self._by_clip.setdefault(im["path"], []).append(im["frame_index"])
        self._cache: OrderedDict[str, dict[int, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        image_id = self.image_ids[i]
        im = self._images[image_id]
        frame = self._frames(im)[im["frame_index"]]
        target = {
            "boxes": torch.from_numpy(self.annotations.boxes[image_id].copy()),
            "labels": torch.from_numpy(self.annotations.labels[image_id].copy()),
            "image_id": image_id,
        }
        return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255), target

    def _frames(self, im: dict) -> dict[int, np.ndarray]:
        path = im["path"]
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        indices = tuple(sorted(set(self._by_clip[path])))
        clip = read_clip(path, ClipSpec(frames=None, size=(im["height"], im["width"]), indices=indices))
        if (clip.height, clip.width) != (im["height"], im["width"]):
            raise ConfigError(
                f"{self.annotations.path}: {path} is {clip.width}x{clip.height} but its images say "
                f"{im['width']}x{im['height']}; the boxes would not fit the frames. Fix width/height."
            )
        self._cache[path] = dict(zip(clip.indices, clip.frames, strict=True))
        while len(self._cache) > self.cache_clips:
            self._cache.popitem(last=False)
        return self._cache[path]


def frames_dataset(
    annotations: str | os.PathLike | ObjectAnnotations,
    *,
    image_ids: Iterable[int] | None = None,
    cache_clips: int = 16,
    max_bytes: int = MAX_ANNOTATION_BYTES,
) -> FrameDataset:
    """A dataset of annotated clip frames and their boxes, read from a COCO ``annotations.json``.

    Args:
        annotations: The file (or its folder), e.g. from :func:`~dlabel_lab.make_object_clips`, or
            :class:`~dlabel_lab.media.objects.ObjectAnnotations` already read.
        image_ids: Keep only these images (a split); default all, ordered by clip then frame.
        cache_clips: Decoded clips kept in memory.
        max_bytes: Largest annotations file read (checked before reading).

    Returns:
        A :class:`FrameDataset`; use ``collate_fn=collate_detections`` in its ``DataLoader``.

    Raises:
        ConfigError: A bad annotations file, an unknown image id or a clip whose size disagrees.

    Example:
        >>> ds = frames_dataset("clips/objects/annotations.json")  # doctest: +SKIP
        >>> image, target = ds[0]  # doctest: +SKIP
    """
    ann = (
        annotations
        if isinstance(annotations, ObjectAnnotations)
        else read_object_annotations(annotations, max_bytes=max_bytes)
    )
    if not isinstance(cache_clips, int) or cache_clips < 1:
        raise ConfigError(f"cache_clips must be a positive int, got {cache_clips!r}")
    known = [im["id"] for im in ann.images]
    if image_ids is None:
        ids = known
    else:
        ids = list(image_ids)
        unknown = sorted(set(ids) - set(known))
        if unknown:
            raise ConfigError(f"image ids {unknown[:5]} are not in {ann.path}")
    return FrameDataset(ann, ids, cache_clips)


def collate_detections(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """``DataLoader`` collate function: ``(list of images, list of targets)``.

    Example:
        >>> loader = DataLoader(ds, batch_size=8, collate_fn=collate_detections)  # doctest: +SKIP
    """
    return [b[0] for b in batch], [b[1] for b in batch]
