"""Fine-tune the age network for minor detection on a chip cache (see :mod:`.chips`).

Recipe (all of it reproducible from the UTKFace dev folder and the seed):

- split: :func:`genguard.learn.datasets.split_of`; train on ``train``, stop early and
  calibrate on ``calib``; ``val`` is never read here;
- each epoch draws ``len(train)`` chips with replacement, weighted so that every
  gender x race cell weighs the square root of its size among minors and among adults,
  with the ages 13-25 (the boundary) counted twice; each draw takes the native or the
  scene view at random;
- losses: KL to a Gaussian-smoothed age distribution, plus 3 x binary cross-entropy of
  the under-12/15/18 logits against soft labels;
- AdamW (weight decay on weights only), one-cycle schedule, the minor branch at 10x the
  learning rate; the epoch with the best calib AUC (mean of the native and scene views,
  mirror-averaged) is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from .augment import age_targets, augment, minor_targets
from .chips import load_chip_cache
from .model import AGE_BINS, AgeNet, export_onnx, load_onnx, normalise

__all__ = ["minor_metrics", "predict", "sample_weights", "train_agenet"]

logger = logging.getLogger(__name__)

BANDS = ((0, 5), (6, 12), (13, 15), (16, 17))


def sample_weights(age: npt.NDArray[np.integer], group: npt.NDArray[np.str_]) -> npt.NDArray[np.float64]:
    """Draw weights: gender x race cells weigh sqrt(size) among minors and among adults; ages 13-25 count twice."""
    w = np.ones(len(age), np.float64)
    minor = age < 18
    for m in (True, False):
        for g in np.unique(group):
            sel = (minor == m) & (group == g)
            if sel.any():
                w[sel] = 1.0 / np.sqrt(sel.sum())
    w[(age >= 13) & (age <= 25)] *= 2.0
    out: npt.NDArray[np.float64] = w / w.mean()
    return out


@torch.no_grad()
def predict(model: AgeNet, chips: npt.NDArray[np.uint8], *, mirror: bool, batch: int = 512) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(minor_logits [N, 3], expected_age [N])``; with ``mirror`` the chip's and its mirror image's logits are averaged."""
    model.eval()
    logits, ages = [], []
    for s in range(0, len(chips), batch):
        x = normalise(chips[s : s + batch])
        _, a, m = model(x)
        if mirror:
            _, a2, m2 = model(x.flip(3))
            a, m = (a + a2) / 2, (m + m2) / 2
        logits.append(m.numpy())
        ages.append(torch.softmax(a, 1).numpy() @ AGE_BINS)
    if not logits:
        return np.zeros((0, 3), np.float32), np.zeros((0,), np.float32)
    return np.concatenate(logits).astype(np.float32), np.concatenate(ages).astype(np.float32)


def minor_metrics(
    score: npt.NDArray[np.floating], age: npt.NDArray[np.integer], group: npt.NDArray[np.str_] | None = None, fpr: float = 0.01
) -> dict[str, Any]:
    """Minor AUC, and at the threshold that flags ``fpr`` of adults: recall per age band, adults 18-20 flagged, F2,
    and (with ``group``) each gender x race cell's adult false-positive rate (cells with 30+ adults)."""
    from sklearn.metrics import roc_auc_score

    y = age < 18
    if y.all() or not y.any():
        return {"n": int(len(y)), "auc": None}
    thr = float(np.quantile(score[~y], 1 - fpr))
    out: dict[str, Any] = {"auc": float(roc_auc_score(y, score)), "threshold": thr}
    for lo, hi in BANDS:
        out[f"recall_{lo}-{hi}"] = float((score[(age >= lo) & (age <= hi)] > thr).mean())
    out["adults_18-20_flagged"] = float((score[(age >= 18) & (age <= 20)] > thr).mean())
    tp, fn, fp = int((score[y] > thr).sum()), int((score[y] <= thr).sum()), int((score[~y] > thr).sum())
    out["f2"] = 5 * tp / (5 * tp + 4 * fn + fp)
    if group is not None:
        out["adult_fpr_by_group"] = {
            str(g): float((score[~y & (group == g)] > thr).mean()) for g in np.unique(group) if (~y & (group == g)).sum() >= 30
        }
    return out


