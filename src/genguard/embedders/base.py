"""What every backbone produces, and the protocol it implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from genguard._types import Box, FloatArray, RGBArray

__all__ = ["Embedder", "FaceEmbedding", "ImageEmbedding"]


@dataclass(frozen=True, slots=True)
class FaceEmbedding:
    """One face found in a frame.

    Attributes
    ----------
    box : tuple of int
        ``(left, top, right, bottom)`` in pixels of the frame.
    vector : ndarray
        The face's feature vector (``Embedder.face_dim`` floats).
    detector : str
        Which detector found it (for example ``"dlib"`` or ``"nudenet"``).
    detector_score : float
        The detector's confidence.
    age : float or None
        The backbone's own age estimate in years, where it has one.
    """

    box: Box
    vector: FloatArray
    detector: str
    detector_score: float
    age: float | None = None


@dataclass(frozen=True, slots=True)
class ImageEmbedding:
    """Everything a backbone extracted from one frame.

    Attributes
    ----------
    vector : ndarray
        The whole-frame feature vector (``Embedder.image_dim`` floats).
    faces : tuple of FaceEmbedding
        One entry per face found; empty for backbones that find no faces.
    details : mapping
        Backbone-specific, JSON-ready extras for a verdict's reasons
        (for example the bundled detectors' own scores).
    faces_searched : bool
        False when the face stage was skipped for this frame (see ``face_filter``
        in :meth:`BundledEmbedder.embed`); ``faces`` is then empty but says nothing.
    face_proposals : tuple
        Face boxes a whole-frame detector proposed, ``((left, top, right, bottom), score)``
        in frame pixels, for the face stage to check (the bundled backbone's NudeNet faces);
        not part of the vector, not cached.
    """

    vector: FloatArray
    faces: tuple[FaceEmbedding, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    faces_searched: bool = True
    face_proposals: tuple[tuple[tuple[float, float, float, float], float], ...] = ()


@runtime_checkable
class Embedder(Protocol):
    """A backbone: turns RGB frames into one image embedding each.

    ``name`` is the registry id a head records (``"bundled"``, ``"clip:ViT-B-32/laion2b_s34b_b79k"``).
    ``face_dim`` is 0 for backbones that find no faces; a head for such a backbone
    scores the minor axis on the image vector instead.
    """

    @property
    def name(self) -> str: ...

    @property
    def face_dim(self) -> int: ...

    @property
    def image_dim(self) -> int: ...

    @property
    def feature_layout(self) -> Mapping[str, Any]:
        """Named slices of the face and image vectors, saved in a head's metadata."""
        ...

    def embed(self, frames: Sequence[RGBArray]) -> list[ImageEmbedding]:
        """Embed a batch of frames; one result per frame, in order."""
        ...
