"""Box arithmetic for the face finder: overlap, MediaPipe's weighted suppression, rounding into a frame.

Boxes are ``(left, top, right, bottom)``; candidates are ``(box, score, keypoints)`` with float arrays.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from genguard._types import Box, FloatArray

__all__ = ["Candidate", "clip_box", "iou", "iou_xyxy", "weighted_nms"]

Candidate = tuple[FloatArray, float, FloatArray]
"""A detection: its box, its score, its keypoints ``[k, 2]`` (all in the same pixels)."""

_NMS_IOU: Final = 0.3


def weighted_nms(cands: list[Candidate], overlap: float = _NMS_IOU) -> list[Candidate]:
    """MediaPipe's weighted non-maximum suppression: boxes overlapping more than ``overlap`` are averaged, weighted by score."""
    rest = sorted(cands, key=lambda c: -c[1])
    out = []
    while rest:
        top = rest[0]
        group = [c for c in rest if iou_xyxy(top[0], c[0]) > overlap]
        rest = [c for c in rest if iou_xyxy(top[0], c[0]) <= overlap]
        weights = np.array([c[1] for c in group])
        weights /= weights.sum()
        box = np.sum([w * c[0] for w, c in zip(weights, group)], axis=0)
        keypoints = np.sum([w * c[2] for w, c in zip(weights, group)], axis=0)
        out.append((box, top[1], keypoints))
    return out


def iou_xyxy(a: Any, b: Any) -> float:
    """Intersection over union of two boxes given as sequences or arrays of four floats."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union) if union > 0 else 0.0


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    return iou_xyxy(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def clip_box(box: Any, w: int, h: int) -> Box | None:
    """Round a box to whole pixels inside a ``w`` x ``h`` frame; None when under 2 px on a side."""
    x0, y0 = max(0, int(round(float(box[0])))), max(0, int(round(float(box[1]))))
    x1, y1 = min(w, int(round(float(box[2])))), min(h, int(round(float(box[3]))))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return (x0, y0, x1, y1)
