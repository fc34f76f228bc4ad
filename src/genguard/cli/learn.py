"""``genguard train``, ``eval`` and ``scenes``: the offline commands (they import :mod:`genguard.learn`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from genguard.cli._common import EXIT_OK, add_guard_options, guard_kwargs, parse_assume, pick

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``train``, ``eval`` and ``scenes`` to the subparsers ``sub``."""
    t = sub.add_parser("train", help="train a head on labelled data")
    t.add_argument("--data", required=True, action="append", help="dataset path (repeatable): UTKFace folder, CSV manifest, or folder")
    t.add_argument("--format", default=None, choices=("utkface", "csv", "folder"), help="dataset format (guessed when omitted)")
    t.add_argument("--assume", default=None, help="labels for plain folders, e.g. minor=0,sexual=0")
    t.add_argument("--out", required=True, help="output path stem: writes OUT.safetensors and OUT.json")
    t.add_argument("--limit", type=int, default=None, help="use an evenly spaced subset of this many images per dataset")
    t.add_argument("--hidden", type=int, default=256, help="hidden width of the minor MLP (0: linear)")
    t.add_argument("--epochs", type=int, default=200, help="most epochs (early stopping on the calib split's loss)")
    t.add_argument("--face-features", default=None, help="comma-separated face feature slices the minor branch uses (default: all), e.g. age_penultimate,expected_age_div100")
    t.add_argument("--members", type=int, default=1, help="bag this many minor MLPs (different seeds) into one head (default: 1)")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    t.add_argument("--target-fpr", type=float, default=0.01, help="adult false-positive rate that sets the minor threshold (default 0.01)")
    t.add_argument("--cache", default=None, help="embedding cache folder (default: $GENGUARD_CACHE or ~/.cache/genguard)")
    add_guard_options(t)

    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="evaluate a head on labelled data and write a report")
    e.add_argument("--data", required=True, help="UTKFace folder, CSV manifest, or folder")
    e.add_argument("--format", default=None, choices=("utkface", "csv", "folder"), help="dataset format (guessed when omitted)")
    e.add_argument("--assume", default=None, help="labels for plain folders, e.g. minor=0,sexual=0")
    e.add_argument("--report", required=True, help="output folder for metrics.json, report.md and plots")
    e.add_argument("--limit", type=int, default=None, help="use an evenly spaced subset of this many images")
    e.add_argument("--split", default="all", choices=("all", "val", "train"), help="evaluate only this part of the hash split (default: all)")
    e.add_argument("--cache", default=None, help="embedding cache folder")
    add_guard_options(e)

    e.set_defaults(func=_eval)

    sc = sub.add_parser("scenes", help="build the scene set (faces pasted into benign backgrounds) and measure face recall")
    sc.add_argument("--faces", required=True, help="UTKFace folder to take faces from (its val split)")
    sc.add_argument("--out", required=True, help="folder for the scenes and manifest.csv (keep it outside the repository)")
    sc.add_argument("--n", type=int, default=400, help="number of scenes (default: 400)")
    sc.add_argument("--hard", action="store_true", help="make every face harder to find: rotated, occluded, blurred, low-contrast, or in a wide-margin portrait")
    sc.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_guard_options(sc)
    sc.set_defaults(func=_scenes)


def _train(args: argparse.Namespace) -> int:
    from genguard.learn.training import train

    result = train(
        args.data,
        assume=parse_assume(args.assume),
        face_features=args.face_features.split(",") if args.face_features else None,
        **pick(args, "out backbone format limit hidden epochs seed target_fpr device batch_size members lr weight_decay",
               cache_dir="cache"),
    )
    print(json.dumps(result.to_dict(), indent=2))
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from genguard.learn.evaluation import evaluate

    result = evaluate(
        args.data,
        assume=parse_assume(args.assume),
        **pick(args, "report format limit split backbone", cache_dir="cache"),
        **guard_kwargs(args),
    )
    print(json.dumps(result.metrics, indent=2))
    return EXIT_OK


def _scenes(args: argparse.Namespace) -> int:
    from genguard.guard import Guard
    from genguard.learn.scenes import build_scenes, face_recall

    manifest = build_scenes(args.faces, args.out, n=args.n, seed=args.seed, hard=args.hard)
    guard = Guard(args.backbone, **guard_kwargs(args))
    result = {"manifest": str(manifest), **face_recall(manifest, guard.embed)}
    print(json.dumps(result, indent=2))
    return EXIT_OK
