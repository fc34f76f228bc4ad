"""The backbone registry, the bundled model files and the bundled embedder on real benign images."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genguard import Guard, IntegrityError, ModelFileError, UnknownBackboneError
from genguard.embedders import Embedder, available_backbones, create_embedder
from genguard.embedders.bundled import assets as _assets
from genguard.embedders.bundled.embedder import FACE_DIM, IMAGE_DIM, NUDENET_LABELS
from genguard.embedders.bundled.boxes import clip_box, iou, weighted_nms


# -------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", ["resnet50", "Bundled", "", "clip:ViT-B-32", "clip:/x", "clip:ViT-B-32/"])
def test_unknown_backbone_error_lists_the_known_ones(name: str) -> None:
    with pytest.raises(UnknownBackboneError) as info:
        create_embedder(name)
    assert repr(name) in str(info.value)
    assert "clip:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_available_backbones_names_both_kinds() -> None:
    assert available_backbones() == ("bundled", "clip:MODEL/PRETRAINED")


# ---------------------------------------------------------------------- assets
@pytest.fixture
def fresh_assets(monkeypatch: pytest.MonkeyPatch) -> dict[str, _assets.Asset]:
    """An empty verification cache, so asset_path really checks the files again."""
    monkeypatch.setattr(_assets, "_verified", {})
    return _assets.ASSETS


def test_every_bundled_file_matches_its_recorded_digest(fresh_assets: dict[str, _assets.Asset]) -> None:
    for key in fresh_assets:
        assert _assets.asset_path(key).is_file()


def test_changed_recorded_digest_raises_integrity_error(
    fresh_assets: dict[str, _assets.Asset], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(fresh_assets, "landmarks", dataclasses.replace(fresh_assets["landmarks"], sha256="0" * 64))
    with pytest.raises(IntegrityError, match="sha256"):
        _assets.asset_path("landmarks")


def test_tampered_copy_raises_integrity_error(
    fresh_assets: dict[str, _assets.Asset], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A tampered copy in a fake package; the installed file is never touched."""
    real = _assets.asset_path("landmarks")
    pkg = tmp_path / "genguard_fake_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    copy = pkg / "model.dat"
    shutil.copyfile(real, copy)
    monkeypatch.syspath_prepend(str(tmp_path))
    asset = dataclasses.replace(fresh_assets["landmarks"], package="genguard_fake_models", relpath="model.dat")
    monkeypatch.setitem(fresh_assets, "fake", asset)
    assert _assets.asset_path("fake") == copy  # an exact copy passes
    monkeypatch.setattr(_assets, "_verified", {})
    with copy.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError, match="model.dat"):
        _assets.asset_path("fake")
    assert hashlib.sha256(real.read_bytes()).hexdigest() == fresh_assets["landmarks"].sha256
    sys.modules.pop("genguard_fake_models", None)


def test_missing_package_or_file_raises_model_file_error(
    fresh_assets: dict[str, _assets.Asset], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(fresh_assets, "gone", _assets.Asset("no_such_package_xyz", "m.onnx", "0" * 64, "none"))
    with pytest.raises(ModelFileError, match="pip install no-such-package-xyz"):
        _assets.asset_path("gone")
    monkeypatch.setitem(fresh_assets, "gone", _assets.Asset("nudenet", "missing.onnx", "0" * 64, "none"))
    with pytest.raises(ModelFileError, match="missing.onnx"):
        _assets.asset_path("gone")


def test_unknown_intermediate_output_raises_model_file_error() -> None:
    with pytest.raises(ModelFileError, match="no_such_tensor"):
        _assets.onnx_session("nudenet", extra_outputs=("no_such_tensor",))


def test_device_names() -> None:
    assert _assets.resolve_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="device"):
        _assets.resolve_providers("tpu")


def test_cuda_without_the_cuda_provider_raises() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        _assets.resolve_providers("cuda")


# ------------------------------------------------------------- pure helpers
def test_box_helpers() -> None:
    assert clip_box((-5.2, 3.6, 50.4, 200.0), 40, 100) == (0, 4, 40, 100)
    assert clip_box((10, 10, 11, 30), 40, 100) is None  # under 2 px wide
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    kp = np.zeros((6, 2))
    merged = weighted_nms([(np.array([0.0, 0, 10, 10]), 0.9, kp), (np.array([1.0, 0, 11, 10]), 0.3, kp + 4),
                            (np.array([50.0, 50, 60, 60]), 0.7, kp)])
    assert [m[1] for m in merged] == [0.9, 0.7]  # overlapping boxes merge, keeping the best score
    np.testing.assert_allclose(merged[0][0], [0.25, 0, 10.25, 10])  # weighted by score
    np.testing.assert_allclose(merged[0][2], kp + 1)


# --------------------------------------------------- bundled embedder, real images
def test_bundled_embedder_implements_the_protocol(guard: Guard) -> None:
    emb = guard.embedder
    assert isinstance(emb, Embedder)
    assert (emb.name, emb.face_dim, emb.image_dim) == ("bundled", FACE_DIM, IMAGE_DIM)


def test_feature_layout_slices_tile_the_vectors(guard: Guard) -> None:
    layout = guard.embedder.feature_layout
    for part, dim in (("face", FACE_DIM), ("image", IMAGE_DIM)):
        spans = sorted(layout[part].values())
        assert spans[0][0] == 0 and spans[-1][1] == dim
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert layout["nudenet_labels"] == list(NUDENET_LABELS)
    # the layout names the model files, so an embedding cache never serves vectors of another age network
    from genguard.embedders.bundled.assets import ASSETS

    assert layout["models"]["agenet"] == ASSETS["agenet"].sha256[:16]


def test_astronaut_has_one_adult_face(guard: Guard, benign_images: dict[str, Any]) -> None:
    image = benign_images["astronaut"]
    (e,) = guard.embedder.embed([image])
    assert len(e.faces) == 1
    face = e.faces[0]
    assert face.age is not None and 18 <= face.age <= 80
    left, top, right, bottom = face.box
    h, w = image.shape[:2]
    assert 0 <= left < right <= w and 0 <= top < bottom <= h
    assert face.vector.shape == (FACE_DIM,) and face.vector.dtype == np.float32
    assert e.vector.shape == (IMAGE_DIM,) and e.vector.dtype == np.float32
    assert np.isfinite(face.vector).all() and np.isfinite(e.vector).all()
    assert face.vector[FACE_DIM - 1] == pytest.approx(face.age / 100, rel=1e-5)  # expected_age_div100
    assert set(e.details) == {"open_nsfw", "nudenet"} and 0.0 <= e.details["open_nsfw"] <= 1.0


def test_embed_batch_equals_one_by_one(guard: Guard, benign_images: dict[str, Any]) -> None:
    frames = list(benign_images.values())
    batch = guard.embedder.embed(frames)
    for frame, b in zip(frames, batch, strict=True):
        (s,) = guard.embedder.embed([frame])
        np.testing.assert_allclose(b.vector, s.vector, atol=1e-4)
        assert [f.box for f in b.faces] == [f.box for f in s.faces]
    assert guard.embedder.embed([]) == []


def test_scenes_without_people_have_no_faces(guard: Guard, benign_images: dict[str, Any]) -> None:
    for e in guard.embedder.embed([benign_images["coffee"], benign_images["rocket"]]):
        assert e.faces == ()
