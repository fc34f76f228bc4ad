"""The tuned age network as shipped: its integrity, mirror averaging, the face vector, the chips, a training smoke run.

The torch port and the ONNX export are tested in tests/test_agenet_port.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genguard.embedders.bundled import assets
from genguard.embedders.bundled.assets import ASSETS, Asset, asset_path
from genguard.embedders.bundled.embedder import FACE_DIM, FACE_LAYOUT
from genguard.embedders.bundled.face_stage import age_outputs
from genguard.errors import IntegrityError
from genguard.learn.agenet.model import load_onnx

from conftest import utkface_sample


@pytest.fixture(scope="module")
def face_chips(guard: Any, benign_images: dict[str, Any]) -> np.ndarray:
    """Real 64 px chips: the astronaut's face as the pipeline cuts it, its mirror image, and random pixels."""
    from genguard.learn.agenet.chips import pipeline_chips

    ((_, chip),) = pipeline_chips(guard.embedder.face_stage, benign_images["astronaut"])
    rng = np.random.default_rng(0)
    return np.stack([chip, chip[:, ::-1], *rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)])


def test_mirror_averaging_is_symmetric(face_chips: np.ndarray) -> None:
    session = assets.onnx_session("agenet")
    one = age_outputs(session, face_chips[:1])
    mirrored = age_outputs(session, face_chips[1:2])
    for a, b in zip(one, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_shipped_model_is_checked_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = asset_path("agenet")
    package = tmp_path / "copied_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    copy = package / shipped.name
    shutil.copyfile(shipped, copy)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ASSETS, "agenet", Asset("copied_models", shipped.name, ASSETS["agenet"].sha256, ASSETS["agenet"].licence))
    monkeypatch.setattr(assets, "_verified", {})
    assert asset_path("agenet") == copy  # the unchanged copy passes
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(assets, "_verified", {})
    with pytest.raises(IntegrityError, match="sha256"):
        asset_path("agenet")
    sys.modules.pop("copied_models", None)


def test_face_vector_carries_the_minor_logits(guard: Any, benign_images: dict[str, Any]) -> None:
    from genguard.learn.agenet.chips import pipeline_chips

    (e,) = guard.embedder.embed([benign_images["astronaut"]])
    ((_, chip),) = pipeline_chips(guard.embedder.face_stage, benign_images["astronaut"])
    feats, _, minor = age_outputs(assets.onnx_session("agenet"), chip[None])
    lo, hi = FACE_LAYOUT["minor_logits"]
    vector = e.faces[0].vector
    assert vector.shape == (FACE_DIM,)
    np.testing.assert_allclose(vector[lo:hi], minor[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(vector[:256], feats[0], atol=1e-4, rtol=0)
    # the shipped head's minor branch reads the under-18 logit, Platt-scaled
    head = guard.head
    cal = head.metadata.calibration["minor"]
    (scores,) = head.score([e])
    assert scores.face_minor[0] == pytest.approx(1 / (1 + np.exp(-(cal["a"] * minor[0, 2] + cal["b"]))), abs=1e-4)
    assert scores.minor < head.policy.minor_threshold  # the astronaut is an adult


def test_trainer_cuts_the_chips_the_embedder_scores(guard: Any, benign_images: dict[str, Any]) -> None:
    """The chip cache's face stage (built without a Guard) cuts the embedder's chips, box for box."""
    from genguard.learn.agenet.chips import face_stage, pipeline_chips

    frame = benign_images["astronaut"]
    (e,) = guard.embedder.embed([frame])
    ours = pipeline_chips(face_stage(), frame)
    assert [box for box, _ in ours] == [f.box for f in e.faces]
    feats = age_outputs(assets.onnx_session("agenet"), np.stack([chip for _, chip in ours]))[0]
    np.testing.assert_allclose(np.stack([f.vector[:256] for f in e.faces]), feats, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_training_smoke_run(tmp_path: Path, utkface_dir: Path) -> None:
    """Chips of 24 UTKFace faces, one short epoch: the run writes a tuned ONNX file whose minor branch moved."""
    from genguard.learn.agenet.chips import build_chip_cache, load_chip_cache
    from genguard.learn.agenet.train import train_agenet

    data = tmp_path / "faces"
    data.mkdir()
    for p in utkface_sample(utkface_dir, 1, 15, 12) + utkface_sample(utkface_dir, 25, 60, 12):
        (data / p.name).symlink_to(p)
    build_chip_cache(data, tmp_path / "chips", workers=1)
    cache = load_chip_cache(tmp_path / "chips")
    assert cache["chips"].shape == (24, 2, 64, 64, 3) and (cache["found"][:, 0] > 0).mean() > 0.8
    result = train_agenet(tmp_path / "chips", tmp_path / "run", base=asset_path("age"), epochs=1, batch=4, threads=1)
    assert len(result["history"]) == 1 and result["n_train"] > 0
    tuned = load_onnx(tmp_path / "run" / "agenet.onnx")
    assert tuned.minor.weight.abs().sum() > 0