def _optimiser(model: AgeNet, lr: float, weight_decay: float, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for n, p in model.named_parameters():
        groups.setdefault((n.startswith("minor."), n.endswith(".weight")), []).append(p)
    opt = torch.optim.AdamW(
        [{"params": ps, "lr": lr * (10 if head else 1), "weight_decay": weight_decay if decay else 0.0} for (head, decay), ps in groups.items()]
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=0.1)
    return opt, sched


def train_agenet(
    cache: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str],
    epochs: int = 10,
    seed: int = 0,
    lr: float = 3e-4,
    weight_decay: float = 0.05,
    batch: int = 64,
    threads: int = 2,
    limit: int | None = None,
) -> dict[str, Any]:
    """Fine-tune age-v1 (``base``) on the chip cache; writes ``OUT/agenet.onnx`` and ``OUT/history.json``.

    Returns the history: per epoch the loss, wall time and calib metrics; the best epoch.
    """
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    d = load_chip_cache(cache)
    tr = np.flatnonzero((d["split"] == "train") & (d["found"].max(1) > 0))[:limit]
    calib = {v: np.flatnonzero((d["split"] == "calib") & (d["found"][:, v] > 0)) for v in (0, 1)}
    w = sample_weights(d["age"][tr], d["group"][tr])
    model = load_onnx(base)
    opt, sched = _optimiser(model, lr, weight_decay, epochs * (len(tr) // batch))
    history: list[dict[str, Any]] = []
    best = (-math.inf, -1)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        idx = rng.choice(tr, size=len(tr), replace=True, p=w / w.sum())
        found = d["found"][idx]
        view = np.where(found[:, 1] == 0, 0, np.where(found[:, 0] == 0, 1, (rng.random(len(idx)) < 0.5).astype(int)))
        total, steps = 0.0, 0
        for s in range(0, len(idx) - batch + 1, batch):
            bi = idx[s : s + batch]
            age = d["age"][bi]
            _, age_logits, minor_logits = model(augment(d["chips"][bi, view[s : s + batch]], rng))
            loss = F.kl_div(F.log_softmax(age_logits, 1), age_targets(age), reduction="batchmean")
            loss = loss + 3.0 * F.binary_cross_entropy_with_logits(minor_logits, minor_targets(age))
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total, steps = total + float(loss.detach()), steps + 1
        record: dict[str, Any] = {"epoch": epoch, "loss": total / max(steps, 1), "wall_s": round(time.time() - t0)}
        for v, view_name in enumerate(("native", "scene")):
            sel = calib[v]
            z = predict(model, d["chips"][sel, v], mirror=True)[0][:, 2]
            record[f"calib_{view_name}_mirror"] = minor_metrics(z, d["age"][sel], d["group"][sel])
        aucs = [record[f"calib_{v}_mirror"]["auc"] for v in ("native", "scene")]
        aucs = [a for a in aucs if a is not None]
        record["criterion"] = sum(aucs) / len(aucs) if aucs else -record["loss"]  # -loss: a calib split too small to rank
        history.append(record)
        logger.info("epoch %d: %s", epoch, json.dumps(record))
        (outdir / "history.json").write_text(json.dumps({"history": history}, indent=1) + "\n")
        if record["criterion"] > best[0]:
            best = (record["criterion"], epoch)
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(outdir / "best.safetensors"))
    model.load_state_dict(load_file(str(outdir / "best.safetensors")))
    export_onnx(model, base, outdir / "agenet.onnx")
    result = {
        "args": {"epochs": epochs, "seed": seed, "lr": lr, "weight_decay": weight_decay, "batch": batch, "threads": threads, "limit": limit},
        "n_train": int(len(tr)),
        "history": history,
        "best_epoch": best[1],
        "wall_s": round(time.time() - t0),
    }
    (outdir / "history.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
