"""Fitting a head's branches: the training set, the multiple-instance loss, early stopping, bagging.

:func:`fit_head` is the numerical core of :func:`genguard.learn.training.train`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from genguard.embedders.base import ImageEmbedding
from genguard.heads.head import Head

__all__ = ["TrainingSet", "fit_head"]


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
