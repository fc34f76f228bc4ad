"""``genguard scan``: screen whole datasets into Parquet, resumably, in this process or on Ray."""

from __future__ import annotations

import argparse
import json
from typing import Any

from genguard.cli._common import EXIT_BLOCKED, EXIT_OK, UsageError, add_guard_options

__all__ = ["register"]

EXIT_INCOMPLETE = 3
"""Some shards kept failing: the scan is incomplete (they are listed in summary.json; rerun to retry them)."""


def register(sub: Any) -> None:
    """Add the ``scan`` command to the subparsers ``sub``."""
    s = sub.add_parser(
        "scan",
        help="screen whole datasets (folders, globs, CSV/Parquet manifests, WebDataset .tar shards) into Parquet",
        description="Screen every image of SOURCE into Parquet under --out, one file per input shard, plus "
        "summary.json. A rerun with the same sources skips finished shards. Prints the summary as JSON; "
        "exits 0, 1 when some image is blocked (unreadable ones included: they fail closed), "
        f"2 on usage errors, {EXIT_INCOMPLETE} when shards kept failing.",
    )
    s.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a folder or glob of images, a .csv/.parquet manifest, or WebDataset .tar shards (img2dataset layout)")
    s.add_argument("--out", required=True, help="output folder (shards/*.parquet, done.jsonl, summary.json, plots)")
    s.add_argument("--image-column", default=None,
                   help="manifest column with the image: bytes (Parquet) or a path, relative to the manifest "
                   "(default: the first of image, jpg, png, webp, bytes, path, file, filepath, filename)")
    s.add_argument("--id-column", default=None, help="manifest column with each image's id (default: the path, or the row number)")
    s.add_argument("--shard-size", type=int, default=1000, help="images per shard for folders and manifests (default: 1000)")
    s.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local: this machine, no extra service (default); ray: Ray Data actors, on $RAY_ADDRESS or a local cluster")
    s.add_argument("--workers", type=int, default=None,
                   help="local: worker processes (default 1: this process); ray: Guard actors (default 2)")
    s.add_argument("--cpus-per-worker", type=float, default=1.0, help="ray: CPUs each actor holds (default: 1)")
    s.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs each actor holds (default: 0; use with --device cuda)")
    s.add_argument("--retries", type=int, default=2, help="extra attempts for a shard whose worker failed (default: 2)")
    s.add_argument("--blocklist", default=None, help="file of PDQ hashes (one hex hash per line, # comments) to block on sight")
    s.add_argument("--max-distance", type=int, default=None, help="Hamming distance for a blocklist match (default: the blocklist's)")
    s.add_argument("--audit-log", default=None, help="append one JSON record per image to this file (JSON Lines, rotated; .sqlite/.db for SQLite)")
    s.add_argument("--skip-minor-below-review", action="store_true",
                   help="throughput option: skip the face stage where the sexual score is below review; decisions are unchanged (default: both scores for every image)")
    s.add_argument("--no-plots", action="store_true", help="do not draw score_histograms.png")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    add_guard_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genguard.scan import ScanSourceError, ScreeningSettings, scan

    if args.shard_size < 1 or (args.workers is not None and args.workers < 1) or args.retries < 0:
        raise UsageError("--shard-size and --workers must be at least 1, --retries at least 0")
    settings = ScreeningSettings(
        backbone=args.backbone, head=args.head, device=args.device, batch_size=args.batch_size, threads=args.threads,
        skip_minor_below_review=args.skip_minor_below_review, blocklist=args.blocklist, max_distance=args.max_distance, audit_log=args.audit_log,
    )
    workers = args.workers if args.workers is not None else (2 if args.engine == "ray" else 1)
    try:
        summary = scan(
            args.sources, args.out, engine=args.engine, guard=settings, workers=workers,
            cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker, shard_size=args.shard_size,
            image_column=args.image_column, id_column=args.id_column, retries=args.retries,
            progress=not args.quiet, plots=not args.no_plots,
        )
    except ScanSourceError as exc:
        raise UsageError(str(exc)) from exc
    # The exact score histograms stay in OUT/summary.json; the rest is the command's output.
    print(json.dumps({k: v for k, v in summary.items() if k != "score_histograms"}, indent=2))
    if summary["shards"]["failed"]:
        return EXIT_INCOMPLETE
    return EXIT_BLOCKED if summary["decisions"].get("block") else EXIT_OK
