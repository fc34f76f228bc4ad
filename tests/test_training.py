"""Training: masked MIL loss, early stopping, calibration, thresholds, and `genguard train` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genguard.embedders.base import FaceEmbedding, ImageEmbedding
from genguard.heads.head import Head, HeadMetadata, load_head
from genguard.learn.training import TrainingSet, calibrate_platt, fit_head, threshold_for_fpr

DIM = 8


def _embedding(rng: np.random.Generator, minor_faces: int, adult_faces: int, sexual: bool = False) -> ImageEmbedding:
    """Synthetic embedding: minors' faces have +1 on feature 0, adults' -1; sexual images +1 on image feature 0."""
    faces = []
    for is_minor in [True] * minor_faces + [False] * adult_faces:
        v = rng.normal(0, 0.3, DIM).astype(np.float32)
        v[0] += 1.0 if is_minor else -1.0
        faces.append(FaceEmbedding(box=(0, 0, 10, 10), vector=v, detector="synthetic", detector_score=1.0))
    img = rng.normal(0, 0.3, DIM).astype(np.float32)
    img[0] += 1.0 if sexual else -1.0
    return ImageEmbedding(vector=img, faces=tuple(faces))


def _head() -> Head:
    return Head(HeadMetadata(backbone="synthetic", minor_source="face", minor_dim=DIM, sexual_dim=DIM, hidden=16))


def _dataset(rng: np.random.Generator, n: int) -> tuple[list[ImageEmbedding], list[int | None], list[int | None]]:
    embs, minor, sexual = [], [], []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # a child among adults: labelled minor
            embs.append(_embedding(rng, 1, 2, sexual=bool(i % 8 == 0)))
            minor.append(1)
        elif kind == 1:  # adults only
            embs.append(_embedding(rng, 0, 2, sexual=bool(i % 8 == 1)))
            minor.append(0)
        elif kind == 2:  # no face at all
            embs.append(_embedding(rng, 0, 0, sexual=bool(i % 8 == 2)))
            minor.append(0)
        else:  # minor axis unlabelled
            embs.append(_embedding(rng, 1, 0, sexual=bool(i % 8 == 3)))
            minor.append(None)
        sexual.append(int(embs[-1].vector[0] > 0) if i % 3 else None)  # a third unlabelled on the sexual axis
    return embs, minor, sexual


def test_training_set_flattens_faces_with_segments() -> None:
    rng = np.random.default_rng(0)
    embs = [_embedding(rng, 1, 2), _embedding(rng, 0, 0), _embedding(rng, 0, 1)]
    ts = TrainingSet.from_embeddings(embs, [1, 0, None], [0, None, 1], minor_source="face")
    assert ts.minor_x.shape == (4, DIM)
    assert ts.minor_seg.tolist() == [0, 0, 0, 2]
    assert np.isnan(ts.minor_y[2]) and np.isnan(ts.sexual_y[1])
    sub = ts.subset(np.array([2]))
    assert sub.minor_seg.tolist() == [0] and len(sub.minor_y) == 1


def test_fit_head_learns_both_axes_with_partial_labels() -> None:
    rng = np.random.default_rng(1)
    train, stop, test = (TrainingSet.from_embeddings(*_dataset(rng, n), minor_source="face") for n in (400, 120, 200))
    head = _head()
    summary = fit_head(head, train, stop, epochs=100, patience=20, lr=1e-2, batch_images=64, seed=0)
    assert summary["minor"]["trained"] and summary["sexual"]["trained"]
    z = test.image_logits(head, "minor")
    known = ~np.isnan(test.minor_y) & ~np.isnan(z)
    acc = ((z[known] > 0) == (test.minor_y[known] > 0.5)).mean()
    assert acc > 0.95
    zs = test.image_logits(head, "sexual")
    ks = ~np.isnan(test.sexual_y)
    assert ((zs[ks] > 0) == (test.sexual_y[ks] > 0.5)).mean() > 0.95
    # images without faces have no minor logit
    no_face = np.bincount(test.minor_seg, minlength=len(test.minor_y)) == 0
    assert np.isnan(z[no_face]).all()


def test_fit_head_keeps_a_branch_without_two_classes() -> None:
    rng = np.random.default_rng(2)
    embs, minor, _ = _dataset(rng, 200)
    ts = TrainingSet.from_embeddings(embs, minor, [0] * len(embs), minor_source="face")
    head = _head()
    before = {k: v.clone() for k, v in head.sexual_net.state_dict().items()}
    summary = fit_head(head, ts, ts, epochs=5)
    assert summary["sexual"]["trained"] is False
    for k, v in head.sexual_net.state_dict().items():
        assert torch.equal(v, before[k])


def test_platt_calibration_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))).astype(np.float64)
    cal = calibrate_platt(z, y)
    assert cal["a"] == pytest.approx(0.5, abs=0.05)
    assert cal["b"] == pytest.approx(-1.0, abs=0.1)


def test_threshold_for_fpr_meets_the_target() -> None:
    rng = np.random.default_rng(4)
    neg = rng.random(1000)
    scores = np.concatenate([neg, rng.random(100) * 0.2 + 0.8])
    labels = np.concatenate([np.zeros(1000), np.ones(100)])
    t = threshold_for_fpr(scores, labels, 0.01)
    assert (neg >= t).mean() <= 0.01
    assert (neg >= np.nextafter(t, 0) - 0.002).mean() > 0.005  # not needlessly high
    # separable data: the floor keeps the threshold meaningful
    assert threshold_for_fpr(np.array([0.0, 0.0, 0.9]), np.array([0, 0, 1]), 0.01) == 0.05


@pytest.mark.slow
@pytest.mark.utkface
def test_train_cli_end_to_end(utkface_dir: Path, tmp_path: Path) -> None:
    from genguard.cli import main

    out = tmp_path / "head"
    code = main(["train", "--data", str(utkface_dir), "--limit", "160", "--epochs", "20", "--hidden", "32",
                 "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert code == 0
    head = load_head(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["backbone"] == "bundled" and meta["minor_source"] == "face"
    assert meta["calibrated"]["minor"] is True and meta["calibrated"]["sexual"] is False
    assert meta["provenance"]["split_sizes"]["val"] > 0
    assert "minor_auc" in meta["metrics"]["val"]
    assert 0.0 < head.policy.minor_threshold <= 1.0


def test_packed_ensemble_equals_the_mean_of_its_members() -> None:
    from genguard.heads.head import _branch
    from genguard.learn.fit import _pack_members

    torch.manual_seed(0)
    members = [_branch(DIM, 16).eval() for _ in range(3)]
    packed = _pack_members(members).eval()
    x = torch.randn(50, DIM)
    expected = torch.stack([m(x) for m in members]).mean(dim=0)
    assert torch.allclose(packed(x), expected, atol=1e-5)
    assert packed[0].out_features == 48


def test_fit_head_with_members_saves_and_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    train, stop = (TrainingSet.from_embeddings(*_dataset(rng, n), minor_source="face") for n in (200, 80))
    head = _head()
    summary = fit_head(head, train, stop, epochs=10, lr=1e-2, batch_images=64, members=3)
    assert summary["minor"]["members"] == 3 and head.metadata.hidden == 48
    head.save(tmp_path / "h")
    again = load_head(tmp_path / "h")
    z0, z1 = train.image_logits(head, "minor"), train.image_logits(again, "minor")
    assert np.allclose(np.nan_to_num(z0), np.nan_to_num(z1), atol=1e-5)


def test_dropped_face_features_are_ignored_exactly() -> None:
    from genguard.learn.training import _drop_columns, _unused_columns

    layout = {"face": {"a": [0, 3], "b": [3, 7], "c": [7, 8]}}
    cols = _unused_columns(layout, ["a", "c"], "face")
    assert cols.tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="unknown feature slices"):
        _unused_columns(layout, ["z"], "face")
    head = _head()
    _drop_columns(head, cols)
    x = torch.randn(20, DIM)
    y = x.clone()
    y[:, 3:7] = torch.randn(20, 4) * 100
    head.eval()
    assert torch.allclose(head.minor_logits(x), head.minor_logits(y))
