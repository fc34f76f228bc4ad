"""A drop-in ``safety_checker`` for diffusers pipelines, backed by a genguard :class:`~genguard.Guard`.

diffusers calls ``pipe.safety_checker(images=..., clip_input=...)`` and expects
``(images, has_nsfw_concept)`` back; the pipeline then skips de-normalisation
for flagged images. :class:`GenguardSafetyChecker` keeps that contract:

- it screens every image with the Guard (``clip_input`` is accepted and ignored);
- withheld images (decision ``"block"`` by default, and unreadable ones, which
  a Guard fails closed) come back black or heavily blurred, in [0, 1];
- the caller's batch is never modified: replacements go into a copy;
- the full verdicts stay available as ``last_verdicts``, or from :meth:`screen`.

Batches are what diffusers passes: a torch ``NCHW`` tensor (VAE output, in
``tensor_range``, by default [-1, 1]), a numpy ``NHWC`` float array in [0, 1]
(or uint8), or a list of such images or of PIL images.

Examples
--------
>>> from diffusers import StableDiffusionPipeline                      # doctest: +SKIP
>>> from genguard.integrations.diffusers import attach                  # doctest: +SKIP
>>> pipe = StableDiffusionPipeline.from_pretrained(MODEL_DIR)           # doctest: +SKIP
>>> checker = attach(pipe, replacement="blur")                          # doctest: +SKIP
>>> out = pipe("a lighthouse at dusk")                                  # doctest: +SKIP
>>> out.nsfw_content_detected, checker.last_verdicts[0].decision        # doctest: +SKIP
([False], 'allow')
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import torch
from PIL import Image, ImageFilter

from genguard._types import Decision
from genguard.serving.screening import Screening
from genguard.verdict import Verdict

if TYPE_CHECKING:
    from genguard.guard import Guard

__all__ = ["GenguardSafetyChecker", "SafetyResult", "attach"]

logger = logging.getLogger(__name__)

Replacement: TypeAlias = Literal["black", "blur"]
_REPLACEMENTS: Final = ("black", "blur")
_DECISIONS: Final = ("allow", "review", "block")


@dataclass(frozen=True, slots=True)
class SafetyResult:
    """What :meth:`GenguardSafetyChecker.screen` returns.

    Attributes
    ----------
    images : same type as the input batch
        The batch with withheld images replaced (a copy), or the input itself when none was withheld.
    flags : list of bool
        True for each withheld image (diffusers' ``has_nsfw_concept``).
    verdicts : list of Verdict
        One per image, in order.
    """

    images: Any
    flags: list[bool]
    verdicts: list[Verdict]


class GenguardSafetyChecker(torch.nn.Module):
    """A diffusers ``safety_checker`` that screens images with a genguard Guard.

    Parameters
    ----------
    guard : Guard, Screening or None, default None
        What screens the images: a Guard, or a :class:`~genguard.serving.screening.Screening`
        (a Guard with an audit log and an attempt monitor); None builds ``Guard()`` (the
        bundled backbone, on the CPU). It is not moved by ``.to(device)``: build the Guard
        with ``device="cuda"`` to run it on a GPU.
    subject : str or None, default None
        Who the images are generated for, passed to the Screening's audit log and monitor.
    replacement : {"black", "blur"}, default "black"
        What a withheld image becomes.
    withhold : sequence of {"allow", "review", "block"}, default ("block",)
        Decisions whose images are withheld and flagged.
    tensor_range : tuple of float, default (-1.0, 1.0)
        Value range of torch batches (diffusers' VAE output); numpy float batches are taken as [0, 1].
    blur_radius : float or None, default None
        Gaussian radius in pixels for ``replacement="blur"``; None uses an eighth of the longer side.

    Attributes
    ----------
    last_verdicts : list of Verdict
        The verdicts of the latest call (use :meth:`screen` when one checker serves several threads).

    Examples
    --------
    >>> import numpy as np
    >>> checker = GenguardSafetyChecker(guard)                    # doctest: +SKIP
    >>> batch = np.random.default_rng(0).random((2, 64, 64, 3))  # NHWC in [0, 1]
    >>> images, flags = checker(images=batch, clip_input=None)  # doctest: +SKIP
    >>> flags, [v.decision for v in checker.last_verdicts]      # doctest: +SKIP
    ([False, False], ['allow', 'allow'])
    """

    def __init__(
        self,
        guard: Guard | Screening | None = None,
        *,
        subject: str | None = None,
        replacement: Replacement = "black",
        withhold: Sequence[Decision] = ("block",),
        tensor_range: tuple[float, float] = (-1.0, 1.0),
        blur_radius: float | None = None,
    ) -> None:
        super().__init__()
        if replacement not in _REPLACEMENTS:
            raise ValueError(f"replacement must be one of {_REPLACEMENTS}, got {replacement!r}")
        bad = [d for d in withhold if d not in _DECISIONS]
        if bad or isinstance(withhold, str):
            raise ValueError(f"withhold must be a sequence of {_DECISIONS}, got {withhold!r}")
        lo, hi = (float(v) for v in tensor_range)
        if not hi > lo:
            raise ValueError(f"tensor_range must be (low, high) with high > low, got {tensor_range!r}")
        if blur_radius is not None and not blur_radius > 0:
            raise ValueError(f"blur_radius must be positive or None, got {blur_radius!r}")
        if guard is None:
            from genguard.guard import Guard

            guard = Guard()
        self.screening = guard if isinstance(guard, Screening) else Screening(guard)
        self.guard = self.screening.guard
        self.subject = subject
        self.replacement: Replacement = replacement
        self.withhold = tuple(withhold)
        self.tensor_range = (lo, hi)
        self.blur_radius = blur_radius
        self.last_verdicts: list[Verdict] = []
        # Follows .to(device) so that the pipeline's ``device``/``dtype`` lookups work; holds no data.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """Where the pipeline put this component (the Guard runs where it was built)."""
        return self.get_buffer("_anchor").device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the pipeline asked for; screening always converts to uint8 frames."""
        return self.get_buffer("_anchor").dtype

    def extra_repr(self) -> str:
        return f"guard={self.guard!r}, replacement={self.replacement!r}, withhold={self.withhold!r}"

    @torch.no_grad()
    def forward(self, images: Any, clip_input: Any = None) -> tuple[Any, list[bool]]:
        """diffusers' call: ``(images, has_nsfw_concept)``; ``clip_input`` is ignored."""
        result = self.screen(images)
        self.last_verdicts = result.verdicts
        return result.images, result.flags

    def screen(self, images: Any) -> SafetyResult:
        """Screen a batch and replace withheld images in a copy.

        Parameters
        ----------
        images : torch.Tensor (N, C, H, W), ndarray (N, H, W, C), or list of images
            A list may hold CHW tensors, HWC arrays or PIL images.

        Returns
        -------
        SafetyResult
        """
        items = list(images) if isinstance(images, (list, tuple)) else None
        batch = items if items is not None else _split(images)
        frames = [self._to_uint8(x) for x in batch]
        verdicts = [s.verdict for s in self.screening.screen_batch(frames, subject=self.subject)]
        flags = [v.decision in self.withhold for v in verdicts]
        if not any(flags):
            return SafetyResult(images, flags, verdicts)
        logger.warning("genguard withheld %d of %d generated images (%s)", sum(flags), len(flags),
                       ", ".join(sorted({v.decision for v, f in zip(verdicts, flags) if f})))
        if items is not None:
            out: Any = [self._replace(x, f) if flag else x for x, f, flag in zip(items, frames, flags)]
            out = tuple(out) if isinstance(images, tuple) else out
        else:
            out = images.clone() if isinstance(images, torch.Tensor) else np.array(images, copy=True)
            for i, flag in enumerate(flags):
                if flag:
                    out[i] = self._replace(out[i], frames[i])
        return SafetyResult(out, flags, verdicts)

    # ------------------------------------------------------------ conversions
    def _to_uint8(self, image: Any) -> Any:
        if isinstance(image, Image.Image):
            return image
        if isinstance(image, torch.Tensor):
            if image.ndim != 3:
                raise ValueError(f"expected a CHW image tensor, got shape {tuple(image.shape)}")
            lo, hi = self.tensor_range
            x = (image.detach().to("cpu", torch.float32) - lo) / (hi - lo)
            arr = x.permute(1, 2, 0).numpy()
        else:
            arr = np.asarray(image)
            if arr.dtype == np.uint8:
                return arr
            arr = arr.astype(np.float32)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return (np.nan_to_num(arr, nan=0.0).clip(0.0, 1.0) * 255.0).round().astype(np.uint8)

    def _replace(self, image: Any, frame: Any) -> Any:
        """The replacement for one withheld image, in the image's own type, in [0, 1] (or uint8)."""
        if self.replacement == "black":
            if isinstance(image, Image.Image):
                return Image.new(image.mode, image.size)
            return torch.zeros_like(image) if isinstance(image, torch.Tensor) else np.zeros_like(image)
        pil = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
        radius = self.blur_radius if self.blur_radius is not None else max(pil.size) / 8
        blurred = pil.filter(ImageFilter.GaussianBlur(radius))
        if isinstance(image, Image.Image):
            return blurred
        arr = np.asarray(blurred)
        if isinstance(image, torch.Tensor):
            t = torch.from_numpy(arr.astype(np.float32) / 255.0)
            t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
            return t.to(device=image.device, dtype=image.dtype)
        if image.dtype == np.uint8:
            return arr.reshape(image.shape)
        return (arr.astype(np.float32) / 255.0).reshape(image.shape).astype(image.dtype)


def _split(images: Any) -> list[Any]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"expected an NCHW tensor batch, got shape {tuple(images.shape)}")
        return list(images.unbind(0))
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"expected an NHWC array batch, got shape {arr.shape}")
    return list(arr)


