"""The one scoring path: decode prefetch -> embedder -> head -> policy -> verdict.

:class:`~genguard.Guard` builds a :class:`Pipeline` and every caller goes
through it: ``classify``, ``classify_batch``, the CLI, the service, the
scanner, evaluation and training. A figure measured on it is a figure of the
code users run.

Stages, per batch of images:

1. **load** (a thread pool, ahead of inference): decode with :func:`load_image`,
   sha256 of the input, PDQ hash of each frame when a blocklist or
   ``hash_frames`` asks for it;
2. **embed**: the backbone embeds every frame of the batch in model calls of
   ``batch_size`` frames; an optional :class:`EmbeddingStore` answers frames it
   has seen (evaluation's cache);
3. **score**: the head turns embeddings into two calibrated scores per frame;
4. **decide**: the policy decides each frame, the worst frame decides the image,
   and a blocklist match blocks whatever the scores (:mod:`genguard._reasons`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from genguard._reasons import error_verdict, image_verdict
from genguard._types import ImageInput, OnError, RGBArray
from genguard.defences.blocklist import FrameHash, pdq_hash
from genguard.embedders.base import Embedder, ImageEmbedding
from genguard.errors import GenguardError, ImageLoadError
from genguard.heads.head import Head, ImageScores
from genguard.imageio.loader import load_image
from genguard.policy import Policy
from genguard.verdict import Verdict

from genguard._stages import EmbeddingStore, FrameHasher, Item, Limits, Matcher, StagedEmbedder

__all__ = ["READAHEAD_BYTES", "EmbeddingStore", "Item", "Limits", "Matcher", "Pipeline", "StagedEmbedder"]

logger = logging.getLogger(__name__)

READAHEAD_BYTES: Final = 256 * 1024 * 1024
"""Decoded frames held ahead of the models for later batches, at most (besides the batch being scored)."""


@dataclass
class Pipeline:
    """The scoring path shared by every front end; built by :class:`~genguard.Guard`.

    ``skip_minor_below_review`` (a throughput option, off by default): run the face
    stage only for frames whose sexual score reaches the policy's review threshold
    (below it no minor score can change the decision); the other frames report
    ``scores.minor = None`` and the reason ``minor_skipped``. It applies to a
    face-based head on a :class:`StagedEmbedder`; other backbones always score both axes.
    """

    embedder: Embedder
    head: Head
    limits: Limits
    on_error: OnError = "block"
    blocklist: Matcher | None = None
    hash_frames: bool = False
    skip_minor_below_review: bool = False
    store: EmbeddingStore | None = field(default=None)

    # ---------------------------------------------------------------- stages
    def load(self, image: ImageInput) -> Item:
        """Decode one image and hash its frames; never raises for bad input."""
        try:
            lim = self.limits
            loaded = load_image(image, max_bytes=lim.max_bytes, max_pixels=lim.max_pixels, max_frames=lim.max_frames,
                                max_work_bytes=lim.max_work_bytes)
            pdq: tuple[FrameHash, ...] = ()
            if isinstance(self.blocklist, FrameHasher):  # a blocklist hashes what it matches (dihedral variants too)
                pdq = tuple(self.blocklist.hash_frames(loaded.frames))
            elif self.blocklist is not None or self.hash_frames:
                pdq = tuple(pdq_hash(f) for f in loaded.frames)
        except ImageLoadError as exc:
            return Item(None, exc)
        except Exception as exc:  # never lose a batch to one odd input
            if not isinstance(exc, (TypeError, ValueError)):
                logger.warning("unexpected error while loading an image: %r", exc)
            error = ImageLoadError(f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return Item(None, error)
        return Item(loaded, None, pdq)

    def embed(self, frames: Sequence[RGBArray], policy: Policy) -> list[ImageEmbedding]:
        """Embed frames; with ``skip_minor_below_review`` the face stage runs only where it can matter."""
        staged = self.embedder
        if not (self.skip_minor_below_review and self.head.metadata.minor_source == "face" and isinstance(staged, StagedEmbedder)):
            return self.embedder.embed(frames)
        images = staged.embed_images(frames)
        sexual = self.head.sexual_scores(images)
        need = [i for i, s in enumerate(sexual) if float(s) >= policy.review_sexual]
        if need:
            for i, emb in zip(need, staged.embed_faces([frames[i] for i in need], [images[i] for i in need])):
                images[i] = emb
        return images

    def score(self, items: Sequence[Item], policy: Policy, batch_size: int) -> list[Verdict]:
        """Verdicts for loaded items, in order; one failing batch is retried image by image."""
        try:
            embeddings = self._embed_items(items, policy, batch_size)
            scores = self.head.score(embeddings)
        except Exception as exc:  # one frame the models choke on must not lose the batch
            if len(items) > 1:
                logger.warning("scoring a batch failed (%r); scoring its images one by one", exc)
                return [v for it in items for v in self.score([it], policy, batch_size)]
            logger.error("could not score an image: %r", exc)
            error = ImageLoadError(f"could not score this image: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return [self._error(error)]
        verdicts, k = [], 0
        for it in items:
            if it.loaded is None:
                assert it.error is not None
                verdicts.append(self._error(it.error))
                continue
            n = len(it.loaded.frames)
            verdicts.append(self._verdict(it, embeddings[k : k + n], scores[k : k + n], policy))
            k += n
        return verdicts

    def run(
        self,
        images: Iterable[ImageInput],
        policy: Callable[[], Policy],
        *,
        batch_size: int,
        progress: Callable[[int], None] | None = None,
        workers: int = 2,
    ) -> Iterator[Verdict]:
        """Verdicts as batches finish; decoding runs up to two batches ahead on ``workers`` threads.

        Read-ahead is bounded in bytes too: a decode thread waits while more than
        :data:`READAHEAD_BYTES` of decoded frames are held for later batches.
        """
        ahead = _ReadAhead(READAHEAD_BYTES, batch_size)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="genguard-decode") as pool:
            pending: list[Future[Item]] = []
            iterator = iter(images)
            exhausted = False
            submitted = 0
            try:
                while True:
                    while not exhausted and len(pending) < 2 * batch_size:
                        try:
                            image = next(iterator)
                        except StopIteration:
                            exhausted = True
                            break
                        if isinstance(image, np.ndarray):
                            # Decoding runs ahead of the caller's iterator: a caller that refills
                            # one buffer (a video reader) must not have later pixels scored here.
                            image = image.copy()
                        pending.append(pool.submit(self._load_in_turn, image, submitted, ahead))
                        submitted += 1
                    if not pending:
                        return
                    chunk, pending = pending[:batch_size], pending[batch_size:]
                    items = [f.result() for f in chunk]
                    verdicts = self.score(items, policy(), batch_size)
                    ahead.release(sum(_held(it) for it in items), len(items))
                    del items
                    if progress is not None:
                        progress(len(verdicts))
                    yield from verdicts
            finally:
                ahead.close()  # a caller that stops early must not leave decode threads waiting

    def _load_in_turn(self, image: ImageInput, index: int, ahead: _ReadAhead) -> Item:
        ahead.wait_turn(index)
        item = self.load(image)
        ahead.hold(_held(item))
        return item

    def embeddings(
        self,
        images: Iterable[ImageInput],
        *,
        batch_size: int,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[list[ImageEmbedding] | None]:
        """Each image's frame embeddings (None when unreadable), through the same load and embed stages.

        For training: every frame is embedded with the full face stage, and the store (if any) is used.
        """
        chunk: list[ImageInput] = []
        full = Policy(review_sexual=0.0, review_minor=0.0)  # review at 0: the face stage always runs
        for image in [*images, None]:
            if image is not None:
                chunk.append(image)
                if len(chunk) < batch_size:
                    continue
            if not chunk:
                break
            items = [self.load(i) for i in chunk]
            embs = iter(self._embed_items(items, full, batch_size))
            for it in items:
                yield None if it.loaded is None else [next(embs) for _ in it.loaded.frames]
            if progress is not None:
                progress(len(chunk))
            chunk = []

    # -------------------------------------------------------------- internals
    def _embed_items(self, items: Sequence[Item], policy: Policy, batch_size: int) -> list[ImageEmbedding]:
        keys: list[str | None] = []
        frames: list[RGBArray] = []
        for it in items:
            if it.loaded is None:
                continue
            for frame, index in zip(it.loaded.frames, it.loaded.frame_indices):
                frames.append(frame)
                keys.append(None if self.store is None or it.loaded.sha256 is None else f"{it.loaded.sha256}-{index}")
        out: list[ImageEmbedding | None] = [None if k is None or self.store is None else self.store.get(k) for k in keys]
        todo = [i for i, e in enumerate(out) if e is None]
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            for i, emb in zip(idx, self.embed([frames[i] for i in idx], policy)):
                out[i] = emb
                key = keys[i]
                if self.store is not None and key is not None and emb.faces_searched:
                    self.store.put(key, emb)
        return [e for e in out if e is not None]

    def _error(self, error: GenguardError) -> Verdict:
        if self.on_error == "raise":
            raise error
        return error_verdict(error, self.on_error, backbone=self.embedder.name, head=self.head.identifier)

    def _verdict(self, item: Item, embeddings: Sequence[ImageEmbedding], scores: Sequence[ImageScores], policy: Policy) -> Verdict:
        assert item.loaded is not None
        match = self.blocklist.match_frames(item.pdq) if self.blocklist is not None and item.pdq else None
        return image_verdict(
            item.loaded, embeddings, scores, policy, match=match, pdq=tuple(h.hash for h in item.pdq),
            face_based=self.head.metadata.minor_source == "face", backbone=self.embedder.name, head=self.head.identifier,
        )


def _held(item: Item) -> int:
    return 0 if item.loaded is None else sum(f.nbytes for f in item.loaded.frames)


class _ReadAhead:
    """Bounds the decoded bytes held ahead of the models, in bytes, not only in images.

    A decode thread waits before decoding item ``index`` while ``limit`` bytes or more of decoded
    frames are held and not yet scored, unless the item is in the next batch the scorer waits for.
    Those never wait, so there is no deadlock: the pool starts items in submission order, so every
    item the scorer needs has started before any later item can wait.
    """

    def __init__(self, limit: int, batch: int) -> None:
        self.limit, self.batch = limit, batch
        self.held = 0
        self.consumed = 0
        self.closed = False
        self._cond = threading.Condition()

    def wait_turn(self, index: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self.held < self.limit or index < self.consumed + self.batch)

    def hold(self, nbytes: int) -> None:
        with self._cond:
            self.held += nbytes

    def release(self, nbytes: int, count: int) -> None:
        with self._cond:
            self.held -= nbytes
            self.consumed += count
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
