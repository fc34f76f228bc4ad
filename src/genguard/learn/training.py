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

from genguard.learn.datasets import Record, load_dataset, split_of
from genguard.embedders.base import Embedder, ImageEmbedding
from genguard.learn.calibration import calibrate_platt, threshold_for_fpr
from genguard.heads.head import Head
from genguard.policy import Policy
from genguard.embedders.registry import prior_head

__all__ = ["TrainingSet", "calibrate_platt", "fit_head", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingSet:
    """Flattened training rows: unit vectors with a segment id per image, and labels per image.

    ``minor_x[k]`` belongs to image ``minor_seg[k]``; ``minor_y[i]`` is image i's label (nan: unknown).
    """

    minor_x: np.ndarray
    minor_seg: np.ndarray
    minor_y: np.ndarray
    sexual_x: np.ndarray
    sexual_y: np.ndarray

    @classmethod
    def from_embeddings(
        cls, embeddings: Sequence[ImageEmbedding], minor: Sequence[int | None], sexual: Sequence[int | None], *, minor_source: str
    ) -> TrainingSet:
        xs, seg = [], []
        for i, e in enumerate(embeddings):
            units = [f.vector for f in e.faces] if minor_source == "face" else [e.vector]
            xs.extend(units)
            seg.extend([i] * len(units))
        dim = embeddings[0].faces[0].vector.shape[0] if minor_source == "face" and xs else embeddings[0].vector.shape[0]
        return cls(
            minor_x=np.stack(xs).astype(np.float32) if xs else np.zeros((0, dim), np.float32),
            minor_seg=np.asarray(seg, dtype=np.int64),
            minor_y=np.array([np.nan if v is None else v for v in minor], dtype=np.float32),
            sexual_x=np.stack([e.vector for e in embeddings]).astype(np.float32),
            sexual_y=np.array([np.nan if v is None else v for v in sexual], dtype=np.float32),
        )

    def subset(self, images: np.ndarray) -> TrainingSet:
        """Rows of the given image indices (renumbered)."""
        remap = -np.ones(len(self.minor_y), dtype=np.int64)
        remap[images] = np.arange(len(images))
        keep = remap[self.minor_seg] >= 0
        return TrainingSet(
            self.minor_x[keep], remap[self.minor_seg[keep]], self.minor_y[images], self.sexual_x[images], self.sexual_y[images]
        )

    def image_logits(self, head: Head, axis: str) -> np.ndarray:
        """Per-image uncalibrated logits (max over units for minor; nan for images without units)."""
        with torch.inference_mode():
            head.eval()
            if axis == "sexual":
                return head.sexual_logits(torch.from_numpy(self.sexual_x)).numpy()
            z = head.minor_logits(torch.from_numpy(self.minor_x))
            return _segment_max(z, torch.from_numpy(self.minor_seg), len(self.minor_y)).numpy()


def _segment_max(values: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.full((n,), float("nan"), dtype=values.dtype)
    if len(values):
        out = torch.full((n,), float("-inf"), dtype=values.dtype).scatter_reduce(0, seg, values, reduce="amax", include_self=True)
        out = torch.where(torch.isinf(out), torch.full_like(out, float("nan")), out)
    return out


def _mil_loss(head: Head, ts: TrainingSet, axis: str, pos_weight: float) -> torch.Tensor:
    y = torch.from_numpy(ts.minor_y if axis == "minor" else ts.sexual_y)
    if axis == "minor":
        z = _segment_max(head.minor_logits(torch.from_numpy(ts.minor_x)), torch.from_numpy(ts.minor_seg), len(y))
    else:
        z = head.sexual_logits(torch.from_numpy(ts.sexual_x))
    mask = ~torch.isnan(y) & ~torch.isnan(z)
    if not mask.any():
        return torch.zeros(())
    w = torch.where(y[mask] > 0.5, torch.tensor(pos_weight), torch.tensor(1.0))
    return nn.functional.binary_cross_entropy_with_logits(z[mask], y[mask], weight=w)


def _standardise(head: Head, ts: TrainingSet, axis: str) -> None:
    x = ts.minor_x if axis == "minor" else ts.sexual_x
    if len(x) < 2:
        return
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-4
    getattr(head, f"{axis}_mean").copy_(torch.from_numpy(mean))
    getattr(head, f"{axis}_std").copy_(torch.from_numpy(std))


def _both_classes(y: np.ndarray) -> bool:
    known = y[~np.isnan(y)]
    return bool(len(known)) and 0 < known.sum() < len(known)


def _fit_branch(
    head: Head, axis: str, train_set: TrainingSet, stop_set: TrainingSet, *, epochs: int, patience: int,
    lr: float, weight_decay: float, batch_images: int, seed: int,
) -> tuple[float, int, float]:
    """Train one branch from fresh weights; returns (best stop loss, epochs run, pos_weight)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y = train_set.minor_y if axis == "minor" else train_set.sexual_y
    net = head.minor_net if axis == "minor" else head.sexual_net
    for m in net.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    known = y[~np.isnan(y)]
    pos_weight = float((len(known) - known.sum()) / max(known.sum(), 1.0))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, stale, epoch = float("inf"), copy.deepcopy(net.state_dict()), 0, 0
    for epoch in range(1, epochs + 1):
        head.train()
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_images):
            loss = _mil_loss(head, train_set.subset(np.sort(order[start : start + batch_images])), axis, pos_weight)
            if loss.requires_grad:
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
        head.eval()
        with torch.no_grad():
            val = float(_mil_loss(head, stop_set, axis, pos_weight))
        if val < best - 1e-5:
            best, best_state, stale = val, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    net.load_state_dict(best_state)
    return best, epoch, pos_weight


def _pack_members(members: Sequence[nn.Module]) -> nn.Module:
    """One MLP equal to the mean of several same-shaped MLPs (hidden units side by side, output weights / K)."""
    seqs = [m for m in members if isinstance(m, nn.Sequential)]
    if len(seqs) != len(members):
        raise TypeError("only MLP branches (nn.Sequential) can be packed")
    k = len(seqs)
    firsts: list[nn.Linear] = [_linear(m[0]) for m in seqs]
    lasts: list[nn.Linear] = [_linear(m[3]) for m in seqs]
    dropout = seqs[0][2]
    hidden = sum(f.out_features for f in firsts)
    first, last = nn.Linear(firsts[0].in_features, hidden), nn.Linear(hidden, 1)
    with torch.no_grad():
        first.weight.copy_(torch.cat([f.weight for f in firsts]))
        first.bias.copy_(torch.cat([f.bias for f in firsts]))
        last.weight.copy_(torch.cat([x.weight for x in lasts], dim=1) / k)
        last.bias.copy_(torch.stack([x.bias for x in lasts]).mean(dim=0))
    return nn.Sequential(first, nn.ReLU(), nn.Dropout(dropout.p if isinstance(dropout, nn.Dropout) else 0.0), last)


def _linear(module: nn.Module) -> nn.Linear:
    if not isinstance(module, nn.Linear):
        raise TypeError(f"expected a Linear layer, got {type(module).__name__}")
    return module


def fit_head(
    head: Head,
    train_set: TrainingSet,
    stop_set: TrainingSet,
    *,
    epochs: int = 200,
    patience: int = 15,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_images: int = 512,
    seed: int = 0,
    members: int = 1,
) -> dict[str, Any]:
    """Train the head's branches that have two-class labels; early stopping on ``stop_set`` loss.

    With ``members > 1`` the minor MLP is a bagged ensemble: ``members`` MLPs trained
    from different seeds, packed into one MLP whose output is their mean (so the
    saved head keeps the same format; ``metadata.hidden`` grows accordingly).

    Returns a summary: which axes were trained, epochs run, best stop-set loss per axis.
    """
    summary: dict[str, Any] = {}
    opts: dict[str, Any] = {"epochs": epochs, "patience": patience, "lr": lr, "weight_decay": weight_decay, "batch_images": batch_images}
    for axis in ("minor", "sexual"):
        y = train_set.minor_y if axis == "minor" else train_set.sexual_y
        if not _both_classes(y) or not _both_classes(stop_set.minor_y if axis == "minor" else stop_set.sexual_y):
            summary[axis] = {"trained": False, "why": "needs both classes in train and calib splits; kept the prior"}
            continue
        _standardise(head, train_set, axis)
        k = members if axis == "minor" and head.metadata.hidden > 0 else 1
        nets, runs = [], []
        for j in range(k):
            runs.append(_fit_branch(head, axis, train_set, stop_set, seed=seed + j, **opts))
            nets.append(copy.deepcopy(head.minor_net if axis == "minor" else head.sexual_net))
        if k > 1:
            head.minor_net = _pack_members(nets)
            head.metadata.hidden = head.metadata.hidden * k
            with torch.no_grad():
                best = float(_mil_loss(head.eval(), stop_set, axis, runs[0][2]))
        else:
            best = runs[0][0]
        summary[axis] = {
            "trained": True, "members": k, "epochs": [r[1] for r in runs], "best_stop_loss": round(best, 5),
            "pos_weight": round(runs[0][2], 3),
        }
    head.eval()
    return summary


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
) -> dict[str, Any]:
    """Train, calibrate and save a head; returns its metadata's metrics and provenance.

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
    return {"head": str(Path(out).with_suffix("")), "metrics": meta.metrics, "policy": meta.policy, "provenance": meta.provenance}


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
