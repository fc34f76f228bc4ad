"""The bundled face stage: find faces, keep the ones worth embedding, cut their age chips, run the age network.

:class:`FaceStage` is what ``BundledEmbedder.embed_faces`` runs, and also what the age
network's trainer (:mod:`genguard.learn.agenet.chips`) runs to cut its training chips, so
the network is trained on exactly the chips it scores at inference. :func:`age_outputs`
is the age network's arithmetic (input scaling, mirror averaging), shared in the same way
by the embedder and by the calibration of a tuned network.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from genguard._types import FloatArray, RGBArray
from genguard.embedders.bundled.assets import asset_path, onnx_session
from genguard.embedders.bundled.faces import FaceFinder, FoundFace, Search, face_chip
from genguard.embedders.bundled.proposals import Proposal

__all__ = ["AGE_BINS", "AGE_MEANS", "FaceStage", "age_outputs"]

logger = logging.getLogger(__name__)

AGE_BINS: Final = np.array([0.25] + list(range(1, 81)), dtype=np.float32)
"""The age (years) of each of the age network's 81 output bins."""
AGE_MEANS: Final = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
"""RGB means subtracted from a chip before it is divided by 256 (the age network's input scaling)."""


class FaceStage:
    """Faces of a batch of frames, each with its aligned 64 px age chip.

    Parameters
    ----------
    providers : list of str
        onnxruntime execution providers for the BlazeFace detector.
    threads : int or None
        onnxruntime intra-op threads.
    max_faces : int
        Faces kept per frame, largest first.
    min_face : int
        Smallest face side in pixels that is kept.
    detect_max_side : int
        Frames larger than this are searched on a copy shrunk to it.
    """

    def __init__(self, *, providers: list[str], threads: int | None, max_faces: int, min_face: int, detect_max_side: int) -> None:
        import dlib

        self.max_faces = max_faces
        self.min_face = min_face
        self.finder = FaceFinder(onnx_session("blazeface", providers=providers, threads=threads), max_side=detect_max_side)
        self._predictor = dlib.shape_predictor(str(asset_path("landmarks")))
        self._lock = threading.Lock()  # dlib's shape predictor is not documented as thread-safe

    def chips(
        self, frames: Sequence[RGBArray], proposals: Sequence[Sequence[Proposal]] | None = None
    ) -> list[list[tuple[FoundFace, npt.NDArray[np.uint8]]]]:
        """For each frame, its kept faces (largest first) with their 64 x 64 RGB age chips.

        ``proposals`` are NudeNet's face boxes per frame, passed to :meth:`FaceFinder.confirm`.
        """
        if not frames:
            return []
        return self.finish(frames, self.finder.search(list(frames)), proposals)

    def finish(
        self, frames: Sequence[RGBArray], search: Search, proposals: Sequence[Sequence[Proposal]] | None = None
    ) -> list[list[tuple[FoundFace, npt.NDArray[np.uint8]]]]:
        """:meth:`chips` for frames whose :meth:`FaceFinder.search` is done (it can run beside NudeNet)."""
        found = [self.select(faces) for faces in self.finder.confirm(search, proposals)]
        with self._lock:
            return [[(face, face_chip(frame, face.box, self._predictor)) for face in faces] for frame, faces in zip(frames, found)]

    def select(self, faces: list[FoundFace]) -> list[FoundFace]:
        """Faces at least ``min_face`` px on a side, largest first, at most ``max_faces``."""
        kept = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= self.min_face]
        kept.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        if len(kept) > self.max_faces:
            logger.info("frame has %d faces; embedding the %d largest", len(kept), self.max_faces)
        return kept[: self.max_faces]


def age_outputs(session: Any, chips: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The tuned age network on 64 px RGB chips, averaged over each chip and its mirror image.

    Returns ``(features [N, 256], age probabilities [N, 81], minor logits [N, 3])``; the minor
    logits are the under-12, under-15 and under-18 outputs. The trainer
    (:mod:`genguard.learn.agenet`) calibrates with this same function.
    """
    n = len(chips)
    if n == 0:
        return np.zeros((0, 256), np.float32), np.zeros((0, len(AGE_BINS)), np.float32), np.zeros((0, 3), np.float32)
    x = ((chips.astype(np.float32) - AGE_MEANS) / np.float32(256.0)).transpose(0, 3, 1, 2)
    both = np.ascontiguousarray(np.concatenate([x, x[:, :, :, ::-1]]))
    outputs = session.run(["layer_1_flatten", "probabilities", "minor_logits"], {"images": both})

    def mean(a: Any) -> FloatArray:
        a = np.asarray(a, np.float32).reshape(2 * n, -1)
        out: FloatArray = (a[:n] + a[n:]) / np.float32(2.0)
        return out

    feats, probs, minor = (mean(a) for a in outputs)
    return feats, probs, minor
