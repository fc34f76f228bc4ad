"""Shared fixtures: one real bundled Guard per session, benign images, UTKFace samples, and stubs.

Rule for every test here: no sexual imagery. The blocking rule is tested by
injecting scores (stub embedder/head, or thresholds), never with sexual images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genguard.learn.datasets import parse_utkface_name
from genguard.embedders.base import FaceEmbedding, ImageEmbedding
from genguard.heads.head import Head, HeadMetadata, ImageScores

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
UTKFACE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "dev"


# ----------------------------------------------------------------- real models
@pytest.fixture(scope="session")
def guard() -> Any:
    """The real bundled Guard, built once per session (the models load once).

    Tests must not change its attributes; build a Guard from ``guard.embedder``
    and ``guard.head`` for a different policy.
    """
    from genguard import Guard

    return Guard()  # both scores for every image (the default)


@pytest.fixture(scope="session")
def benign_images() -> dict[str, np.ndarray]:
    """Public-domain photos from scikit-image: one adult face (astronaut) and three scenes without people."""
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket()}


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    """``../shared/data/utkface/dev`` beside the checkout, read in place; skips when absent."""
    if not UTKFACE_DIR.is_dir():
        pytest.skip(f"UTKFace faces not found at {UTKFACE_DIR}; these tests need ../shared/data/utkface/dev")
    return UTKFACE_DIR


def utkface_sample(root: Path, lo: int, hi: int, n: int) -> list[Path]:
    """``n`` evenly spaced UTKFace files (sorted by name) whose age is in ``[lo, hi]``."""
    matches = []
    for p in sorted(root.iterdir()):
        parsed = parse_utkface_name(p.name)
        if parsed is not None and lo <= parsed[0] <= hi:
            matches.append(p)
    if len(matches) < n:
        pytest.skip(f"only {len(matches)} UTKFace faces aged {lo}-{hi} in {root}, need {n}")
    return [matches[int(i * len(matches) / n)] for i in range(n)]


# ----------------------------------------------------------------------- stubs
class ScoreEmbedder:
    """A stub backbone whose scores are painted into the image, so tests choose them.

    Pixel ``[0, 0]`` of each frame carries ``(R, G, B) = (100 * minor, 100 * sexual, face age)``;
    a frame with ``B > 0`` has one face of that age. With :class:`ScoreHead` the
    scores come out exactly as painted.
    """

    name = "stub"
    face_dim = 1
    image_dim = 2
    feature_layout: dict[str, Any] = {"face": {"minor": [0, 1]}, "image": {"minor": [0, 1], "sexual": [1, 2]}}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, frames: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        self.calls.append(len(frames))
        out = []
        for f in frames:
            r, g, b = (int(v) for v in f[0, 0, :3])
            minor, sexual = r / 100, g / 100
            faces = ()
            if b > 0:
                faces = (FaceEmbedding((1, 2, 11, 12), np.array([minor], np.float32), "stub", 0.9, float(b)),)
            vector = np.array([minor, sexual], np.float32)
            out.append(ImageEmbedding(vector=vector, faces=faces, details={"stub": True}))
        return out


class StagedScoreEmbedder(ScoreEmbedder):
    """:class:`ScoreEmbedder` with separate whole-frame and face stages (like the bundled backbone)."""

    def __init__(self) -> None:
        super().__init__()
        self.face_calls: list[int] = []

    def embed_images(self, frames: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        return [dataclasses.replace(e, faces=(), faces_searched=False) for e in ScoreEmbedder.embed(self, frames)]

    def embed_faces(self, frames: Sequence[np.ndarray], images: Sequence[ImageEmbedding]) -> list[ImageEmbedding]:
        self.face_calls.append(len(frames))
        return [dataclasses.replace(i, faces=e.faces, faces_searched=True) for i, e in zip(images, ScoreEmbedder.embed(self, frames))]


class ScoreHead(Head):
    """A face-based head that returns the painted scores (exact Python floats) instead of running a network."""

    def __init__(self, policy: dict[str, float] | None = None, no_face_minor: float = 0.0) -> None:
        meta = HeadMetadata(backbone="stub", minor_source="face", minor_dim=1, sexual_dim=2, name="stub-head",
                            no_face_minor=no_face_minor)
        if policy is not None:
            meta.policy = policy
        super().__init__(meta)

    def sexual_scores(self, embeddings: Sequence[ImageEmbedding]) -> np.ndarray:  # type: ignore[override]
        return np.array([round(float(e.vector[1]), 6) for e in embeddings])

    def score(self, embeddings: Sequence[ImageEmbedding]) -> list[ImageScores]:  # type: ignore[override]
        out = []
        for e in embeddings:
            minor_of = [round(float(f.vector[0]), 6) for f in e.faces]
            minor = (max(minor_of) if minor_of else self.metadata.no_face_minor) if e.faces_searched else None
            out.append(ImageScores(minor, round(float(e.vector[1]), 6), tuple(minor_of)))
        return out


def painted(minor: float, sexual: float, age: int = 0, size: int = 16) -> np.ndarray:
    """A benign flat image that makes :class:`ScoreEmbedder` report these scores (and a face of ``age`` if > 0)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[0, 0] = (round(minor * 100), round(sexual * 100), age)
    return img


@pytest.fixture
def stub_guard() -> Callable[..., Any]:
    """Factory for a Guard over :class:`ScoreEmbedder` and :class:`ScoreHead`; kwargs go to ``Guard``."""
    from genguard import Guard

    def make(*, head_policy: dict[str, float] | None = None, no_face_minor: float = 0.0, **kwargs: Any) -> Any:
        return Guard(embedder=ScoreEmbedder(), head=ScoreHead(head_policy, no_face_minor), **kwargs)

    return make
