"""The head: a small torch model that turns embeddings into two calibrated scores.

Two branches share one module:

- ``minor``: an MLP over one *unit*, a face (backbones that find faces) or the
  whole image (backbones that do not); an image's minor score is the maximum over
  its faces;
- ``sexual``: a linear or MLP branch over the whole-image vector.

Inputs are standardised with stored means and deviations, and each branch's
logit is calibrated (``sigmoid(a * z + b)``, Platt/temperature scaling) before it
is a score. Weights are saved as safetensors; everything else (backbone id,
feature layout, thresholds, calibration, provenance, metrics) is plain JSON
beside them. Thresholds never live in the weights.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import torch
from torch import nn

from genguard._types import FloatArray
from genguard.embedders.base import ImageEmbedding
from genguard.errors import HeadError, ModelFileError
from genguard.policy import Policy

__all__ = ["FORMAT_VERSION", "Head", "HeadMetadata", "ImageScores", "load_head"]

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1


@dataclass
class HeadMetadata:
    """Everything about a head that is not a weight; saved as JSON.

    Attributes
    ----------
    backbone : str
        The embedder this head reads (``"bundled"``, ``"clip:ViT-B-32/laion2b_s34b_b79k"``).
    minor_source : {"face", "image"}
        Whether the minor branch scores faces or whole images.
    minor_dim, sexual_dim, hidden : int
        Input sizes and the minor branch's hidden width (0 for a linear branch).
    no_face_minor : float
        Minor score given to an image with no face, for face-based heads.
    policy : dict
        Thresholds (:class:`Policy` fields).
    calibration : dict
        ``{"minor": {"a": .., "b": ..}, "sexual": {...}}``; applied as ``sigmoid(a * z + b)``.
    calibrated : dict
        Per axis, whether the calibration was fitted on labelled data.
    name, feature_layout, provenance, metrics
        Free-form, JSON-ready descriptions.
    """

    backbone: str
    minor_source: Literal["face", "image"]
    minor_dim: int
    sexual_dim: int
    hidden: int = 0
    sexual_hidden: int = 0
    no_face_minor: float = 0.0
    policy: dict[str, float] = field(default_factory=lambda: Policy().to_dict())
    calibration: dict[str, dict[str, float]] = field(
        default_factory=lambda: {"minor": {"a": 1.0, "b": 0.0}, "sexual": {"a": 1.0, "b": 0.0}}
    )
    calibrated: dict[str, bool] = field(default_factory=lambda: {"minor": False, "sexual": False})
    name: str = "head"
    feature_layout: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadMetadata:
        known = set(cls.__dataclass_fields__)
        missing = {"backbone", "minor_source", "minor_dim", "sexual_dim"} - set(data)
        if missing:
            raise HeadError(f"head metadata lacks {sorted(missing)}")
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise HeadError(
                f"head format {data['format_version']} is newer than this genguard reads ({FORMAT_VERSION}); upgrade genguard"
            )
        if data["minor_source"] not in ("face", "image"):
            raise HeadError(f"minor_source must be 'face' or 'image', got {data['minor_source']!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class ImageScores:
    """A head's output for one frame: the two scores and each face's minor score.

    ``minor`` is None when the frame's face stage did not run (``faces_searched=False``).
    """

    minor: float | None
    sexual: float
    face_minor: tuple[float, ...]


def _branch(in_dim: int, hidden: int, dropout: float = 0.2) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, 1)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


class Head(nn.Module):
    """Two-output scoring head (minor, sexual) with standardisation and calibration.

    Parameters
    ----------
    metadata : HeadMetadata
        Sizes, backbone and thresholds; see :class:`HeadMetadata`.

    Examples
    --------
    >>> meta = HeadMetadata(backbone="test", minor_source="image", minor_dim=4, sexual_dim=4)
    >>> head = Head(meta)
    >>> head.minor_logits(torch.zeros(2, 4)).shape
    torch.Size([2])
    """

    minor_mean: torch.Tensor
    minor_std: torch.Tensor
    sexual_mean: torch.Tensor
    sexual_std: torch.Tensor

    def __init__(self, metadata: HeadMetadata) -> None:
        super().__init__()
        self.metadata = metadata
        self.minor_net = _branch(metadata.minor_dim, metadata.hidden)
        self.sexual_net = _branch(metadata.sexual_dim, metadata.sexual_hidden)
        self.register_buffer("minor_mean", torch.zeros(metadata.minor_dim))
        self.register_buffer("minor_std", torch.ones(metadata.minor_dim))
        self.register_buffer("sexual_mean", torch.zeros(metadata.sexual_dim))
        self.register_buffer("sexual_std", torch.ones(metadata.sexual_dim))

    # ------------------------------------------------------------ forward
    def minor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated minor logits for ``[N, minor_dim]`` inputs."""
        out: torch.Tensor = self.minor_net((x - self.minor_mean) / self.minor_std).squeeze(-1)
        return out

    def sexual_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated sexual logits for ``[N, sexual_dim]`` inputs."""
        out: torch.Tensor = self.sexual_net((x - self.sexual_mean) / self.sexual_std).squeeze(-1)
        return out

    def calibrate(self, axis: str, logits: torch.Tensor) -> torch.Tensor:
        """Apply the stored calibration of ``axis`` and return probabilities."""
        c = self.metadata.calibration[axis]
        return torch.sigmoid(c["a"] * logits + c["b"])

    @property
    def policy(self) -> Policy:
        """The thresholds stored with this head."""
        return Policy.from_dict(self.metadata.policy)

    @property
    def identifier(self) -> str:
        """``name@backbone``, as recorded in verdicts."""
        return f"{self.metadata.name}@{self.metadata.backbone}"

    # ------------------------------------------------------------- scoring
    @torch.inference_mode()
    def sexual_scores(self, embeddings: Sequence[ImageEmbedding]) -> FloatArray:
        """Calibrated sexual scores of frame embeddings (the sexual branch reads only the image vector)."""
        if not embeddings:
            return np.zeros((0,), np.float32)
        images = torch.from_numpy(np.stack([e.vector for e in embeddings])).to(self.minor_mean.device)
        out: FloatArray = self.calibrate("sexual", self.sexual_logits(images)).cpu().numpy()
        return out

    @torch.inference_mode()
    def score(self, embeddings: Sequence[ImageEmbedding]) -> list[ImageScores]:
        """Score a batch of frame embeddings; one :class:`ImageScores` per frame.

        A frame whose face stage was skipped (``faces_searched=False``) gets ``minor=None``.
        """
        if not embeddings:
            return []
        was_training = self.training
        self.eval()
        try:
            device = self.minor_mean.device
            sexual = self.sexual_scores(embeddings)
            if self.metadata.minor_source == "image":
                images = torch.from_numpy(np.stack([e.vector for e in embeddings])).to(device)
                minor = self.calibrate("minor", self.minor_logits(images)).cpu().numpy()
                return [ImageScores(float(m), float(s), ()) for m, s in zip(minor, sexual)]
            face_vectors: list[FloatArray] = [f.vector for e in embeddings for f in e.faces]
            if face_vectors:
                faces = torch.from_numpy(np.stack(face_vectors)).to(device)
                face_probs = self.calibrate("minor", self.minor_logits(faces)).cpu().numpy()
            else:
                face_probs = np.zeros((0,), np.float32)
            out, k = [], 0
            for e, s in zip(embeddings, sexual):
                probs = tuple(float(p) for p in face_probs[k : k + len(e.faces)])
                k += len(e.faces)
                image_minor: float | None = None  # not scored: the face stage was skipped
                if e.faces_searched:
                    image_minor = max(probs) if probs else float(self.metadata.no_face_minor)
                out.append(ImageScores(image_minor, float(s), probs))
            return out
        finally:
            self.train(was_training)

    # ---------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``PATH.safetensors`` and ``PATH.json`` (PATH without suffix); returns the weights path."""
        from safetensors.torch import save_file

        stem = Path(path).with_suffix("")
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(stem.with_suffix(".safetensors")), metadata={"format": "genguard-head"})
        stem.with_suffix(".json").write_text(json.dumps(self.metadata.to_dict(), indent=2, sort_keys=True) + "\n")
        return stem.with_suffix(".safetensors")


def load_head(path: str | os.PathLike[str], *, device: str = "cpu") -> Head:
    """Load a head from ``PATH.safetensors`` + ``PATH.json`` (either path, or the stem).

    Uses safetensors only: no pickle is ever read.

    Raises
    ------
    ModelFileError
        Either file is missing.
    HeadError
        The metadata is malformed or the weights do not match it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = Path(path).with_suffix("") if Path(path).suffix in (".safetensors", ".json") else Path(path)
    weights, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for f in (weights, meta_path):
        if not f.is_file():
            raise ModelFileError(f"head file {f} is missing; a head is a .safetensors file with a .json beside it")
    try:
        metadata = HeadMetadata.from_dict(json.loads(meta_path.read_text()))
        head = Head(metadata)  # bad sizes fail here, bad thresholds or calibration on the next line
        _ = head.policy, [float(metadata.calibration[axis][k]) for axis in ("minor", "sexual") for k in ("a", "b")]
    except HeadError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise HeadError(f"{meta_path} is not valid head metadata: {exc}") from exc
    try:
        state = load_file(str(weights), device="cpu")
        head.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise HeadError(f"{weights} does not match its metadata {meta_path}: {exc}") from exc
    head.eval()
    return head.to(device)
