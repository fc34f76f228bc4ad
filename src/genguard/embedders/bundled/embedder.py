"""The default backbone: models that ship inside PyPI packages, run offline with onnxruntime.

For each frame it

1. finds faces with dlib's HOG detector and NudeNet's FACE_* classes, merging
   overlapping boxes (dlib's box is kept, since the landmark model was trained on it);
2. aligns each face with dlib's 5-point landmarks into a 64 px chip for the age
   network and a 224 px chip for open_nsfw;
3. embeds each face with the age network's 256-d penultimate layer
   (``layer_1_flatten``), open_nsfw's 1024-d penultimate layer (``Reshape:0``) and
   the age network's expected age;
4. embeds the whole frame with open_nsfw (its NSFW logit and 1024-d penultimate
   layer) and NudeNet's highest score for each of its 18 classes.

All ONNX models run batched: one call per model per batch of frames (open_nsfw
twice: whole frames, then face chips), and face finding overlaps the ONNX calls
on worker threads. The age model and the face open_nsfw call are skipped for
a batch with no face; they only ever embed faces.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from genguard._types import Box, FloatArray, RGBArray
from genguard.embedders.bundled.assets import asset_path, onnx_session, resolve_providers
from genguard.embedders.base import FaceEmbedding, ImageEmbedding

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
_FACE_CLASSES: Final = (NUDENET_LABELS.index("FACE_FEMALE"), NUDENET_LABELS.index("FACE_MALE"))
_NUDENET_SIZE: Final = 320
_NSFW_MEAN_BGR: Final = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_AGE_MEANS: Final = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
_AGE_BINS: Final = np.array([0.25] + list(range(1, 81)), dtype=np.float32)
_AGE_CHIP: Final = 64
_NSFW_CHIP: Final = 224
_CHIP_PADDING: Final = 0.2
_NSFW_FACE_PADDING: Final = 0.5
# A face found only by the 2x pass must be smaller than dlib's 80 px window at the detection resolution:
# bigger faces are the first pass's job, and a 2x-only box there is a marginal detection (the one false
# face in 19 skimage photos was 90 px, on the astronaut's suit; benchmarks/small_face_scores.py).
_SMALL_FACE_MAX_SIDE: Final = 80

_FACE_WORKERS: Final = 2
"""Threads that find and align faces beside onnxruntime (dlib releases the GIL)."""

FACE_DIM: Final = 256 + 1024 + 1
IMAGE_DIM: Final = 1 + len(NUDENET_LABELS) + 1024


class BundledEmbedder:
    """Face and whole-image embeddings from the bundled age, open_nsfw and NudeNet models.

    Parameters
    ----------
    device : {"cpu", "cuda"}, default "cpu"
        Where onnxruntime runs the models. ``"cuda"`` needs onnxruntime-gpu; without it the constructor raises.
    threads : int or None, default None
        onnxruntime intra-op threads per model; None uses one per physical core.
        Face finding runs on two more threads beside them, overlapping the ONNX calls.
    max_faces : int, default 16
        Faces embedded per frame, largest first; more are ignored (and counted in the details).
    min_face : int, default 12
        Smallest face side in pixels that is embedded.
    face_detectors : tuple of str, default ("dlib", "nudenet")
        Which detectors find faces; boxes found by both are merged.
    nudenet_face_threshold : float, default 0.3
        NudeNet FACE_* score above which a box counts as a face.
    detect_max_side : int, default 1024
        Frames larger than this are downscaled for dlib's detector (boxes are mapped back).
    small_faces : bool, default True
        Run dlib a second time at 2x, which finds faces down to about 40 px (at the detection
        resolution) instead of about 80 px; only faces the first pass missed, and under 80 px at the
        detection resolution, are added. Costs about
        0.45 s more per 1024 px frame on one slow core (docs/reliability.md); False restores the single pass.

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
        face_detectors: tuple[str, ...] = ("dlib", "nudenet"),
        nudenet_face_threshold: float = 0.3,
        detect_max_side: int = 1024,
        small_faces: bool = True,
    ) -> None:
        unknown = set(face_detectors) - {"dlib", "nudenet"}
        if unknown or not face_detectors:
            raise ValueError(f"face_detectors must be a non-empty subset of ('dlib', 'nudenet'), got {face_detectors}")
        self.device = device
        self.threads = threads
        self.max_faces = max_faces
        self.min_face = min_face
        self.face_detectors = tuple(face_detectors)
        self.nudenet_face_threshold = nudenet_face_threshold
        self.detect_max_side = detect_max_side
        self.small_faces = small_faces

        import dlib

        providers = resolve_providers(device)
        self._age = onnx_session("age", extra_outputs=("layer_1_flatten",), providers=providers, threads=threads)
        self._nsfw = onnx_session("open_nsfw", extra_outputs=("Reshape:0",), providers=providers, threads=threads)
        self._nudenet = onnx_session("nudenet", providers=providers, threads=threads)
        self._nsfw_input = self._nsfw.get_inputs()[0].name
        self._predictor = dlib.shape_predictor(str(asset_path("landmarks")))
        self._dlib = dlib
        # dlib's detector and predictor are not documented as thread-safe; the ONNX sessions are.
        # Each thread gets its own detector (cheap to build; detection releases the GIL, so two
        # frames are searched at once); the predictor (a 9 MB model, fast) stays behind a lock.
        self._dlib_lock = threading.Lock()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"BundledEmbedder(device={self.device!r}, face_detectors={self.face_detectors!r})"

    @property
    def feature_layout(self) -> dict[str, Any]:
        """Named slices of the face and image vectors."""
        return {
            "face": {"age_penultimate": [0, 256], "nsfw_penultimate": [256, 1280], "expected_age_div100": [1280, 1281]},
            "image": {
                "nsfw_logit": [0, 1],
                "nudenet_max": [1, 1 + len(NUDENET_LABELS)],
                "nsfw_penultimate": [1 + len(NUDENET_LABELS), IMAGE_DIM],
            },
            "nudenet_labels": list(NUDENET_LABELS),
        }

    # ----------------------------------------------------------------- embed
    def embed_gated(self, frames: Sequence[RGBArray], face_filter: Callable[[ImageEmbedding], bool]) -> list[ImageEmbedding]:
        """:meth:`embed` with the face stage only for frames where ``face_filter(embedding)`` is true.

        The pipeline uses it to skip the face stage where the sexual score alone already decides "allow".
        """
        return self.embed(frames, face_filter=face_filter)

    def embed(
        self, frames: Sequence[RGBArray], *, face_filter: Callable[[ImageEmbedding], bool] | None = None
    ) -> list[ImageEmbedding]:
        """Embed a batch of RGB frames; one :class:`ImageEmbedding` per frame, in order.

        NudeNet runs first, since its face boxes feed face finding. Face finding
        and alignment (dlib: GIL released) then run frame by frame on
        ``_FACE_WORKERS`` threads while onnxruntime scores the whole frames with
        open_nsfw on the calling thread. The face chips follow in one open_nsfw
        call and one age call; both are skipped when no face was found, since
        they only embed faces.

        With ``face_filter``, the whole-frame embeddings come first, and faces are
        searched only in frames for which ``face_filter(embedding)`` is true; the
        others are returned with ``faces_searched=False``. Guard uses this to skip
        the face stage where the sexual score alone already decides "allow".
        """
        if not frames:
            return []
        nude_scores, nude_faces = self._run_nudenet(frames)
        if face_filter is not None:
            logits, nsfw_feats = self._run_nsfw(np.stack([_nsfw_whole(f) for f in frames]))
            images = self._image_embeddings(nude_scores, logits, nsfw_feats, faces_searched=False)
            need = [i for i, e in enumerate(images) if face_filter(e)]
            if need:
                with ThreadPoolExecutor(max_workers=_FACE_WORKERS, thread_name_prefix="genguard-faces") as pool:
                    per_frame = list(pool.map(self._faces_and_chips, [frames[i] for i in need], [nude_faces[i] for i in need]))
                for i, faces in zip(need, self._face_embeddings(per_frame)):
                    images[i] = replace(images[i], faces=tuple(faces), faces_searched=True)
            return images
        with ThreadPoolExecutor(max_workers=_FACE_WORKERS, thread_name_prefix="genguard-faces") as pool:
            pending = [pool.submit(self._faces_and_chips, f, nf) for f, nf in zip(frames, nude_faces)]
            logits, nsfw_feats = self._run_nsfw(np.stack([_nsfw_whole(f) for f in frames]))
            per_frame = [p.result() for p in pending]
        images = self._image_embeddings(nude_scores, logits, nsfw_feats, faces_searched=True)
        return [replace(e, faces=tuple(f)) for e, f in zip(images, self._face_embeddings(per_frame))]

    def _face_embeddings(
        self, per_frame: Sequence[tuple[list[tuple[Box, str, float]], list[npt.NDArray[np.uint8]], list[FloatArray]]]
    ) -> list[list[FaceEmbedding]]:
        """Face embeddings from found faces and their chips: one open_nsfw call and one age call in all."""
        owners = [(i, *face) for i, (found, _, _) in enumerate(per_frame) for face in found]
        faces: list[list[FaceEmbedding]] = [[] for _ in per_frame]
        if not owners:
            return faces
        _, face_nsfw = self._run_nsfw(np.stack([chip for _, _, chips in per_frame for chip in chips]))
        age_feats, age_probs = self._run_age(np.stack([chip for _, chips, _ in per_frame for chip in chips]))
        ages = age_probs @ _AGE_BINS
        for k, (i, box, detector, score) in enumerate(owners):
            vector = np.concatenate([age_feats[k], face_nsfw[k], [ages[k] / 100.0]]).astype(np.float32)
            faces[i].append(FaceEmbedding(box=box, vector=vector, detector=detector, detector_score=score, age=float(ages[k])))
        return faces

    @staticmethod
    def _image_embeddings(
        nude_scores: FloatArray, logits: FloatArray, nsfw_feats: FloatArray, *, faces_searched: bool
    ) -> list[ImageEmbedding]:
        results = []
        for i in range(len(logits)):
            vector = np.concatenate([[logits[i]], nude_scores[i], nsfw_feats[i]]).astype(np.float32)
            exposed = {
                label: round(float(s), 4)
                for label, s in zip(NUDENET_LABELS, nude_scores[i])
                if "EXPOSED" in label and s >= 0.25
            }
            details = {"open_nsfw": round(float(_sigmoid(logits[i])), 4), "nudenet": exposed}
            results.append(ImageEmbedding(vector=vector, details=details, faces_searched=faces_searched))
        return results

    def _faces_and_chips(
        self, frame: RGBArray, nude_faces: list[tuple[Box, float]]
    ) -> tuple[list[tuple[Box, str, float]], list[npt.NDArray[np.uint8]], list[FloatArray]]:
        """Find and align the faces of one frame: the faces, their 64 px age chips, their normalised open_nsfw chips."""
        found = self._find_faces(frame, nude_faces)
        age_chips: list[npt.NDArray[np.uint8]] = []
        nsfw_chips: list[FloatArray] = []
        for box, _, _ in found:
            age_chip, nsfw_chip = self._align(frame, box)
            age_chips.append(age_chip)
            nsfw_chips.append(_nsfw_normalise(nsfw_chip))
        return found, age_chips, nsfw_chips

    # ---------------------------------------------------------------- models
    def _run_nudenet(self, frames: Sequence[RGBArray]) -> tuple[FloatArray, list[list[tuple[Box, float]]]]:
        batch = np.stack([_letterbox(f, _NUDENET_SIZE) for f in frames])
        (out,) = self._nudenet.run(None, {"images": batch})  # [B, 4 + 18, anchors]
        scores = out[:, 4:, :]
        class_max = scores.max(axis=2).astype(np.float32)
        faces = []
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            scale = max(h, w) / _NUDENET_SIZE
            face_score = scores[i, list(_FACE_CLASSES), :].max(axis=0)
            keep = np.flatnonzero(face_score >= self.nudenet_face_threshold)
            cand = []
            for a in keep[np.argsort(-face_score[keep])]:
                cx, cy, bw, bh = out[i, :4, a] * scale
                box = _clip_box((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), w, h)
                if box is not None:
                    cand.append((box, float(face_score[a])))
            faces.append(_nms(cand, 0.45))
        return class_max, faces

    def _run_nsfw(self, batch: FloatArray) -> tuple[FloatArray, FloatArray]:
        probs, feats = self._nsfw.run(["outputs", "Reshape:0"], {self._nsfw_input: batch})
        p = np.clip(probs[:, 1].astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p)).astype(np.float32), feats.reshape(len(batch), -1).astype(np.float32)

    def _run_age(self, chips: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray]:
        x = ((chips.astype(np.float32) - _AGE_MEANS) / np.float32(256.0)).transpose(0, 3, 1, 2)
        feats, probs = self._age.run(["layer_1_flatten", "probabilities"], {"images": np.ascontiguousarray(x)})
        return feats.reshape(len(chips), -1).astype(np.float32), probs.astype(np.float32)

    # ----------------------------------------------------------------- faces
    def _find_faces(self, frame: RGBArray, nude_faces: list[tuple[Box, float]]) -> list[tuple[Box, str, float]]:
        h, w = frame.shape[:2]
        found: list[tuple[Box, str, float]] = []
        if "dlib" in self.face_detectors:
            scale = min(1.0, self.detect_max_side / max(h, w))
            small = frame if scale == 1.0 else _resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))))
            found = self._dlib_faces(small, 0, scale, (w, h))
            if self.small_faces:  # 2x pass: faces under dlib's 80 px window; the first pass's boxes stay as they were
                found += [
                    f for f in self._dlib_faces(small, 1, scale, (w, h))
                    if (f[0][2] - f[0][0]) * scale < _SMALL_FACE_MAX_SIDE and all(_iou(f[0], b) < 0.3 for b, _, _ in found)
                ]
        if "nudenet" in self.face_detectors:
            for box, s in nude_faces:
                if all(_iou(box, b) < 0.3 for b, _, _ in found):
                    found.append((box, "nudenet", s))
        found = [f for f in found if min(f[0][2] - f[0][0], f[0][3] - f[0][1]) >= self.min_face]
        found.sort(key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
        if len(found) > self.max_faces:
            logger.info("frame has %d faces; embedding the %d largest", len(found), self.max_faces)
        return found[: self.max_faces]

    def _dlib_faces(self, small: RGBArray, upsample: int, scale: float, size: tuple[int, int]) -> list[tuple[Box, str, float]]:
        """dlib's HOG detections in ``small`` (upsampled ``upsample`` times), mapped back to the frame's ``size``."""
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._dlib.get_frontal_face_detector()
        rects, det_scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
        out = []
        for r, s in zip(rects, det_scores):
            box = _clip_box((r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale), *size)
            if box is not None:
                out.append((box, "dlib", float(s)))
        return out

    def _align(self, frame: RGBArray, box: Box) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        dlib = self._dlib
        rect = dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1)
        image = np.ascontiguousarray(frame)
        with self._dlib_lock:
            shape = self._predictor(image, rect)
            age_chip = dlib.extract_image_chip(image, dlib.get_face_chip_details(shape, _AGE_CHIP, _CHIP_PADDING))
            nsfw_chip = dlib.extract_image_chip(image, dlib.get_face_chip_details(shape, _NSFW_CHIP, _NSFW_FACE_PADDING))
        return np.asarray(age_chip, dtype=np.uint8), np.asarray(nsfw_chip, dtype=np.uint8)


