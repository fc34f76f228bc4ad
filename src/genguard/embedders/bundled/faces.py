"""Face finding and alignment for the bundled backbone.

Faces are found by MediaPipe's BlazeFace full-range detector (Apache-2.0), converted
to ONNX by ``tools/convert_blazeface.py`` and shipped inside genguard
(``models/blazeface_full_range.onnx``, sha256 checked at load). The network is
fully convolutional (one anchor per 4 px cell of its input), so one file runs at
any input size that is a multiple of 32. Each frame is searched in two views, and
every view of a batch runs in one model call per input size:

- **whole**: the frame centred on a canvas twice its longer side, at 192 px: the
  model was trained on faces that do not fill the view (faces filling the frame,
  like UTKFace's crops, are found 8% of the time without the canvas, 100% with it);
- **detail**: the frame at half its longer side (at most :data:`DETAIL_MAX` px,
  and at least 192): faces down to about 30 px in a 1024 px frame.

Candidates above :data:`CANDIDATE` are merged (weighted non-maximum suppression).
Those under :data:`ACCEPT` are checked again on a 192 px view zoomed on them
(three times the box): kept when that view scores them at least
:data:`CONFIRM` (:data:`STRONG_CONFIRM` for a candidate of at least :data:`STRONG`),
with the zoomed view's finer box. On generated scenes and benign
photos this keeps 0.98 of faces found while removing nearly every false face
(``benchmarks/faces.py``).

:func:`face_chip` aligns a found face for the age network: dlib's 5-point
landmarks, then dlib's chip extraction, the geometry the age network was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from genguard._types import Box, FloatArray, RGBArray
from genguard.embedders.bundled.boxes import Candidate, clip_box, iou, iou_xyxy, weighted_nms
from genguard.embedders.bundled.proposals import PROPOSAL_CONFIRM, PROPOSAL_ZOOM, SUPPORT, Proposal
from genguard.embedders.bundled.resizing import resize

__all__ = ["ACCEPT", "CANDIDATE", "CONFIRM", "DETAIL_MAX", "STRONG", "STRONG_CONFIRM", "FaceFinder", "FoundFace", "Search", "clip_box", "face_chip", "iou"]

CANDIDATE: Final = 0.3
"""Detector score from which a box is a candidate face."""
ACCEPT: Final = 0.75
"""Detector score from which a candidate is kept without the zoomed check."""
CONFIRM: Final = 0.6
"""Score the zoomed view must give a candidate under :data:`ACCEPT` to keep it."""
STRONG: Final = 0.65
"""Detector score from which a candidate needs only :data:`STRONG_CONFIRM` on the zoomed view."""
STRONG_CONFIRM: Final = 0.4
"""Zoomed-view score that keeps a candidate of at least :data:`STRONG` (chosen on a tuning set of scenes
and people-free images other than the reported ones: more faces found, no more false ones)."""
DETAIL_MAX: Final = 512
"""Largest input side of the detail view (a 1024 px frame is searched at half size)."""

_BASE: Final = 192  # the model's native input side
_WHOLE_CANVAS: Final = 2.0  # whole view: canvas side / frame side
_ZOOM: Final = 3.0  # zoomed check: view side / box side
_NMS_IOU: Final = 0.3  # a confirmed proposal is a new face unless a kept face overlaps it more
_MAX_CANDIDATES: Final = 64  # per frame, best first: a pathological frame cannot flood the zoomed check

# dlib's 5-point model was trained on dlib HOG boxes; a BlazeFace box maps onto one by a shift and
# a scale of its side (medians over 281 UTKFace train images with both detections).
_DLIB_SHIFT: Final = (-0.043, -0.033)
_DLIB_SCALE: Final = 0.839
_AGE_CHIP: Final = 64
_AGE_PADDING: Final = 0.2


@dataclass(frozen=True, slots=True)
class FoundFace:
    """One face found in a frame: its box in frame pixels, the detector's score, its six keypoints.

    Keypoints (``[6, 2]``, frame pixels): right eye, left eye, nose tip, mouth, right ear, left ear
    (the subject's right and left).
    """

    box: Box
    score: float
    keypoints: FloatArray


@dataclass(frozen=True, slots=True)
class _View:
    """A square window of a frame: ``side`` frame pixels from ``(x0, y0)``, scaled to ``size`` pixels."""

    frame: int
    x0: float
    y0: float
    side: float
    size: int


@dataclass(frozen=True, slots=True)
class Search:
    """What :meth:`FaceFinder.search` found: per frame its shape, searched copy, scale to it, merged candidates."""

    shapes: list[tuple[int, ...]]
    works: list[RGBArray]
    scales: list[float]
    merged: list[list[Candidate]]


class FaceFinder:
    """BlazeFace full-range over a whole and a detail view of each frame, with a zoomed check.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The converted BlazeFace model (input ``input`` [N, 3, H, W] in [-1, 1]).
    max_side : int, default 1024
        Frames larger than this are searched on a copy shrunk to it (boxes come back in frame pixels).

    Examples
    --------
    >>> finder = FaceFinder(onnx_session("blazeface"))     # doctest: +SKIP
    >>> [f.box for f in finder.find([frame])[0]]           # doctest: +SKIP
    [(412, 188, 530, 306)]
    """

    def __init__(self, session: Any, *, max_side: int = 1024) -> None:
        self.session = session
        self.max_side = max_side
        self._anchors: dict[int, FloatArray] = {}

    def find(self, frames: list[RGBArray], proposals: Sequence[Sequence[Proposal]] | None = None) -> list[list[FoundFace]]:
        """Faces in each frame, best score first; one list per frame, in order.

        ``proposals`` are another detector's face boxes per frame, in frame pixels (NudeNet's:
        :mod:`~genguard.embedders.bundled.proposals` says how they are used). The same as
        ``confirm(search(frames), proposals)``: the search does not need the proposals, so a
        caller may run it while the proposing detector runs.
        """
        return self.confirm(self.search(frames), proposals)

    def search(self, frames: list[RGBArray]) -> Search:
        """The whole and detail views of each frame: merged candidate faces, before any zoomed check."""
        works, scales = [], []
        for frame in frames:
            h, w = frame.shape[:2]
            s = min(1.0, self.max_side / max(h, w))
            works.append(frame if s == 1.0 else resize(frame, max(1, round(w * s)), max(1, round(h * s))))
            scales.append(s)
        views = [v for i, work in enumerate(works) for v in _search_views(i, work.shape[1], work.shape[0])]
        cands: list[list[Candidate]] = [[] for _ in frames]
        for view, found in zip(views, self._detect(works, views, CANDIDATE)):
            cands[view.frame].extend(found)
        merged = [weighted_nms(c)[:_MAX_CANDIDATES] for c in cands]
        return Search([f.shape[:2] for f in frames], works, scales, merged)

    def confirm(self, search: Search, proposals: Sequence[Sequence[Proposal]] | None = None) -> list[list[FoundFace]]:
        """The faces of a :meth:`search`: candidates kept or checked on a zoomed view, and proposals checked."""
        works, scales, merged = search.works, search.scales, search.merged
        if proposals is not None and len(proposals) != len(works):
            raise ValueError(f"{len(works)} frames but {len(proposals)} proposal lists")
        props = [[(np.asarray(b, np.float64) * scales[i], sc) for b, sc in p] for i, p in enumerate(proposals or [[]] * len(works))]
        backed = {  # candidates a proposal of at least SUPPORT overlaps: kept without the zoomed check
            (i, j) for i, faces in enumerate(merged) for j, f in enumerate(faces) if any(sc >= SUPPORT and iou_xyxy(f[0], b) > 0.2 for b, sc in props[i])
        }
        checks = [  # (frame, candidate j >= 0 or proposal -1 - k, view, score needed)
            (i, j, _zoom_view(i, f[0]), CONFIRM if f[1] < STRONG else STRONG_CONFIRM)
            for i, faces in enumerate(merged) for j, f in enumerate(faces) if f[1] < ACCEPT and (i, j) not in backed
        ]
        checks += [(i, -1 - k, _zoom_view(i, b, PROPOSAL_ZOOM), PROPOSAL_CONFIRM) for i, p in enumerate(props) for k, (b, _) in enumerate(p)]
        confirmed = {}
        for (i, j, _, need), found in zip(checks, self._detect(works, [c[2] for c in checks], 0.0, centre_only=True)):
            best = max(found, key=lambda f: f[1], default=None)
            if best is not None and best[1] >= need:
                confirmed[(i, j)] = (best[0], max(best[1], merged[i][j][1]) if j >= 0 else best[1], best[2])
        out: list[list[FoundFace]] = []
        for i, faces in enumerate(merged):
            h, w = search.shapes[i]
            kept = [confirmed.get((i, j), f) for j, f in enumerate(faces) if f[1] >= ACCEPT or (i, j) in backed or (i, j) in confirmed]
            for k in range(len(props[i])):  # confirmed proposals that no kept face already covers
                if (i, -1 - k) in confirmed and all(iou_xyxy(confirmed[(i, -1 - k)][0], f[0]) <= _NMS_IOU for f in kept):
                    kept.append(confirmed[(i, -1 - k)])
            boxes = [(clip_box(f[0] / scales[i], w, h), f) for f in kept]
            faces_out = [FoundFace(b, float(f[1]), (f[2] / scales[i]).astype(np.float32)) for b, f in boxes if b is not None]
            out.append(sorted(faces_out, key=lambda f: -f.score))
        return out

    def _detect(
        self, works: list[RGBArray], views: list[_View], threshold: float, *, centre_only: bool = False
    ) -> list[list[Candidate]]:
        """Detections (box, score, keypoints in work-image pixels) per view; one model call per view size."""
        results: list[list[Candidate]] = [[] for _ in views]
        for size in sorted({v.size for v in views}):
            idx = [k for k, v in enumerate(views) if v.size == size]
            batch = np.stack([_crop_square(works[views[k].frame], views[k]) for k in idx])
            x = np.ascontiguousarray((batch.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)).transpose(0, 3, 1, 2))
            reg, cls = self.session.run(None, {"input": x})
            anchors = self._anchor_grid(size)
            for row, k in enumerate(idx):
                results[k] = _decode(reg[row], cls[row, :, 0], anchors, views[k], threshold, centre_only)
        return results

    def _anchor_grid(self, size: int) -> FloatArray:
        if size not in self._anchors:
            centres = (np.arange(size // 4, dtype=np.float32) + 0.5) * 4
            yy, xx = np.meshgrid(centres, centres, indexing="ij")
            self._anchors[size] = np.stack([xx.ravel(), yy.ravel()], axis=1)
        return self._anchors[size]


def _search_views(frame: int, w: int, h: int) -> list[_View]:
    side = max(w, h)
    canvas = side * _WHOLE_CANVAS
    detail = int(min(DETAIL_MAX, max(_BASE, math.ceil(side / 2 / 32) * 32)))
    return [
        _View(frame, (w - canvas) / 2, (h - canvas) / 2, canvas, _BASE),
        _View(frame, 0.0, 0.0, float(side), detail),
    ]


def _zoom_view(frame: int, box: npt.NDArray[np.floating[Any]], zoom: float = _ZOOM) -> _View:
    side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0) * zoom
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return _View(frame, float(cx - side / 2), float(cy - side / 2), side, _BASE)


def _decode(
    reg: FloatArray, logits: FloatArray, anchors: FloatArray, view: _View, threshold: float, centre_only: bool
) -> list[Candidate]:
    """Boxes and keypoints of the anchors above ``threshold``, mapped from view to work-image pixels."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80, 80)))
    keep = scores >= threshold
    if centre_only:  # zoomed check: only the face the view is centred on counts
        keep &= np.all(np.abs(reg[:, :2] + anchors - view.size / 2) < view.size / 4, axis=1)
    idx = np.flatnonzero(keep)
    unit = view.side / view.size
    origin = np.array([view.x0, view.y0])
    points = reg[idx].reshape(-1, 8, 2).astype(np.float64)  # centre, size, six keypoints (view pixels)
    centres = (points[:, 0] + anchors[idx]) * unit + origin
    halves = points[:, 1] / 2 * unit
    boxes = np.concatenate([centres - halves, centres + halves], axis=1)
    keypoints = (points[:, 2:] + anchors[idx][:, None, :]) * unit + origin
    return [(boxes[k], float(scores[a]), keypoints[k]) for k, a in enumerate(idx)]


