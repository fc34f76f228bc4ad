"""Zero-shot heads for CLIP backbones, built from prompt ensembles and cached on disk.

Each axis contrasts two prompt files shipped in ``genguard/embedders/clip/prompts``:

=========  ===============  ==================
axis       positive side    negative side
=========  ===============  ==================
minor      ``minor.txt``    ``adult.txt``
sexual     ``sexual.txt``   ``nonsexual.txt``
=========  ===============  ==================

A side's direction is the normalised mean of its prompts' normalised text
embeddings; a branch's linear weights are ``logit_scale * (positive - negative)``
with zero bias. On an L2-normalised image embedding ``v`` its logit is
``logit_scale * (cos(v, positive) - cos(v, negative))``, so the score is CLIP's own
two-way softmax between the two sides. The head is *uncalibrated*: its metadata
says so (``calibrated`` False on both axes) until ``genguard train`` or a
calibration run on labelled data replaces it.

The text tower runs once per (backbone name, prompt files) pair; the head is then
read from ``default_cache_dir() / "zeroshot"`` in the ordinary head format
(safetensors + JSON).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch

from genguard._types import FloatArray
from genguard.errors import GenguardError, HeadError, ModelFileError
from genguard.heads.head import Head, HeadMetadata, load_head
from genguard.policy import Policy

__all__ = [
    "PROMPT_FILES",
    "TextEmbedder",
    "build_zero_shot_head",
    "cache_path",
    "default_prompt_dir",
    "read_prompts",
    "zero_shot_head",
]

logger = logging.getLogger(__name__)

PROMPT_FILES: Final = {"minor": ("minor.txt", "adult.txt"), "sexual": ("sexual.txt", "nonsexual.txt")}
"""Per axis, the (positive, negative) prompt file names."""
_RECIPE: Final = "zeroshot-v1"


@runtime_checkable
class TextEmbedder(Protocol):
    """What a zero-shot head needs from a backbone: a text tower beside the image tower."""

    @property
    def name(self) -> str: ...

    @property
    def image_dim(self) -> int: ...

    @property
    def logit_scale(self) -> float: ...

    @property
    def feature_layout(self) -> Any: ...

    def encode_text(self, texts: Sequence[str]) -> FloatArray: ...


def default_prompt_dir() -> Path:
    """The folder of prompt files shipped inside the package."""
    from importlib.resources import files

    return Path(str(files("genguard.embedders.clip").joinpath("prompts")))


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """The prompts of one file: one per line; blank lines and ``#`` comments skipped.

    Raises
    ------
    ModelFileError
        The file is missing.
    GenguardError
        It holds no prompt.

    Examples
    --------
    >>> read_prompts(default_prompt_dir() / "adult.txt")[0]
    'a photo of an adult'
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"prompt file {p} is missing; a prompt folder holds {sorted(f for pair in PROMPT_FILES.values() for f in pair)}")
    prompts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in prompts if line and not line.startswith("#")]
    if not prompts:
        raise GenguardError(f"prompt file {p} holds no prompt (one per line; # starts a comment)")
    return prompts


def _file_digests(prompt_dir: Path) -> tuple[str, dict[str, str]]:
    files = {name: hashlib.sha256((prompt_dir / name).read_bytes()).hexdigest() for pair in PROMPT_FILES.values() for name in pair}
    combined = hashlib.sha256("".join(f"{n}:{d}\n" for n, d in sorted(files.items())).encode()).hexdigest()
    return combined, files


