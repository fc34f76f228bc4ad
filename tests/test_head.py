"""Head: scoring rules, calibration, safetensors + JSON persistence and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genguard import HeadError, ModelFileError, Policy
from genguard.embedders.base import FaceEmbedding, ImageEmbedding
from genguard.heads.head import FORMAT_VERSION, Head, HeadMetadata, load_head
from genguard.heads.shipped import SHIPPED, load_shipped_head, shipped_head_path


def _face(value: float, dim: int = 3) -> FaceEmbedding:
    return FaceEmbedding((0, 0, 10, 10), np.full(dim, value, np.float32), "test", 1.0, age=20.0)


def _emb(faces: tuple[FaceEmbedding, ...] = (), dim: int = 2, value: float = 0.0) -> ImageEmbedding:
    return ImageEmbedding(np.full(dim, value, np.float32), faces)


def _identity_head(source: str = "face", no_face_minor: float = 0.0) -> Head:
    """Linear branches that output the first input feature as the logit."""
    meta = HeadMetadata(backbone="test", minor_source=source, minor_dim=3 if source == "face" else 2,  # type: ignore[arg-type]
                        sexual_dim=2, no_face_minor=no_face_minor, name="identity")
    head = Head(meta)
    with torch.no_grad():
        for net in (head.minor_net, head.sexual_net):
            net.weight.zero_()
            net.weight[0, 0] = 1.0
            net.bias.zero_()
    return head


def test_minor_is_the_max_over_faces_and_per_face_scores_are_kept() -> None:
    head = _identity_head()
    (s,) = head.score([_emb((_face(-2.0), _face(3.0), _face(0.0)))])
    expected = [1 / (1 + np.exp(-x)) for x in (-2.0, 3.0, 0.0)]
    assert s.face_minor == pytest.approx(expected, abs=1e-6)
    assert s.minor == pytest.approx(max(expected), abs=1e-6)
    assert s.sexual == pytest.approx(0.5, abs=1e-6)


def test_no_face_gives_the_no_face_minor_value() -> None:
    head = _identity_head(no_face_minor=0.07)
    scores = head.score([_emb(), _emb((_face(10.0),))])
    assert scores[0].minor == pytest.approx(0.07) and scores[0].face_minor == ()
    assert scores[1].minor > 0.99


def test_image_source_head_scores_the_image_vector() -> None:
    head = _identity_head("image")
    (s,) = head.score([_emb(dim=2, value=4.0)])
    assert s.minor == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-6)
    assert s.face_minor == ()


def test_batch_scores_equal_single_scores_and_keep_face_ownership() -> None:
    head = _identity_head()
    embs = [_emb((_face(1.0),)), _emb(), _emb((_face(-1.0), _face(2.0)), value=3.0)]
    batch = head.score(embs)
    single = [head.score([e])[0] for e in embs]
    assert batch == single
    assert [len(s.face_minor) for s in batch] == [1, 0, 2]
    assert head.score([]) == []


def test_calibration_is_applied() -> None:
    head = _identity_head()
    head.metadata.calibration = {"minor": {"a": 2.0, "b": -1.0}, "sexual": {"a": 1.0, "b": 0.0}}
    (s,) = head.score([_emb((_face(1.5),))])
    assert s.minor == pytest.approx(1 / (1 + np.exp(-(2.0 * 1.5 - 1.0))), abs=1e-6)


def test_score_leaves_training_mode_as_it_was() -> None:
    head = _identity_head().train()
    head.score([_emb((_face(1.0),))])
    assert head.training


def test_policy_and_identifier_come_from_metadata() -> None:
    head = _identity_head()
    head.metadata.policy = Policy(0.6, 0.7, 0.1, 0.2).to_dict()
    assert head.policy == Policy(0.6, 0.7, 0.1, 0.2)
    assert head.identifier == "identity@test"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    head = _identity_head()
    torch.manual_seed(0)
    with torch.no_grad():
        head.minor_mean.copy_(torch.randn(3))
    weights = head.save(tmp_path / "sub" / "h")
    assert weights == tmp_path / "sub" / "h.safetensors"
    assert json.loads((tmp_path / "sub" / "h.json").read_text())["backbone"] == "test"
    embs = [_emb((_face(0.3),), value=0.2)]
    for p in (weights, tmp_path / "sub" / "h.json", tmp_path / "sub" / "h"):
        loaded = load_head(p)
        assert loaded.metadata == head.metadata
        assert loaded.score(embs) == head.score(embs)
        assert not loaded.training


def test_missing_file_raises_model_file_error_naming_it(tmp_path: Path) -> None:
    _identity_head().save(tmp_path / "h")
    (tmp_path / "h.json").unlink()
    with pytest.raises(ModelFileError, match="h.json"):
        load_head(tmp_path / "h")


def test_malformed_metadata_raises_head_error(tmp_path: Path) -> None:
    _identity_head().save(tmp_path / "h")
    (tmp_path / "h.json").write_text("{not json")
    with pytest.raises(HeadError):
        load_head(tmp_path / "h")
    (tmp_path / "h.json").write_text(json.dumps({"backbone": "test"}))
    with pytest.raises(HeadError, match="minor_dim"):
        load_head(tmp_path / "h")


def test_weights_that_do_not_match_metadata_raise_head_error(tmp_path: Path) -> None:
    _identity_head().save(tmp_path / "h")
    meta = json.loads((tmp_path / "h.json").read_text())
    meta["minor_dim"] = 5
    (tmp_path / "h.json").write_text(json.dumps(meta))
    with pytest.raises(HeadError, match="does not match"):
        load_head(tmp_path / "h")


def test_corrupt_weights_raise_head_error(tmp_path: Path) -> None:
    _identity_head().save(tmp_path / "h")
    (tmp_path / "h.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(HeadError):
        load_head(tmp_path / "h")


def test_metadata_validation() -> None:
    base = {"backbone": "b", "minor_source": "face", "minor_dim": 1, "sexual_dim": 1}
    assert HeadMetadata.from_dict({**base, "future_field": 1}).backbone == "b"  # unknown keys are ignored
    with pytest.raises(HeadError, match="newer"):
        HeadMetadata.from_dict({**base, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(HeadError, match="minor_source"):
        HeadMetadata.from_dict({**base, "minor_source": "body"})


def test_shipped_head_matches_the_bundled_backbone() -> None:
    from genguard.embedders.bundled.embedder import FACE_DIM, IMAGE_DIM

    head = load_shipped_head("bundled")
    assert head.metadata.backbone == "bundled"
    assert (head.metadata.minor_dim, head.metadata.sexual_dim) == (FACE_DIM, IMAGE_DIM)
    Policy.from_dict(head.metadata.policy)  # thresholds are valid, plain data


def test_no_shipped_head_for_other_backbones() -> None:
    with pytest.raises(ModelFileError, match="bundled"):
        shipped_head_path("clip:ViT-B-32/laion2b_s34b_b79k")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("minor_dim", "abc"),
        ("minor_dim", -1),
        ("hidden", None),
        ("policy", {"minor_threshold": 3}),
        ("policy", {"minor_treshold": 0.5}),
        ("calibration", {"minor": {"a": 1.0}}),
    ],
)
def test_malformed_metadata_values_raise_head_error_naming_the_file(tmp_path: Path, key: str, value: object) -> None:
    _identity_head().save(tmp_path / "h")
    meta = json.loads((tmp_path / "h.json").read_text())
    meta[key] = value
    (tmp_path / "h.json").write_text(json.dumps(meta))
    with pytest.raises(HeadError, match="h.json"):
        load_head(tmp_path / "h")


@pytest.mark.parametrize("name", ["bundled.json", "bundled.safetensors"])
def test_an_edited_shipped_head_file_is_refused_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Thresholds live in the JSON: an edited copy (thresholds 1.0/1.0) must not load silently."""
    import json
    import shutil

    from genguard.errors import IntegrityError
    from genguard.heads import shipped

    for f in SHIPPED["bundled"]:
        shutil.copy(shipped_head_path("bundled").with_name(f), tmp_path / f)
    target = tmp_path / name
    if name.endswith(".json"):
        meta = json.loads(target.read_text())
        meta["policy"].update(minor_threshold=1.0, sexual_threshold=1.0)
        target.write_text(json.dumps(meta))
    else:
        data = bytearray(target.read_bytes())
        data[-1] ^= 1
        target.write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "shipped_head_path", lambda n: tmp_path / "bundled.safetensors")
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
        load_shipped_head("bundled")
    target.unlink()
    with pytest.raises(ModelFileError, match=name.replace(".", r"\.")):
        load_shipped_head("bundled")
