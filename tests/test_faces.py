"""The bundled face finder (BlazeFace full-range, ONNX) and the chip that the age network sees.

Benign only: scikit-image photos, and UTKFace faces (read in place) pasted into
scikit-image photos without people. Recall figures over whole scene sets come
from benchmarks/faces.py.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import utkface_sample
from PIL import Image

from genguard.embedders.bundled import assets
from genguard.embedders.bundled.assets import ASSETS, Asset, asset_path, onnx_session
from genguard.embedders.bundled.faces import FaceFinder, _crop_square, _View, face_chip, iou
from genguard.errors import IntegrityError


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    return FaceFinder(onnx_session("blazeface", threads=1))


def _paste(background: np.ndarray, face: Path, side: int, at: tuple[int, int]) -> np.ndarray:
    bg = Image.fromarray(background).resize((1024, 1024))
    bg.paste(Image.open(face).convert("RGB").resize((side, side), Image.Resampling.BILINEAR), at)
    return np.asarray(bg)


def _hit(faces: Any, box: tuple[int, int, int, int]) -> bool:
    return any(box[0] <= (f.box[0] + f.box[2]) / 2 <= box[2] and box[1] <= (f.box[1] + f.box[3]) / 2 <= box[3] for f in faces)


def test_detector_file_is_checked_and_an_edited_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = asset_path("blazeface")
    assert real.name == "blazeface_full_range.onnx" and real.stat().st_size > 1_000_000
    package = tmp_path / "editedpkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data = bytearray(real.read_bytes())
    data[-100] ^= 0xFF  # one byte of the weights changed
    (package / "models" / real.name).write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ASSETS, "edited", Asset("editedpkg", f"models/{real.name}", ASSETS["blazeface"].sha256, "test"))
    with pytest.raises(IntegrityError, match="sha256"):
        asset_path("edited")
    assert "edited" not in assets._verified
    sys.modules.pop("editedpkg", None)


def test_finds_the_astronauts_face_with_keypoints_inside_it(finder: FaceFinder) -> None:
    from skimage import data

    (face,) = finder.find([data.astronaut()])[0]
    assert iou(face.box, (174, 71, 273, 170)) > 0.6  # her face, as drawn by hand
    assert face.score >= 0.75 and face.keypoints.shape == (6, 2)
    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    assert face.box[0] < right_eye[0] < left_eye[0] < face.box[2]  # the subject's right eye is on the image's left


def test_no_face_in_photos_without_people(finder: FaceFinder) -> None:
    from skimage import data

    frames = [data.coffee(), data.rocket(), data.chelsea(), np.zeros((300, 500, 3), np.uint8)]
    assert finder.find(frames) == [[], [], [], []]


@pytest.mark.utkface
def test_finds_utkface_faces_that_fill_the_frame(finder: FaceFinder, utkface_dir: Path) -> None:
    paths = utkface_sample(utkface_dir, 1, 6, 10) + utkface_sample(utkface_dir, 20, 70, 10)
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    found = finder.find(frames)
    assert sum(bool(f) for f in found) >= 19, [len(f) for f in found]


@pytest.mark.utkface
def test_finds_small_faces_in_a_1024px_scene_in_one_batched_call(finder: FaceFinder, utkface_dir: Path) -> None:
    from skimage import data

    faces = utkface_sample(utkface_dir, 3, 10, 6)
    spots = [(100 + 130 * i, 700 - 90 * i) for i in range(len(faces))]
    scenes = [_paste(data.coffee(), p, 56, at) for p, at in zip(faces, spots)]
    found = finder.find(scenes)
    hits = [_hit(f, (at[0], at[1], at[0] + 56, at[1] + 56)) for f, at in zip(found, spots)]
    assert sum(hits) >= 5, hits
    assert all(len(f) <= 2 for f in found)


def test_crop_square_maps_the_window_and_pads_outside_with_black() -> None:
    work = np.zeros((100, 200, 3), np.uint8)
    work[:, 100:] = 255
    view = _crop_square(work, _View(0, -100.0, -150.0, 400.0, 200))  # 2x canvas, halved
    assert view.shape == (200, 200, 3)
    assert view[:75].max() == 0 and view[125:].max() == 0  # above and below the frame
    assert view[100, 60].max() == 0 and view[100, 140].min() == 255  # left and right halves of the frame
    zoom = _crop_square(work, _View(0, 90.5, 10.5, 20.0, 192))  # upscaled window across the edge
    assert zoom.shape == (192, 192, 3) and zoom[:, :80].max() == 0 and zoom[:, 110:].min() == 255


def test_face_chip_is_the_64px_aligned_face(finder: FaceFinder) -> None:
    import dlib
    from skimage import data

    frame = data.astronaut()
    (face,) = finder.find([frame])[0]
    chip = face_chip(frame, face.box, dlib.shape_predictor(str(asset_path("landmarks"))))
    assert chip.shape == (64, 64, 3) and chip.dtype == np.uint8
    assert chip.std() > 20  # a face, not a flat patch
    assert np.array_equal(chip, face_chip(frame, face.box, dlib.shape_predictor(str(asset_path("landmarks")))))


def test_nudenet_face_proposals_decodes_face_classes_to_frame_pixels() -> None:
    from genguard.embedders.bundled.embedder import NUDENET_LABELS
    from genguard.embedders.bundled.proposals import PROPOSAL, nudenet_face_proposals

    raw = np.zeros((1, 4 + len(NUDENET_LABELS), 4), np.float32)
    raw[0, :4, 0] = [100, 50, 40, 20]  # a face at (80, 40)-(120, 60) in letterbox pixels
    raw[0, 4 + NUDENET_LABELS.index("FACE_MALE"), 0] = 0.9
    raw[0, :4, 1] = [102, 51, 40, 20]  # the same face again, weaker: suppressed
    raw[0, 4 + NUDENET_LABELS.index("FACE_FEMALE"), 1] = 0.5
    raw[0, :4, 2] = [200, 200, 40, 40]  # a box of another class: not a face
    raw[0, 4 + NUDENET_LABELS.index("FEET_COVERED"), 2] = 0.9
    raw[0, :4, 3] = [250, 250, 40, 40]  # a face under PROPOSAL: dropped
    raw[0, 4 + NUDENET_LABELS.index("FACE_FEMALE"), 3] = PROPOSAL / 2
    ((box, score),) = nudenet_face_proposals(raw, [640])[0]  # a 640 px frame: twice the letterbox
    assert np.allclose(box, (160, 80, 240, 120)) and score == pytest.approx(0.9)


@pytest.mark.utkface
def test_nudenet_proposals_find_more_hard_faces_and_no_false_face(utkface_dir: Path, tmp_path: Path) -> None:
    from skimage import data

    from genguard.embedders.bundled import BundledEmbedder
    from genguard.learn.scenes import build_scenes

    emb = BundledEmbedder(threads=1)
    finder = emb.face_stage.finder
    manifest = build_scenes(utkface_dir, tmp_path, n=60, seed=2, split="calib", hard=True)
    found = {True: 0, False: 0}
    for row in csv.DictReader(manifest.open(newline="")):
        frame = np.asarray(Image.open(tmp_path / row["path"]).convert("RGB"))
        boxes = [f["box"] for f in json.loads(row["faces"])]
        proposals = [e.face_proposals for e in emb.embed_images([frame])]
        for use in (True, False):
            hits = finder.find([frame], proposals if use else None)[0]
            found[use] += sum(_hit(hits, tuple(b)) for b in boxes)
    assert found[True] > found[False], found
    frames = [data.coffee(), data.rocket(), data.chelsea(), data.brick(), data.gravel()]
    frames = [np.repeat(f[:, :, None], 3, axis=2) if f.ndim == 2 else f for f in frames]
    assert finder.find(frames, [e.face_proposals for e in emb.embed_images(frames)]) == [[]] * len(frames)


@pytest.mark.parametrize(("candidate", "zoomed", "kept"), [(0.7, 0.45, True), (0.7, 0.35, False), (0.5, 0.45, False), (0.5, 0.65, True)])
def test_the_zoomed_check_asks_less_of_a_strong_candidate(candidate: float, zoomed: float, kept: bool) -> None:
    """A candidate the detector scores >= STRONG needs STRONG_CONFIRM on the zoomed view, a weaker one CONFIRM."""
    from genguard.embedders.bundled import faces as F

    finder = F.FaceFinder(session=None)
    box, kp = np.array([100.0, 100.0, 160.0, 160.0]), np.zeros((6, 2))
    search = F.Search(shapes=[(512, 512)], works=[np.zeros((512, 512, 3), np.uint8)], scales=[1.0], merged=[[(box, candidate, kp)]])
    finder._detect = lambda works, views, threshold, centre_only=False: [[(box + 2, zoomed, kp)] for _ in views]  # type: ignore[method-assign]
    found = finder.confirm(search)[0]
    assert bool(found) is kept
    if kept:
        assert found[0].box == (102, 102, 162, 162)  # the zoomed view's finer box