def _direction(embedder: TextEmbedder, prompts: Sequence[str]) -> npt.NDArray[np.float64]:
    mean: npt.NDArray[np.float64] = np.asarray(embedder.encode_text(prompts), dtype=np.float64).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def build_zero_shot_head(embedder: TextEmbedder, *, prompt_dir: str | os.PathLike[str] | None = None) -> Head:
    """Compute a zero-shot head with the backbone's text tower (no cache).

    Parameters
    ----------
    embedder : TextEmbedder
        A CLIP backbone (:class:`genguard.embedders.clip.embedder.ClipEmbedder`).
    prompt_dir : path or None, default None
        Folder holding the files of :data:`PROMPT_FILES`; None uses the shipped ones.

    Returns
    -------
    Head
        ``minor_source="image"``, linear branches, uncalibrated, default :class:`Policy` thresholds.

    Examples
    --------
    >>> head = build_zero_shot_head(ClipEmbedder("ViT-B-32", "laion2b_s34b_b79k"))  # doctest: +SKIP
    >>> head.metadata.calibrated                                                     # doctest: +SKIP
    {'minor': False, 'sexual': False}
    """
    folder = Path(prompt_dir) if prompt_dir is not None else default_prompt_dir()
    digest, files = _file_digests_checked(folder)
    scale = float(embedder.logit_scale)
    dim = int(embedder.image_dim)
    meta = HeadMetadata(
        backbone=embedder.name,
        minor_source="image",
        minor_dim=dim,
        sexual_dim=dim,
        hidden=0,
        sexual_hidden=0,
        policy=Policy().to_dict(),
        calibrated={"minor": False, "sexual": False},
        name="zeroshot",
        feature_layout=dict(embedder.feature_layout),
        provenance={
            "kind": "zero-shot",
            "status": "uncalibrated",
            "recipe": _RECIPE,
            "method": "linear weights = logit_scale * (normalised mean positive prompt - normalised mean negative prompt)",
            "logit_scale": scale,
            "prompts_sha256": digest,
            "prompt_files": files,
            "prompt_pairs": {axis: list(pair) for axis, pair in PROMPT_FILES.items()},
        },
        metrics={"status": "uncalibrated: no labelled data measured; thresholds are Policy defaults"},
    )
    head = Head(meta)
    with torch.no_grad():
        for axis, (pos, neg) in PROMPT_FILES.items():
            w = scale * (_direction(embedder, read_prompts(folder / pos)) - _direction(embedder, read_prompts(folder / neg)))
            net = head.minor_net if axis == "minor" else head.sexual_net
            assert isinstance(net, torch.nn.Linear)  # hidden=0: a linear branch, by construction above
            net.weight.copy_(torch.from_numpy(w.astype(np.float32)).reshape(1, dim))
            net.bias.zero_()
    head.eval()
    return head


def _file_digests_checked(folder: Path) -> tuple[str, dict[str, str]]:
    for pair in PROMPT_FILES.values():
        for name in pair:
            read_prompts(folder / name)  # raises with the file's name when missing or empty
    return _file_digests(folder)


def zero_shot_head(
    embedder: Any,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    prompt_dir: str | os.PathLike[str] | None = None,
) -> Head:
    """The zero-shot head for a CLIP backbone, read from the cache or built once and cached.

    Parameters
    ----------
    embedder : TextEmbedder
        A CLIP backbone (:class:`genguard.embedders.clip.embedder.ClipEmbedder`).
    cache_dir : path or None, default None
        Folder of cached heads; None uses ``genguard._digest.default_cache_dir() / "zeroshot"``.
    prompt_dir : path or None, default None
        Prompt folder; None uses the shipped prompts.

    Returns
    -------
    Head

    Raises
    ------
    HeadError
        The backbone has no text tower.

    Examples
    --------
    >>> from genguard import Guard
    >>> Guard("clip:ViT-B-32/laion2b_s34b_b79k").head.identifier  # doctest: +SKIP
    'zeroshot@clip:ViT-B-32/laion2b_s34b_b79k'
    """
    if not isinstance(embedder, TextEmbedder):
        raise HeadError(
            f"backbone {getattr(embedder, 'name', embedder)!r} has no text tower, so it has no zero-shot head; pass head=PATH"
        )
    folder = Path(prompt_dir) if prompt_dir is not None else default_prompt_dir()
    digest, _ = _file_digests_checked(folder)
    path = cache_path(embedder.name, digest, cache_dir)
    if path.with_suffix(".json").is_file():
        try:
            head = load_head(path)
            meta = head.metadata
            if meta.backbone == embedder.name and meta.provenance.get("prompts_sha256") == digest and meta.minor_dim == embedder.image_dim:
                logger.debug("zero-shot head from cache %s", path)
                return head
            logger.warning("cached zero-shot head %s does not match %s; rebuilding it", path, embedder.name)
        except (HeadError, ModelFileError, OSError) as exc:
            logger.warning("ignoring unreadable cached zero-shot head %s: %s", path, exc)
    head = build_zero_shot_head(embedder, prompt_dir=folder)
    _save_atomically(head, path)
    logger.info("built zero-shot head for %s; cached at %s", embedder.name, path)
    return head


def cache_path(backbone: str, prompts_sha256: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the zero-shot head of ``backbone`` with prompt files ``prompts_sha256`` is cached (stem, no suffix)."""
    from genguard._digest import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "zeroshot"
    key = hashlib.sha256(f"{_RECIPE}:{backbone}:{prompts_sha256}".encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in backbone)  # no dots: the stem takes suffixes
    return root / f"{safe}-{key}"


def _save_atomically(head: Head, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stem.parent, prefix=".tmp-") as tmp:
        head.save(Path(tmp) / "head")
        os.replace(Path(tmp) / "head.safetensors", stem.with_suffix(".safetensors"))
        os.replace(Path(tmp) / "head.json", stem.with_suffix(".json"))  # last: readers check for the JSON
