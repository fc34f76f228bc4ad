"""On-disk cache of embeddings, keyed by backbone id, the input's sha256 and the frame index.

It is the :class:`genguard.pipeline.EmbeddingStore` of training and evaluation: the
pipeline asks it before running the models on a frame.

Computing features is the slow part of training and evaluation; with the cache,
re-training and re-evaluating read ``.npz`` files instead of running the models.
Entries hold only arrays and JSON text (``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from genguard._digest import default_cache_dir, file_sha256
from genguard.embedders.base import Embedder, FaceEmbedding, ImageEmbedding

__all__ = ["EmbeddingCache", "default_cache_dir", "file_sha256"]

logger = logging.getLogger(__name__)

CACHE_VERSION = "2"


class EmbeddingCache:
    """Embeddings of image frames for one backbone (an :class:`~genguard.pipeline.EmbeddingStore`).

    Parameters
    ----------
    embedder : Embedder
        The backbone; its ``name`` (and the cache version) name the sub-folder.
    root : path or None
        Cache folder; None uses :func:`default_cache_dir`.
    """

    def __init__(self, embedder: Embedder, root: str | os.PathLike[str] | None = None) -> None:
        self.embedder = embedder
        key = hashlib.sha256(f"{CACHE_VERSION}:{embedder.name}:{json.dumps(embedder.feature_layout, sort_keys=True)}".encode()).hexdigest()[:16]
        safe = embedder.name.replace(":", "_").replace("/", "_")
        self.root = Path(root) if root is not None else default_cache_dir()
        self.dir = self.root / f"{safe}-{key}"

    def _entry(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npz"

    def get(self, digest: str) -> ImageEmbedding | None:
        path = self._entry(digest)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return _decode(z)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None

    def put(self, digest: str, embedding: ImageEmbedding) -> None:
        path = self._entry(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **_encode(embedding, self.embedder.face_dim))
            os.replace(tmp, path)  # atomic: readers never see half an entry
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _encode(e: ImageEmbedding, face_dim: int) -> dict[str, Any]:
    faces = e.faces
    return {
        "vector": e.vector,
        "face_vectors": np.stack([f.vector for f in faces]) if faces else np.zeros((0, face_dim), np.float32),
        "face_boxes": np.array([f.box for f in faces], dtype=np.int64).reshape(-1, 4),
        "face_scores": np.array([f.detector_score for f in faces], dtype=np.float32),
        "face_ages": np.array([np.nan if f.age is None else f.age for f in faces], dtype=np.float32),
        "face_detectors": np.array(json.dumps([f.detector for f in faces])),
        "details": np.array(json.dumps(dict(e.details))),
        "faces_searched": np.array(e.faces_searched),
    }


def _decode(z: Any) -> ImageEmbedding:
    detectors = json.loads(str(z["face_detectors"]))
    faces = tuple(
        FaceEmbedding(
            box=tuple(int(v) for v in z["face_boxes"][i]),  # type: ignore[arg-type]
            vector=z["face_vectors"][i].astype(np.float32),
            detector=detectors[i],
            detector_score=float(z["face_scores"][i]),
            age=None if np.isnan(z["face_ages"][i]) else float(z["face_ages"][i]),
        )
        for i in range(len(detectors))
    )
    return ImageEmbedding(vector=z["vector"].astype(np.float32), faces=faces, details=json.loads(str(z["details"])),
                          faces_searched=bool(z["faces_searched"]))
