"""Training heads: `genguard train`.

Recipe (deterministic for a given dataset and seed):

1. embed every image through the embedding cache (first frame);
2. split by a hash of the file name: train / calib / val (:func:`genguard.learn.datasets.split_of`);
3. minor branch: an MLP over face vectors trained with a multiple-instance loss,
   ``BCE(max over the image's faces of the logit, label)``, so an image labelled
   minor needs only one face scored high, and an adult image needs all faces low;
   images without a face are left out of training (and counted);
4. sexual branch: trained the same way (on image vectors) only where the data holds
   both sexual and non-sexual labels; otherwise it keeps the prior's weights;
5. early stopping on the calib split's loss; then Platt calibration
   (``sigmoid(a z + b)``) on calib, and the minor threshold set on calib's adults for
   the target false-positive rate;
6. figures reported on the untouched val split.

Rows may label one axis, both, or neither: each loss term sees only its labelled rows.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genguard.embedders.base import Embedder, ImageEmbedding
from genguard.embedders.registry import prior_head
from genguard.heads.head import Head
from genguard.learn.calibration import calibrate_platt, threshold_for_fpr
from genguard.learn.datasets import Record, load_dataset, split_of
from genguard.learn.fit import TrainingSet, fit_head
from genguard.policy import Policy

__all__ = ["TrainResult", "TrainingSet", "calibrate_platt", "fit_head", "train"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What :func:`train` wrote and measured.

    Attributes
    ----------
    head : str
        The saved head's path stem (``HEAD.safetensors`` + ``HEAD.json``).
    metrics : dict
        ``{"val": <metrics on the val split>, "training": <per-axis fit summary>}``.
    policy : dict
        The thresholds stored in the head.
    provenance : dict
        Data, split, recipe and wall time.
    """

    head: str
    metrics: dict[str, Any]
    policy: dict[str, float]
    provenance: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"head": self.head, "metrics": self.metrics, "policy": self.policy, "provenance": self.provenance}


def _embed_records(records: Sequence[Record], backbone: str, cache_dir: str | None, device: str, batch_size: int) -> tuple[Embedder, list[ImageEmbedding | None]]:
    """The first frame's embedding of each record, through the pipeline's load and embed stages (cached)."""
    from tqdm import tqdm

    from genguard.embedders.registry import create_embedder, prior_head
    from genguard.imageio.loader import MAX_BYTES, MAX_FRAMES, MAX_PIXELS
    from genguard.learn.cache import EmbeddingCache
    from genguard.pipeline import Limits, Pipeline

    embedder = create_embedder(backbone, device=device)
    pipeline = Pipeline(embedder, prior_head(embedder), Limits(MAX_BYTES, MAX_PIXELS, MAX_FRAMES),
                        store=EmbeddingCache(embedder, cache_dir))
    with tqdm(total=len(records), desc="embedding", unit="img", mininterval=2.0) as bar:
        out = [None if e is None else e[0] for e in pipeline.embeddings([r.path for r in records], batch_size=batch_size, progress=bar.update)]
    return embedder, out


