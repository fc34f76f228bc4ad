"""Calibration: Platt scaling of a head's logits, and thresholds for a target false-positive rate."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["calibrate_platt", "fpr_threshold", "threshold_for_fpr"]


def calibrate_platt(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Fit ``p = sigmoid(a z + b)`` by maximum likelihood (L-BFGS); rows with nan are ignored."""
    ok = ~np.isnan(logits) & ~np.isnan(labels)
    z = torch.from_numpy(logits[ok].astype(np.float64))
    y = torch.from_numpy(labels[ok].astype(np.float64))
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(a * z + b, y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return {"a": float(a.detach()), "b": float(b.detach())}


def fpr_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold at which at most ``target_fpr`` of the negatives (``labels == 0``) score at or above it.

    Any score scale (probabilities or logits); NaN scores are ignored.
    """
    neg = np.sort(scores[(labels == 0) & ~np.isnan(scores)])[::-1]
    if not len(neg):
        raise ValueError("no negative rows to set a threshold on")
    k = int(np.floor(target_fpr * len(neg)))  # at most k negatives may reach the threshold
    return float(np.nextafter(neg[k], np.inf)) if k < len(neg) else float(neg[-1])


def threshold_for_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float, *, floor: float = 0.05) -> float:
    """:func:`fpr_threshold` on calibrated scores, but at least ``floor`` (and at most 1).

    The floor keeps a threshold meaningful on separable data, where the FPR rule alone
    would put it just above the highest negative score (possibly near 0).
    """
    return min(max(fpr_threshold(scores, labels, target_fpr), floor), 1.0)
