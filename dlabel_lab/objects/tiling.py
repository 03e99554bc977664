"""Tiled detection for small objects: detect on overlapping tiles and the full frame, then merge.

A detector that works at a fixed input size shrinks a large frame before it looks at it, so objects
of a few pixels vanish. :func:`detect_tiled` cuts each frame into overlapping tiles
(:func:`tile_grid`), runs the detector on every tile (at its own input size, so each tile is seen
closer to native resolution) and, by default, once on the whole frame for the large objects, maps
the tile boxes back to frame coordinates and merges the duplicates that tile overlaps and tile
borders create. This is slicing-aided inference as SAHI (Akyon et al. 2022) does it.

torchvision does the heavy lifting: :func:`torchvision.ops.batched_nms` for ``merge="nms"``; the greedy merge
(SAHI's GREEDYNMM with its intersection-over-smaller match) is a short loop here. SAHI itself is not used: it
wraps its own detector classes and image loading, whereas this module takes any object with the
``detect(frames)`` method of :class:`~dlabel_lab.models.detection.ObjectDetector` (or a plain
callable on a list of float images) and returns the same per-frame dicts.

Example:
    >>> tile_grid(100, 200, tile=(100, 120), overlap=0.2)
    [(0, 0, 120, 100), (80, 0, 200, 100)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms

from ..errors import ConfigError
from ..media.video import image_tensors

__all__ = ["random_crop", "tile_grid", "detect_tiled", "merge_detections", "MERGES"]

#: The merge methods :func:`detect_tiled` accepts.
MERGES = ("nms", "greedy")


def tile_grid(height: int, width: int, *, tile: tuple[int, int] = (360, 640), overlap: float = 0.2) -> list:
    """Tiles that cover a ``height`` x ``width`` frame, row by row, as ``(x0, y0, x1, y1)`` (``x1`` exclusive).

    Along each side the fewest tiles are used whose neighbours overlap by at least
    ``ceil(overlap * side)`` pixels; they are spread evenly from one border to the other, so the
    first row and column start at 0 and the last ones end flush with the frame (neighbours differ in
    overlap by at most one pixel). A tile side longer than the frame is cut to the frame.

    Args:
        height: Frame height in pixels.
        width: Frame width in pixels.
        tile: ``(height, width)`` of a tile in pixels.
        overlap: Least overlap of neighbouring tiles, as a share of the tile side, in ``[0, 1)``.

    Returns:
        A list of ``(x0, y0, x1, y1)`` int tuples, top-left first, then along the row.

    Raises:
        ConfigError: A size that is not a positive int, or ``overlap`` outside ``[0, 1)``.

    Example:
        >>> tile_grid(720, 1280, tile=(400, 712), overlap=0.2)
        [(0, 0, 712, 400), (568, 0, 1280, 400), (0, 320, 712, 720), (568, 320, 1280, 720)]
    """
    height, width = _positive_int(height, "height"), _positive_int(width, "width")
    th, tw = _check_tile(tile)
    overlap = _check_overlap(overlap)
    rows = _starts(height, min(th, height), overlap)
    cols = _starts(width, min(tw, width), overlap)
    th, tw = min(th, height), min(tw, width)
    return [(x, y, x + tw, y + th) for y in rows for x in cols]


def random_crop(image, target: dict, size: tuple[int, int], rng) -> tuple:
    """A ``size`` crop of a frame at a random place, with the boxes at least half inside it, clipped.

    For slicing-aided training (SAHI): a detector that also learns from tile-sized crops sees
    objects at the scale :func:`detect_tiled` shows them.

    Args:
        image: A ``(3, H, W)`` tensor or an ``(H, W, 3)`` array.
        target: ``{"boxes": (n, 4) xyxy tensor, "labels": (n,) tensor, ...}``.
        size: ``(height, width)`` of the crop, at most the frame's.
        rng: A ``numpy.random.Generator``.

    Returns:
        ``(crop, target)`` with the kept boxes shifted into the crop and clipped to it.

    Example:
        >>> import numpy as np, torch
        >>> crop, t = random_crop(torch.zeros(3, 40, 60), {"boxes": torch.tensor([[0.0, 0, 10, 10]]),
        ...                       "labels": torch.tensor([1])}, (40, 60), np.random.default_rng(0))
        >>> tuple(crop.shape), t["boxes"].tolist()
        ((3, 40, 60), [[0.0, 0.0, 10.0, 10.0]])
    """
    channels_first = isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] in (1, 3)
    H, W = (image.shape[1], image.shape[2]) if channels_first else (image.shape[0], image.shape[1])
    h, w = size
    if not (0 < h <= H and 0 < w <= W):
        raise ConfigError(f"crop size {size} must fit the {H}x{W} frame")
    y0 = int(rng.integers(0, H - h + 1))
    x0 = int(rng.integers(0, W - w + 1))
    boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
    boxes = boxes - torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, h)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    keep = (area(clipped) >= 0.5 * area(boxes)) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    crop = image[:, y0 : y0 + h, x0 : x0 + w] if channels_first else image[y0 : y0 + h, x0 : x0 + w]
    out = {k: v for k, v in target.items() if k not in ("boxes", "labels")}
    out.update(boxes=clipped[keep], labels=torch.as_tensor(target["labels"])[keep])
    return crop, out


def _starts(length: int, side: int, overlap: float) -> list[int]:
    if side >= length:
        return [0]
    stride = side - math.ceil(overlap * side - 1e-9)  # the largest step that keeps the overlap asked for
    stride = max(stride, 1)
    n = math.ceil((length - side) / stride) + 1
    return [((length - side) * i) // (n - 1) for i in range(n)]


def detect_tiled(
    detector,
    frames,
    *,
    tile: tuple[int, int] = (360, 640),
    overlap: float = 0.2,
    full_frame: bool = True,
    iou: float = 0.5,
    merge: str = "nms",
    batch_size: int = 16,
) -> tuple[list[dict[str, torch.Tensor]], dict]:
    """Detect objects on overlapping tiles (and the full frame), in frame coordinates, duplicates merged.

    Every frame is cut by :func:`tile_grid`; the tiles of all frames go to the detector in batches
    of ``batch_size``, then (``full_frame=True``) the whole frames. Tile boxes are shifted by their
    tile's corner. Duplicates are merged per frame and class:

    - ``"nms"``: :func:`torchvision.ops.batched_nms` keeps the best-scored box of every group whose
      IoU exceeds ``iou``.
    - ``"greedy"``: greedy non-maximum merging (SAHI's GREEDYNMM): from the best score down, a box
      absorbs the remaining boxes of its class whose IoU *or* intersection over the smaller box
      with it exceeds ``iou``, growing into their union (later boxes are compared with the union,
      so the sliver a third tile sees joins too); the merged box keeps the best score. The part of an object
      that a tile border cut off is then joined to the rest, and a partial box inside a whole one
      disappears into it.

    Args:
        detector: An object with ``detect(frames)`` (an
            :class:`~dlabel_lab.models.detection.ObjectDetector`) or a callable taking a list of
            float ``(3, h, w)`` images; either returns one ``{"boxes", "labels", "scores"}`` dict
            per image, boxes ``xyxy`` in the image's pixels.
        frames: ``uint8`` RGB ``(H, W, 3)`` or ``(T, H, W, 3)`` arrays, float tensors
            ``(3, H, W)``/``(T, 3, H, W)`` in ``[0, 1]``, or a list of either; all of one size.
        tile: ``(height, width)`` of a tile in pixels; use the detector's input size, so tiles are
            seen at native resolution.
        overlap: Least overlap of neighbouring tiles, a share of the tile side in ``[0, 1)``.
        full_frame: Also detect on the whole frame (finds objects larger than a tile).
        iou: Merge threshold in ``(0, 1]``.
        merge: ``"nms"`` (the default: on ``bench/tiling.py`` it scored higher than greedy merging,
            whose unions of low-score boxes swallow neighbours) or ``"greedy"``.
        batch_size: Images per detector call.

    Returns:
        ``(detections, record)``: one dict per frame with CPU tensors ``boxes`` float ``(n, 4)``
        xyxy in frame pixels, ``labels`` int64 ``(n,)`` and ``scores`` float ``(n,)``, best score
        first; and ``{"tile": [h, w], "overlap", "full_frame", "merge", "iou", "n_tiles"}`` (tiles
        per frame) for the record of the payload the detections are stored with.

    Raises:
        ConfigError: A bad argument, frames of different sizes or a detector output that is not
            one box dict per image.

    Example:
        >>> dets, record = detect_tiled(model, clip.frames, tile=(360, 640))  # doctest: +SKIP
        >>> record["n_tiles"]  # doctest: +SKIP
        9
    """
    fn = _detector_fn(detector)
    th, tw = _check_tile(tile)
    overlap = _check_overlap(overlap)
    if not isinstance(full_frame, (bool, np.bool_)):
        raise ConfigError(f"full_frame must be True or False, got {full_frame!r}")
    iou = _check_iou(iou)
    if merge not in MERGES:
        raise ConfigError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
    batch_size = _positive_int(batch_size, "batch_size")
    images = image_tensors(frames)
    sizes = {tuple(im.shape[-2:]) for im in images}
    if len(sizes) > 1:
        raise ConfigError(f"frames must all have one size (one clip per call), got sizes {sorted(sizes)}")
    height, width = sizes.pop() if sizes else (th, tw)
    grid = tile_grid(height, width, tile=(th, tw), overlap=overlap)
    record = {
        "tile": [th, tw],
        "overlap": float(overlap),
        "full_frame": bool(full_frame),
        "merge": merge,
        "iou": float(iou),
        "n_tiles": len(grid),
    }
    if not images:
        return [], record
    crops = [im[:, y0:y1, x0:x1] for im in images for (x0, y0, x1, y1) in grid]
    tiles = _run(fn, crops, batch_size)
    whole = _run(fn, images, batch_size) if full_frame else [None] * len(images)
    out = []
    for f in range(len(images)):
        parts = []
        for k, (x0, y0, _, _) in enumerate(grid):
            d = tiles[f * len(grid) + k]
            parts.append((d[0] + torch.tensor([x0, y0, x0, y0], dtype=torch.float32), d[1], d[2]))
        if whole[f] is not None:
            parts.append(whole[f])
        boxes, labels, scores = (torch.cat([p[i] for p in parts]) for i in range(3))
        out.append(_merge(boxes, labels, scores, merge, iou))
    return out, record


def merge_detections(detections: dict, *, iou: float = 0.5, merge: str = "nms") -> dict[str, torch.Tensor]:
    """Merge duplicate boxes of one frame as :func:`detect_tiled` does (per class, NMS or greedy union).

    Args:
        detections: ``{"boxes": (n, 4) xyxy, "labels": (n,), "scores": (n,)}`` (tensors or arrays).
        iou: Merge threshold in ``(0, 1]``.
        merge: ``"nms"`` or ``"greedy"``.

    Returns:
        The merged ``{"boxes", "labels", "scores"}``, best score first.

    Example:
        >>> d = {"boxes": [[60.0, 0, 100, 10], [70, 0, 110, 10]], "labels": [1, 1], "scores": [0.9, 0.8]}
        >>> merge_detections(d, merge="greedy")["boxes"].tolist()
        [[60.0, 0.0, 110.0, 10.0]]
    """
    iou = _check_iou(iou)
    if merge not in MERGES:
        raise ConfigError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
    return _merge(*_as_triple(detections, "detections"), merge, iou)


# --- private helpers ---------------------------------------------------------------------------
def _merge(boxes, labels, scores, merge: str, iou: float) -> dict[str, torch.Tensor]:
    if len(boxes) == 0:
        return {"boxes": boxes.reshape(0, 4), "labels": labels, "scores": scores}
    if merge == "nms":
        keep = batched_nms(boxes, scores, labels, iou)
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, labels, scores = boxes[order], labels[order], scores[order]
    free = torch.ones(len(boxes), dtype=torch.bool)
    merged, keep = [], []
    for i in range(len(boxes)):  # best score first; box i grows by the free boxes close to it, until none is
        if not free[i]:
            continue
        free[i] = False
        union = boxes[i]
        while True:
            cand = torch.nonzero(free & (labels == labels[i])).flatten()
            if len(cand) == 0:
                break
            hit = cand[_close(union, boxes[cand], iou)]
            if len(hit) == 0:
                break
            free[hit] = False
            members = torch.cat([union[None], boxes[hit]])
            union = torch.cat([members[:, :2].min(dim=0).values, members[:, 2:].max(dim=0).values])
        merged.append(union)
        keep.append(i)
    idx = torch.tensor(keep, dtype=torch.long)
    return {"boxes": torch.stack(merged), "labels": labels[idx], "scores": scores[idx]}


def _close(box: torch.Tensor, others: torch.Tensor, iou: float) -> torch.Tensor:
    """Whether the IoU or the intersection over the smaller box of ``box`` and each of ``others`` exceeds ``iou``."""
    lt = torch.maximum(box[:2], others[:, :2])
    rb = torch.minimum(box[2:], others[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    areas = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=1)
    union = area + areas - inter
    smaller = torch.minimum(area, areas)
    over_union = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    over_smaller = torch.where(smaller > 0, inter / smaller.clamp(min=1e-12), torch.zeros_like(inter))
    return (over_union > iou) | (over_smaller > iou)


def _run(fn: Callable, images: list, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        dets = fn(chunk)
        if not isinstance(dets, Sequence) or len(dets) != len(chunk):
            got = len(dets) if isinstance(dets, Sequence) else type(dets).__name__
            raise ConfigError(f"the detector returned {got} results for {len(chunk)} images; it must return one each")
        out += [_as_triple(d, "a detector result") for d in dets]
    return out


def _as_triple(d, where: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not hasattr(d, "__getitem__") or any(k not in d for k in ("boxes", "labels", "scores")):
        raise ConfigError(f"{where} must be a dict with boxes, labels and scores")
    boxes = torch.as_tensor(np.asarray(d["boxes"], np.float32) if not torch.is_tensor(d["boxes"]) else d["boxes"])
    boxes = boxes.detach().cpu().float().reshape(-1, 4)
    labels = torch.as_tensor(d["labels"]).detach().cpu().reshape(-1).long()
    scores = torch.as_tensor(d["scores"]).detach().cpu().reshape(-1).float()
    if not len(boxes) == len(labels) == len(scores):
        raise ConfigError(
            f"{where} has {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores; need one of each per box"
        )
    return boxes, labels, scores


def _detector_fn(detector) -> Callable:
    fn = getattr(detector, "detect", None)
    if callable(fn):
        return fn
    if callable(detector):
        return detector
    raise ConfigError(
        f"detector must have a detect(frames) method (an ObjectDetector) or be callable, got {type(detector).__name__}"
    )


def _positive_int(v, name: str) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def _check_tile(tile) -> tuple[int, int]:
    ok = (
        isinstance(tile, (tuple, list))
        and len(tile) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in tile)
    )
    if not ok:
        raise ConfigError(f"tile must be (height, width) positive ints, e.g. the detector's input size, got {tile!r}")
    return int(tile[0]), int(tile[1])


def _check_overlap(overlap) -> float:
    if not (isinstance(overlap, (int, float, np.floating)) and not isinstance(overlap, bool) and 0 <= overlap < 1):
        raise ConfigError(f"overlap is a share of the tile side in [0, 1), e.g. 0.2; got {overlap!r}")
    return float(overlap)


def _check_iou(iou) -> float:
    if not (isinstance(iou, (int, float, np.floating)) and not isinstance(iou, bool) and 0 < iou <= 1):
        raise ConfigError(f"iou must be a threshold in (0, 1], e.g. 0.5; got {iou!r}")
    return float(iou)