def train(
    data: Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str],
    backbone: str = "bundled",
    format: str | None = None,
    assume: dict[str, int] | None = None,
    limit: int | None = None,
    hidden: int = 256,
    epochs: int = 200,
    seed: int = 0,
    target_fpr: float = 0.01,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    members: int = 1,
    face_features: Sequence[str] | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
) -> TrainResult:
    """Train, calibrate and save a head; returns its metrics, thresholds and provenance.

    ``face_features`` names the slices of the face vector (``embedder.feature_layout["face"]``)
    the minor branch may use; None uses all. The others are zeroed while training and
    their first-layer weights set to zero, so the saved head ignores them exactly.

    Writes ``OUT.safetensors`` and ``OUT.json``.
    """
    from genguard.learn.evaluation.metrics import compute_metrics

    started = time.time()
    records: list[Record] = []
    for d in data:
        records.extend(load_dataset(d, format=format, assume=assume, limit=limit))  # type: ignore[arg-type]
    embedder, embeddings = _embed_records(records, backbone, None if cache_dir is None else str(cache_dir), device, batch_size)
    ok = [i for i, e in enumerate(embeddings) if e is not None]
    records = [records[i] for i in ok]
    embs: list[ImageEmbedding] = [embeddings[i] for i in ok]  # type: ignore[misc]
    split = np.array([split_of(r.path) for r in records])

    prior = prior_head(embedder)
    meta = copy.deepcopy(prior.metadata)
    meta.hidden = hidden
    meta.name = f"{backbone.split(':')[0]}-trained"
    head = Head(meta)
    head.sexual_net.load_state_dict(prior.sexual_net.state_dict())
    head.sexual_mean.copy_(prior.sexual_mean)
    head.sexual_std.copy_(prior.sexual_std)

    ts = TrainingSet.from_embeddings(embs, [r.minor for r in records], [r.sexual for r in records], minor_source=meta.minor_source)
    dropped = _unused_columns(dict(embedder.feature_layout), face_features, meta.minor_source)
    fit_set = copy.copy(ts)
    fit_set.minor_x = ts.minor_x.copy()
    fit_set.minor_x[:, dropped] = 0.0
    parts = {name: fit_set.subset(np.flatnonzero(split == name)) for name in ("train", "calib", "val")}
    summary = fit_head(head, parts["train"], parts["calib"], epochs=epochs, seed=seed, members=members, lr=lr, weight_decay=weight_decay)
    _drop_columns(head, dropped)
    parts = {name: ts.subset(np.flatnonzero(split == name)) for name in ("train", "calib", "val")}  # real vectors from here on

    calibration = copy.deepcopy(prior.metadata.calibration)
    calibrated = dict(prior.metadata.calibrated)
    for axis in ("minor", "sexual"):
        if summary[axis]["trained"]:
            calib = parts["calib"]
            calibration[axis] = calibrate_platt(calib.image_logits(head, axis), calib.minor_y if axis == "minor" else calib.sexual_y)
            calibrated[axis] = True
    meta.calibration, meta.calibrated = calibration, calibrated

    policy = Policy.from_dict(meta.policy)
    if summary["minor"]["trained"]:
        calib = parts["calib"]
        p = head.calibrate("minor", torch.from_numpy(calib.image_logits(head, "minor"))).numpy()
        t_minor = threshold_for_fpr(p, calib.minor_y, target_fpr)
        policy = Policy(t_minor, policy.sexual_threshold, min(policy.review_minor, t_minor * 0.5), policy.review_sexual)
    meta.policy = policy.to_dict()

    rows = _rows(head, parts["val"], [r for r, s in zip(records, split) if s == "val"], policy)
    meta.metrics = {"val": compute_metrics(rows, policy), "training": summary}
    meta.provenance = {
        **prior.metadata.provenance,
        "data": [str(d) for d in data],
        "format": format,
        "assume": assume,
        "limit": limit,
        "n_images": len(records),
        "n_without_faces": int(sum(1 for e in embs if not e.faces)) if meta.minor_source == "face" else 0,
        "split_rule": "sha256('genguard-split-v1:' + file name): val 20%, calib 15% of the rest, train the rest",
        "split_sizes": {k: int((split == k).sum()) for k in ("train", "calib", "val")},
        "recipe": {"hidden": hidden, "members": members, "lr": lr, "weight_decay": weight_decay, "face_features": list(face_features) if face_features else "all", "epochs": epochs, "seed": seed, "target_fpr": target_fpr, "loss": "MIL max-over-faces BCE, class-balanced"},
        "seconds": round(time.time() - started, 1),
    }
    meta.feature_layout = dict(embedder.feature_layout)
    path = head.save(out)
    logger.info("saved %s", path)
    return TrainResult(str(Path(out).with_suffix("")), meta.metrics, meta.policy, meta.provenance)


def _unused_columns(layout: dict[str, Any], names: Sequence[str] | None, minor_source: str) -> np.ndarray:
    """Column indices of the face vector outside the named slices (none when ``names`` is None)."""
    if not names:
        return np.zeros((0,), dtype=np.int64)
    slices = layout.get("face", {}) if minor_source == "face" else layout.get("image", {})
    unknown = set(names) - set(slices)
    if unknown:
        raise ValueError(f"unknown feature slices {sorted(unknown)}; this backbone has {sorted(slices)}")
    keep = np.zeros(max(end for _, end in slices.values()), dtype=bool)
    for name in names:
        start, end = slices[name]
        keep[start:end] = True
    return np.flatnonzero(~keep)


def _drop_columns(head: Head, columns: np.ndarray) -> None:
    """Make the minor branch ignore ``columns`` exactly: zero first-layer weights, neutral standardisation."""
    if not len(columns):
        return
    first = head.minor_net if isinstance(head.minor_net, nn.Linear) else head.minor_net[0]  # type: ignore[index]
    idx = torch.from_numpy(columns)
    with torch.no_grad():
        first.weight[:, idx] = 0.0
        head.minor_mean[idx] = 0.0
        head.minor_std[idx] = 1.0


def _rows(head: Head, ts: TrainingSet, records: Sequence[Record], policy: Policy) -> list[dict[str, Any]]:
    minor = head.calibrate("minor", torch.from_numpy(np.nan_to_num(ts.image_logits(head, "minor"), nan=-1e4))).numpy()
    sexual = head.calibrate("sexual", torch.from_numpy(ts.image_logits(head, "sexual"))).numpy()
    counts = np.bincount(ts.minor_seg, minlength=len(records))
    rows = []
    for i, r in enumerate(records):
        m = float(minor[i]) if counts[i] else float(head.metadata.no_face_minor)
        rows.append({
            "path": str(r.path), "label_minor": r.minor, "label_sexual": r.sexual, "age": r.age, "groups": dict(r.groups),
            "minor": m, "sexual": float(sexual[i]), "decision": policy.decide(m, float(sexual[i])), "n_faces": int(counts[i]),
        })
    return rows
