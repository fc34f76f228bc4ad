"""Faces found only by the bundled embedder's 2x pass: true small faces vs. photos without them.

Used to set ``bundled._SMALL_FACE_MAX_SIDE``. Prints (dlib score, side in px at the detection resolution) of boxes the
2x pass adds (no overlap with the first pass) for 40 UTKFace child faces
pasted at 48 and 64 px into 1024 px scenes (benchmarks/evasion.py's images),
and for scikit-image's sample photos (one real face: the astronaut).

Run::

    python benchmarks/small_face_scores.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evasion import child_faces, conditions  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "horse", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel", "page", "text", "brick", "grass", "gravel", "logo", "moon", "clock")


def main() -> None:
    import cv2
    from skimage import data

    from genguard.embedders.bundled.embedder import BundledEmbedder, _iou

    emb = BundledEmbedder(face_detectors=("dlib",))

    def added(frame: np.ndarray) -> list[tuple[float, int]]:
        h, w = frame.shape[:2]
        s = min(1.0, emb.detect_max_side / max(h, w))
        small = frame if s == 1 else cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        first, second = emb._dlib_faces(small, 0, s, (w, h)), emb._dlib_faces(small, 1, s, (w, h))
        return [(round(f[2], 2), round((f[0][2] - f[0][0]) * s)) for f in second if all(_iou(f[0], b[0]) < 0.3 for b in first)]

    images = conditions(child_faces(40), 0)
    for key in ("pasted_48px", "pasted_64px"):
        print(key, sorted(x for f in images[key] for x in added(f)))
    for name in PHOTOS:
        if not hasattr(data, name):
            continue
        im = getattr(data, name)()
        im = np.stack([im] * 3, axis=2) if im.ndim == 2 else im[..., :3]
        print(name, added(np.ascontiguousarray(im, dtype=np.uint8)))


if __name__ == "__main__":
    main()