def _crop_square(work: RGBArray, view: _View) -> npt.NDArray[np.uint8]:
    """The view's square window of ``work``, scaled to ``view.size``; outside the frame is black.

    The window's part inside the frame is resized once (area averaging when shrinking) and pasted
    at its place, to within one output pixel.
    """
    size, scale = view.size, view.size / view.side
    h, w = work.shape[:2]
    out = np.zeros((size, size, 3), dtype=np.uint8)
    x0, y0 = max(0, math.floor(view.x0)), max(0, math.floor(view.y0))
    x1, y1 = min(w, math.ceil(view.x0 + view.side)), min(h, math.ceil(view.y0 + view.side))
    if x1 <= x0 or y1 <= y0:
        return out
    patch = resize(work[y0:y1, x0:x1], max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    u0, v0 = round((x0 - view.x0) * scale), round((y0 - view.y0) * scale)
    pu, pv = max(0, -u0), max(0, -v0)  # rows/columns of the patch that fall before the view
    u0, v0 = max(0, u0), max(0, v0)
    u1, v1 = min(size, u0 + patch.shape[1] - pu), min(size, v0 + patch.shape[0] - pv)
    if u1 > u0 and v1 > v0:
        out[v0:v1, u0:u1] = patch[pv : pv + v1 - v0, pu : pu + u1 - u0]
    return out


def face_chip(frame: RGBArray, box: Box, predictor: Any) -> npt.NDArray[np.uint8]:
    """The aligned 64 x 64 RGB chip of one face, as the age network sees it.

    ``box`` is a :class:`FoundFace` box in frame pixels. It is mapped onto the box dlib's HOG
    detector would draw (the box dlib's 5-point model was trained on), ``predictor`` (dlib's
    5-point model) places the landmarks, and ``dlib.extract_image_chip`` cuts the chip with
    padding 0.2, the geometry the age network was trained on. ``predictor`` is not
    thread-safe: callers share it under a lock.
    """
    import dlib

    side = max(box[2] - box[0], box[3] - box[1])
    cx = (box[0] + box[2]) / 2 + _DLIB_SHIFT[0] * side
    cy = (box[1] + box[3]) / 2 + _DLIB_SHIFT[1] * side
    half = _DLIB_SCALE * side / 2
    rect = dlib.rectangle(round(cx - half), round(cy - half), round(cx + half) - 1, round(cy + half) - 1)
    image = np.ascontiguousarray(frame)
    chip = dlib.extract_image_chip(image, dlib.get_face_chip_details(predictor(image, rect), _AGE_CHIP, _AGE_PADDING))
    return np.asarray(chip, dtype=np.uint8)
