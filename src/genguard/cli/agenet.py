"""``genguard agenet chips|train|ship|eval``: fine-tune the bundled age network for minor detection.

The three steps that made the shipped ``agenet-v1.onnx`` and head (docs/model/MODEL_CARD.md):

    genguard agenet chips --data ../shared/data/utkface/dev --out /tmp/agenet/chips
    genguard agenet train --chips /tmp/agenet/chips --out /tmp/agenet/run
    genguard agenet ship --model /tmp/agenet/run/agenet.onnx --chips /tmp/agenet/chips --head-out /tmp/agenet/bundled
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from genguard.cli._common import EXIT_OK

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``agenet`` and its three steps to the subparsers ``sub``."""
    a = sub.add_parser("agenet", help="fine-tune the bundled age network for minor detection (chips, train, ship)")
    steps = a.add_subparsers(dest="step", metavar="STEP", required=True)

    c = steps.add_parser("chips", help="cut the pipeline's 64 px face chips (native and pasted-into-scene views) into a cache")
    c.add_argument("--data", required=True, help="UTKFace folder")
    c.add_argument("--out", required=True, help="cache folder (UTKFace pixels: keep it outside the repository)")
    c.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    c.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of this many images")
    c.set_defaults(func=_chips)

    t = steps.add_parser("train", help="fine-tune on the chip cache's train split; writes OUT/agenet.onnx and OUT/history.json")
    t.add_argument("--chips", required=True, help="chip cache folder (from `genguard agenet chips`)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--base", default=None, help="age-v1.onnx to start from (default: the bundled one, sha256 checked)")
    t.add_argument("--epochs", type=int, default=10, help="epochs (default: 10; the best calib epoch is kept)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the network (default: 3e-4)")
    t.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on weights (default: 0.05)")
    t.add_argument("--batch", type=int, default=64, help="batch size (default: 64)")
    t.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    t.add_argument("--limit", type=int, default=None, help="train on the first N train images only (smoke tests)")
    t.set_defaults(func=_train)

    s = steps.add_parser("ship", help="calibrate a tuned network on calib and write the head that reads its under-18 logit")
    s.add_argument("--model", required=True, help="tuned ONNX file (from `genguard agenet train`)")
    s.add_argument("--chips", required=True, help="chip cache folder")
    s.add_argument("--head-out", required=True, help="output path stem of the head: writes OUT.safetensors and OUT.json")
    s.add_argument("--base-head", default=None, help="head whose sexual branch is kept (default: the shipped head)")
    s.add_argument("--target-fpr", type=float, default=0.01, help="adult false-positive rate that sets the minor threshold (default 0.01)")
    s.add_argument("--review-fpr", type=float, default=0.05,
                   help="adult false-positive rate that sets the minor review threshold (default 0.05)")
    s.set_defaults(func=_ship)

    e = steps.add_parser("eval", help="chip-level minor figures of a tuned network (native and scene views, with and without mirroring)")
    e.add_argument("--model", required=True, help="tuned ONNX file")
    e.add_argument("--chips", required=True, help="chip cache folder")
    e.add_argument("--split", default="val", choices=("train", "calib", "val"), help="which part of the hash split (default: val)")
    e.add_argument("--fpr", type=float, default=0.01, help="adult false-positive rate of the operating point (default 0.01)")
    e.set_defaults(func=_eval)


def _chips(args: argparse.Namespace) -> int:
    from genguard.learn.agenet.chips import build_chip_cache

    for path in build_chip_cache(args.data, args.out, workers=args.workers, limit=args.limit):
        print(path)
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from genguard.embedders.bundled.assets import asset_path
    from genguard.learn.agenet.train import train_agenet

    logging.getLogger("genguard.learn.agenet").setLevel(logging.INFO)  # one progress line per epoch on stderr

    result = train_agenet(
        args.chips, args.out, base=args.base or asset_path("age"), epochs=args.epochs, seed=args.seed, lr=args.lr,
        weight_decay=args.weight_decay, batch=args.batch, threads=args.threads, limit=args.limit,
    )
    best = result["history"][result["best_epoch"]]
    print(json.dumps({"best_epoch": result["best_epoch"], "wall_s": result["wall_s"], "calib": best}, indent=2))
    return EXIT_OK


def _ship(args: argparse.Namespace) -> int:
    from genguard._digest import file_sha256
    from genguard.heads.shipped import shipped_head_path
    from genguard.learn.agenet.ship import build_head

    head = build_head(args.model, args.chips, args.base_head or shipped_head_path("bundled"), target_fpr=args.target_fpr,
                      review_fpr=args.review_fpr, provenance={"model_sha256": file_sha256(args.model)})
    path = head.save(args.head_out)
    print(json.dumps({"head": str(path), "policy": head.metadata.policy, "calibration": head.metadata.calibration["minor"],
                      "model_sha256": file_sha256(args.model)}, indent=2))
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from genguard.learn.agenet.report import evaluate_chips

    print(json.dumps(evaluate_chips(args.model, args.chips, split=args.split, fpr=args.fpr), indent=2))
    return EXIT_OK
