"""EmbeddingCache: exact round trips, computing only what is missing, and robustness to bad entries."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import ScoreEmbedder, ScoreHead, painted
from PIL import Image

from genguard.learn.cache import EmbeddingCache, default_cache_dir, file_sha256
from genguard.embedders.base import FaceEmbedding, ImageEmbedding
from genguard.pipeline import Limits, Pipeline


def _embedding(with_faces: bool = True) -> ImageEmbedding:
    faces = (
        FaceEmbedding((1, 2, 30, 40), np.array([0.25], np.float32), "dlib", 0.9, age=7.5),
        FaceEmbedding((5, 6, 20, 22), np.array([-1.5], np.float32), "nudenet", 0.4, age=None),
    ) if with_faces else ()
    return ImageEmbedding(np.array([0.1, 0.2], np.float32), faces, {"open_nsfw": 0.01, "nudenet": {"FEET_EXPOSED": 0.3}})


def _same(a: ImageEmbedding, b: ImageEmbedding) -> None:
    np.testing.assert_array_equal(a.vector, b.vector)
    assert b.vector.dtype == np.float32
    assert dict(a.details) == dict(b.details)
    assert len(a.faces) == len(b.faces)
    for fa, fb in zip(a.faces, b.faces):
        assert (fa.box, fa.detector, fa.age) == (fb.box, fb.detector, fb.age)
        assert fa.detector_score == pytest.approx(fb.detector_score)
        np.testing.assert_array_equal(fa.vector, fb.vector)


@pytest.mark.parametrize("with_faces", [True, False])
def test_put_then_get_round_trips(tmp_path: Path, with_faces: bool) -> None:
    cache = EmbeddingCache(ScoreEmbedder(), tmp_path)
    digest = "ab" + "0" * 62
    assert cache.get(digest) is None
    cache.put(digest, _embedding(with_faces))
    got = cache.get(digest)
    assert got is not None
    _same(_embedding(with_faces), got)
    assert not list(cache.dir.rglob("*.tmp"))


def test_corrupt_entry_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = EmbeddingCache(ScoreEmbedder(), tmp_path)
    digest = "cd" + "1" * 62
    cache.put(digest, _embedding())
    cache._entry(digest).write_bytes(b"garbage")
    assert cache.get(digest) is None
    assert "unreadable cache entry" in caplog.text


def test_entries_are_separated_by_backbone_and_layout(tmp_path: Path) -> None:
    class Other(ScoreEmbedder):
        name = "clip:M/P"
        feature_layout: dict[str, Any] = {"image": {"clip": [0, 2]}}

    a, b = EmbeddingCache(ScoreEmbedder(), tmp_path), EmbeddingCache(Other(), tmp_path)
    assert a.dir != b.dir and a.dir.parent == b.dir.parent == tmp_path
    assert "/" not in b.dir.name and ":" not in b.dir.name


def test_embed_files_computes_only_missing_ones(tmp_path: Path) -> None:
    files = []
    for k in range(5):
        p = tmp_path / f"{k}.png"
        Image.fromarray(painted(k / 10, 0.5, age=k)).save(p)
        files.append(p)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    embedder = ScoreEmbedder()
    pipeline = Pipeline(embedder, ScoreHead(), Limits(1 << 26, 50_000_000, 16), store=EmbeddingCache(embedder, tmp_path / "cache"))

    def embed_files(paths: list[Path], batch_size: int, progress: Any = None) -> list[Any]:
        return [None if e is None else e[0] for e in pipeline.embeddings(paths, batch_size=batch_size, progress=progress)]

    done: list[int] = []
    first = embed_files([*files[:3], bad], batch_size=2, progress=done.append)
    assert first[3] is None and sum(done) == 4
    assert [round(float(e.vector[0]), 6) for e in first[:3] if e is not None] == [0.0, 0.1, 0.2]
    embedder.calls.clear()
    second = embed_files([*files, bad], batch_size=10)
    assert embedder.calls == [2]  # only the two new files were embedded; the bad one is retried and skipped
    for a, b in zip(first[:3], second[:3]):
        assert a is not None and b is not None
        _same(a, b)
    assert [len(e.faces) for e in second[:5] if e is not None] == [0, 1, 1, 1, 1]


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()


def test_default_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENGUARD_CACHE", str(tmp_path / "g"))
    assert default_cache_dir() == tmp_path / "g"
    monkeypatch.delenv("GENGUARD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "genguard"
