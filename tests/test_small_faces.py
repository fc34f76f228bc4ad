"""The bundled embedder's small-face pass (``small_faces=True``): faces of about 48 px in a 1024 px scene.

Benign only: UTKFace faces (read in place) pasted into a scikit-image photo
without people. The evasion figures themselves come from benchmarks/evasion.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import utkface_sample
from PIL import Image

from genguard.embedders.bundled.embedder import BundledEmbedder


def _scene_with_face(face_path: Path, side: int, at: tuple[int, int]) -> np.ndarray:
    from skimage import data

    bg = Image.fromarray(data.coffee()).resize((1024, 1024))
    bg.paste(Image.open(face_path).convert("RGB").resize((side, side), Image.Resampling.LANCZOS), at)
    return np.asarray(bg)


def _found(emb: BundledEmbedder, frame: np.ndarray, at: tuple[int, int], side: int) -> bool:
    cx, cy = at[0] + side / 2, at[1] + side / 2
    faces = emb._find_faces(frame, [])
    return any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b, _, _ in faces)


@pytest.mark.slow
@pytest.mark.utkface
def test_second_pass_finds_48px_faces_and_keeps_first_pass_boxes(utkface_dir: Path) -> None:
    two_pass = BundledEmbedder(face_detectors=("dlib",))
    one_pass = BundledEmbedder(face_detectors=("dlib",), small_faces=False)
    faces = utkface_sample(utkface_dir, 3, 10, 6)
    spots = [(100 + 130 * i, 700 - 90 * i) for i in range(len(faces))]
    hits_two = [_found(two_pass, _scene_with_face(p, 48, at), at, 48) for p, at in zip(faces, spots)]
    hits_one = [_found(one_pass, _scene_with_face(p, 48, at), at, 48) for p, at in zip(faces, spots)]
    assert sum(hits_two) >= 5 and sum(hits_two) > sum(hits_one)
    big = _scene_with_face(faces[0], 200, (400, 300))  # a face the first pass finds keeps its exact box
    first = one_pass._find_faces(big, [])
    assert first and set(first) <= set(two_pass._find_faces(big, []))