# ------------------------------------------------------------- pure helpers
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-float(x)))


def _resize(frame: RGBArray, size: tuple[int, int]) -> RGBArray:
    import cv2

    interp = cv2.INTER_AREA if size[0] < frame.shape[1] else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(np.ascontiguousarray(frame), size, interpolation=interp), dtype=np.uint8)


def _letterbox(frame: RGBArray, size: int) -> FloatArray:
    """NudeNet's input: pad bottom/right to a square, resize to ``size``, RGB in [0, 1], CHW."""
    h, w = frame.shape[:2]
    side = max(h, w)
    if side * side > 4 * h * w:
        # Extreme aspect ratio (1x20000): shrink first, so the canvas is never side x side (a MemoryError).
        scale = size / side
        frame = _resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))))
        h, w, side = frame.shape[0], frame.shape[1], size
    if h == w:
        square = frame  # nothing to pad: skip the canvas and its copy
    else:
        square = np.zeros((side, side, 3), dtype=np.uint8)
        square[:h, :w] = frame
    resized = square if side == size else _resize(square, (size, size))
    out = np.empty((3, size, size), dtype=np.float32)
    return np.divide(resized.transpose(2, 0, 1), np.float32(255.0), out=out)


def _nsfw_whole(frame: RGBArray) -> FloatArray:
    """open_nsfw's input for a whole frame: bilinear 256x256, centre crop 224, BGR minus mean."""
    img = Image.fromarray(np.ascontiguousarray(frame)).resize((256, 256), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)[16:240, 16:240]
    return _nsfw_normalise(arr)


def _nsfw_normalise(rgb224: npt.NDArray[np.uint8]) -> FloatArray:
    return np.ascontiguousarray(rgb224[:, :, ::-1].astype(np.float32) - _NSFW_MEAN_BGR)


def _clip_box(box: tuple[float, float, float, float], w: int, h: int) -> Box | None:
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return (x0, y0, x1, y1)


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(cands: list[tuple[Box, float]], threshold: float) -> list[tuple[Box, float]]:
    """Greedy non-maximum suppression over boxes sorted by descending score."""
    kept: list[tuple[Box, float]] = []
    for box, score in cands:
        if all(_iou(box, k) < threshold for k, _ in kept):
            kept.append((box, score))
    return kept
