"""Compare minor-head settings on the UTKFace dev faces (bundled backbone, cached embeddings).

Selection is by the calib split's loss (never by val); val figures are printed for the record.

    python benchmarks/head_sweep.py --data ../shared/data/utkface/dev --cache .cache/genguard --out /tmp/sweep.json
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch

from genguard.learn.cache import EmbeddingCache
from genguard.learn.datasets import load_utkface, split_of
from genguard.embedders import create_embedder
from genguard.learn.evaluation import compute_metrics, rows_from_arrays
from genguard.heads.head import Head
from genguard.imageio.loader import load_image
from genguard.embedders.bundled.prior import prior_head
from genguard.learn.training import TrainingSet, calibrate_platt, fit_head, threshold_for_fpr

CONFIGS = [
    {"hidden": 256, "lr": 1e-3, "weight_decay": 1e-4},
    {"hidden": 256, "lr": 3e-4, "weight_decay": 1e-3},
    {"hidden": 512, "lr": 1e-3, "weight_decay": 1e-2},
    {"hidden": 128, "lr": 1e-3, "weight_decay": 1e-3},
    {"hidden": 1024, "lr": 3e-4, "weight_decay": 1e-3},
    {"hidden": 0, "lr": 1e-3, "weight_decay": 1e-4},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default="/tmp/head_sweep.json")
    args = ap.parse_args()
    records = load_utkface(args.data)
    embedder = create_embedder("bundled")
    embs = EmbeddingCache(embedder, args.cache).embed_files([r.path for r in records], load_image)
    keep = [i for i, e in enumerate(embs) if e is not None]
    records, embs = [records[i] for i in keep], [embs[i] for i in keep]
    split = np.array([split_of(r.path) for r in records])
    ts = TrainingSet.from_embeddings(embs, [r.minor for r in records], [r.sexual for r in records], minor_source="face")
    parts = {k: ts.subset(np.flatnonzero(split == k)) for k in ("train", "calib", "val")}
    val_ages = np.array([r.age for r, s in zip(records, split) if s == "val"])
    prior = prior_head(embedder)
    results = []
    for cfg in CONFIGS:
        meta = copy.deepcopy(prior.metadata)
        meta.hidden = cfg["hidden"]
        head = Head(meta)
        summary = fit_head(head, parts["train"], parts["calib"], lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        cal = calibrate_platt(parts["calib"].image_logits(head, "minor"), parts["calib"].minor_y)
        head.metadata.calibration["minor"] = cal
        p_cal = head.calibrate("minor", torch.from_numpy(np.nan_to_num(parts["calib"].image_logits(head, "minor"), nan=-1e4))).numpy()
        t = threshold_for_fpr(p_cal, parts["calib"].minor_y, 0.01)
        p_val = head.calibrate("minor", torch.from_numpy(np.nan_to_num(parts["val"].image_logits(head, "minor"), nan=-1e4))).numpy()
        rows = rows_from_arrays(parts["val"].minor_y, p_val, age=val_ages)
        m = compute_metrics(rows, {"minor_threshold": t, "sexual_threshold": 0.8, "review_minor": min(0.25, t), "review_sexual": 0.4})
        res = {**cfg, "calib_loss": summary["minor"]["best_stop_loss"], "epochs": summary["minor"]["epochs"], "threshold": t,
               "val_auc": m["minor_auc"], "val_adult_fpr": m["adult_fpr"], "val_recall_by_band": m["minor_recall_by_band"]}
        results.append(res)
        print(json.dumps(res), flush=True)
    best = min(results, key=lambda r: r["calib_loss"])
    print("chosen by calib loss:", json.dumps(best))
    with open(args.out, "w") as fh:
        json.dump({"results": results, "chosen": best}, fh, indent=2)


if __name__ == "__main__":
    main()
