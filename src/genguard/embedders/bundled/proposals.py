"""NudeNet's face boxes as face proposals for the face finder.

NudeNet 320n (run by the whole-image stage anyway) also detects faces (``FACE_FEMALE``,
``FACE_MALE``). :func:`nudenet_face_proposals` decodes those boxes from its raw output;
:meth:`~genguard.embedders.bundled.faces.FaceFinder.find` takes them as a second opinion:
a BlazeFace candidate that a proposal of at least :data:`SUPPORT` overlaps is kept
without the zoomed check, and every proposal of at least :data:`PROPOSAL` gets a zoomed
check of its own (:data:`PROPOSAL_ZOOM`, kept at :data:`PROPOSAL_CONFIRM`). On hard
generated scenes this finds more partly hidden faces and adds no false face on benign
images without people (``benchmarks/faces.py``).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from genguard._types import FloatArray
from genguard.embedders.bundled.boxes import iou_xyxy

__all__ = ["PROPOSAL", "PROPOSAL_CONFIRM", "PROPOSAL_ZOOM", "SUPPORT", "Proposal", "nudenet_face_proposals"]

Proposal = tuple[tuple[float, float, float, float], float]
"""A proposed face: its ``(left, top, right, bottom)`` box in frame pixels and the proposing detector's score."""

PROPOSAL: Final = 0.1
"""NudeNet face score from which a box is checked by BlazeFace's zoomed view."""
SUPPORT: Final = 0.3
"""NudeNet face score from which an overlapping BlazeFace candidate needs no zoomed check (0.2 let a motorcycle
crop of the tuning set through as a face)."""
PROPOSAL_CONFIRM: Final = 0.55
"""Score the zoomed view must give a proposal to keep it as a face (0.5 let two motorcycle crops of the tuning
set through as faces; 0.55 costs one occluded face there)."""
PROPOSAL_ZOOM: Final = 2.5
"""Zoomed check of a proposal: view side / proposal side (NudeNet's face boxes are looser than BlazeFace's)."""

_FACE_CLASSES: Final = (1, 12)  # FACE_FEMALE, FACE_MALE in NudeNet's 18 classes (embedder.NUDENET_LABELS)
_NMS_IOU: Final = 0.45  # NudeNet's own
_MAX_PROPOSALS: Final = 16


def nudenet_face_proposals(raw: FloatArray, sides: list[int], *, input_size: int = 320) -> list[list[Proposal]]:
    """Face boxes of each frame from NudeNet's raw output, best first, overlapping ones suppressed.

    Parameters
    ----------
    raw : ndarray
        NudeNet's output ``[B, 4 + 18, anchors]``: centre x, centre y, width, height in
        ``input_size`` letterbox pixels, then the 18 class scores.
    sides : list of int
        Each frame's longer side (the letterbox pads bottom and right, so one scale maps back).
    input_size : int, default 320
        NudeNet's input side.

    Returns
    -------
    list of list of Proposal
        Per frame, boxes in frame pixels with a face score of at least :data:`PROPOSAL`.
    """
    out: list[list[Proposal]] = []
    for row, side in zip(raw, sides):
        scores = row[4:][list(_FACE_CLASSES)].max(axis=0)
        idx = np.flatnonzero(scores >= PROPOSAL)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        cx, cy, w, h = (row[k, idx].astype(np.float64) * (side / input_size) for k in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        kept: list[int] = []
        for k in range(len(idx)):
            if len(kept) == _MAX_PROPOSALS:
                break
            if all(iou_xyxy(boxes[k], boxes[m]) <= _NMS_IOU for m in kept):
                kept.append(k)
        out.append([((float(boxes[k, 0]), float(boxes[k, 1]), float(boxes[k, 2]), float(boxes[k, 3])), float(scores[idx[k]])) for k in kept])
    return out
