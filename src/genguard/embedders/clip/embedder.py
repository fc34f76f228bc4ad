"""The CLIP backbone: L2-normalised OpenCLIP image embeddings, built with open_clip's own factory.

``clip:MODEL/PRETRAINED`` builds :class:`ClipEmbedder`; where its weights come from
(and how ``genguard weights`` downloads them) is :mod:`genguard.embedders.clip.weights`,
re-exported here. The preprocessing is open_clip's transform for the tag (mean, std,
interpolation, resize mode), so it travels with the weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from genguard._types import FloatArray, RGBArray
from genguard.errors import DeviceError
from genguard.embedders.clip.offline import build_model, build_tokenizer
from genguard.embedders.clip.weights import WEIGHTS_ENV, check_model, download_weights, resolve_weights
from genguard.embedders.base import ImageEmbedding

__all__ = ["WEIGHTS_ENV", "ClipEmbedder", "download_weights", "resolve_weights"]

logger = logging.getLogger(__name__)

_PRECISIONS: Final = ("fp32", "fp16", "bf16")


class ClipEmbedder:
    """L2-normalised OpenCLIP image embeddings; no faces (``face_dim`` is 0).

    Parameters
    ----------
    model : str, default "ViT-B-32"
        OpenCLIP architecture.
    pretrained : str, default "laion2b_s34b_b79k"
        A pretrained tag of ``model`` (its preprocessing is used) or a local ``.safetensors`` file.
    device : {"cpu", "cuda"}, default "cpu"
        ``"cuda"`` without a GPU raises.
    weights : path or None, default None
        The weights file for the tag, overriding ``$GENGUARD_CLIP_WEIGHTS`` and the caches.
    cache_dir : path or None, default None
        Hugging Face hub cache to look in.
    precision : {"fp32", "fp16", "bf16"} or None, default None
        None is fp32 on CPU and fp16 on CUDA. Outputs are float32 either way.
    batch_size : int, default 32
        Frames per forward pass.
    threads : int or None, default None
        If given, sets torch's (process-wide) intra-op thread count.

    Raises
    ------
    ModelFileError
        The weights are not on this machine or do not fit ``model``.
    UnknownBackboneError
        Unknown model or tag.

    Examples
    --------
    >>> emb = ClipEmbedder("ViT-B-32", "laion2b_s34b_b79k")  # doctest: +SKIP
    >>> emb.embed([frame])[0].vector.shape                    # doctest: +SKIP
    (512,)
    """

    face_dim: Final = 0

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str = "laion2b_s34b_b79k",
        *,
        device: str = "cpu",
        weights: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        precision: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        import open_clip
        import torch

        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceError(f"device={device!r} asked for, but torch sees no CUDA GPU; use device='cpu'")
        precision = precision or ("fp16" if device.startswith("cuda") else "fp32")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None:
            torch.set_num_threads(threads)
        check_model(model)
        self.model_name, self.pretrained, self.device, self.precision, self.batch_size = model, pretrained, device, precision, batch_size
        self.weights_path = resolve_weights(model, pretrained, weights=weights, cache_dir=cache_dir)
        tag_cfg = open_clip.get_pretrained_cfg(model, pretrained)
        if tag_cfg:
            self._name = f"clip:{model}/{pretrained}"
        else:
            from genguard._digest import file_sha256

            self._name = f"clip:{model}/{self.weights_path.name}@sha256:{file_sha256(self.weights_path)[:16]}"
        # open_clip builds the architecture only; the weights are read here with safetensors (never a
        # pickle, whatever the file is called) and nothing is fetched: see genguard.embedders.clip.offline.
        self._model, self._preprocess = build_model(model, self.weights_path, precision=precision, device=device, tag_cfg=dict(tag_cfg))
        self._cache_dir = None if cache_dir is None else str(cache_dir)
        self._model.eval()
        self._dtype = next(self._model.parameters()).dtype
        self._image_dim = int(self._model.visual.output_dim)
        self._tokenizer: Any = None
        logger.info("loaded %s from %s on %s (%s)", self._name, self.weights_path, device, precision)

    @property
    def name(self) -> str:
        """``clip:MODEL/TAG``, or ``clip:MODEL/FILE@sha256:PREFIX`` for a local file."""
        return self._name

    @property
    def image_dim(self) -> int:
        """Size of the CLIP embedding."""
        return self._image_dim

    @property
    def feature_layout(self) -> Mapping[str, Any]:
        """The image vector is one L2-normalised CLIP embedding."""
        return {"image": {"clip": [0, self._image_dim]}, "l2_normalised": True}

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature (``exp(logit_scale)``, at most 100)."""
        return float(min(self._model.logit_scale.detach().float().exp().item(), 100.0))

    def embed(self, frames: Sequence[RGBArray]) -> list[ImageEmbedding]:
        """Embed a batch of RGB frames; one :class:`ImageEmbedding` per frame, in order."""
        import torch
        from PIL import Image

        out: list[ImageEmbedding] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            x = torch.stack([self._preprocess(Image.fromarray(np.asarray(f, dtype=np.uint8))) for f in chunk])
            with torch.inference_mode():
                feats = self._model.encode_image(x.to(self.device, dtype=self._dtype))
            out.extend(ImageEmbedding(vector=v) for v in _normalise(feats.float().cpu().numpy()))
        return out

    def encode_text(self, texts: Sequence[str]) -> FloatArray:
        """L2-normalised text embeddings (``[len(texts), image_dim]`` float32), for zero-shot heads."""
        import torch

        if self._tokenizer is None:  # built on first use, and only for zero-shot heads
            self._tokenizer = build_tokenizer(self.model_name, cache_dir=self._cache_dir)
        tokens = self._tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            feats = self._model.encode_text(tokens)
        return _normalise(feats.float().cpu().numpy())


def _normalise(x: np.ndarray) -> FloatArray:
    x = x.astype(np.float32)
    out: FloatArray = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return out
