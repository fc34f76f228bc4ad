"""What the pipeline passes between its stages, and the protocols of the parts it calls.

:mod:`genguard.pipeline` runs the stages; the parts (a blocklist, an embedding
store, a staged backbone) only need to fit these protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from genguard._types import RGBArray
from genguard.defences.blocklist import FrameHash
from genguard.embedders.base import ImageEmbedding
from genguard.errors import GenguardError
from genguard.imageio.loader import MAX_WORK_BYTES, LoadedImage

__all__ = ["EmbeddingStore", "FrameHasher", "Item", "Limits", "Matcher", "StagedEmbedder"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Loader limits; see :func:`genguard.load_image`."""

    max_bytes: int
    max_pixels: int
    max_frames: int
    max_work_bytes: int = MAX_WORK_BYTES


@dataclass(frozen=True, slots=True)
class Item:
    """One image after the load stage: decoded frames and their hashes, or the error."""

    loaded: LoadedImage | None
    error: GenguardError | None
    pdq: tuple[FrameHash, ...] = ()


@runtime_checkable
class Matcher(Protocol):
    """What the pipeline needs of a blocklist: the best match among an image's frame hashes."""

    def match_frames(self, hashes: Sequence[FrameHash]) -> Mapping[str, Any] | None: ...


@runtime_checkable
class FrameHasher(Protocol):
    """A blocklist that computes the frame hashes it matches (:class:`~genguard.defences.blocklist.Blocklist`)."""

    def hash_frames(self, frames: Sequence[RGBArray]) -> Sequence[FrameHash]: ...


@runtime_checkable
class EmbeddingStore(Protocol):
    """Embeddings already computed, keyed by ``"<sha256 of the input>-<frame index>"``."""

    def get(self, key: str) -> ImageEmbedding | None: ...

    def put(self, key: str, embedding: ImageEmbedding) -> None: ...


@runtime_checkable
class StagedEmbedder(Protocol):
    """An embedder whose whole-frame and face stages run separately (the bundled backbone)."""

    def embed_images(self, frames: Sequence[RGBArray]) -> list[ImageEmbedding]:
        """The whole-frame stage alone; faces not searched (``faces_searched=False``)."""
        ...

    def embed_faces(self, frames: Sequence[RGBArray], images: Sequence[ImageEmbedding]) -> list[ImageEmbedding]:
        """The face stage for frames whose whole-frame embeddings are ``images``."""
        ...