def attach(pipe: Any, guard: Guard | Screening | None = None, **options: Any) -> GenguardSafetyChecker:
    """Install a :class:`GenguardSafetyChecker` as ``pipe.safety_checker`` and return it.

    A pipeline without a ``feature_extractor`` gets a default ``CLIPImageProcessor``
    (built offline, no download): diffusers needs one to call any safety checker.

    Parameters
    ----------
    pipe : diffusers.DiffusionPipeline
        A pipeline with a ``safety_checker`` component (Stable Diffusion 1.x/2.x and relatives).
    guard : Guard, Screening or None
    **options
        Passed to :class:`GenguardSafetyChecker` (``replacement``, ``withhold``, ...).

    Examples
    --------
    >>> checker = attach(pipe, replacement="blur")  # doctest: +SKIP
    """
    if "safety_checker" not in getattr(pipe, "config", {}) and not hasattr(pipe, "safety_checker"):
        raise ValueError(f"{type(pipe).__name__} has no safety_checker component")
    checker = GenguardSafetyChecker(guard, **options)
    modules: dict[str, Any] = {"safety_checker": checker}
    if getattr(pipe, "feature_extractor", None) is None:
        from transformers import CLIPImageProcessor

        modules["feature_extractor"] = CLIPImageProcessor()
    pipe.register_modules(**modules)
    checker.to(pipe.device)
    logger.info("genguard safety checker installed on %s", type(pipe).__name__)
    return checker
