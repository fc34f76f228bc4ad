"""``genguard hash`` and ``weights``."""

from __future__ import annotations

import argparse
from typing import Any

from genguard.cli._common import EXIT_OK, expand

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``hash`` and ``weights`` to the subparsers ``sub``."""
    h = sub.add_parser("hash", help="print PDQ hashes in a blocklist format")
    h.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    h.add_argument(
        "--format", default="plain", choices=("plain", "threatexchange", "pdq-hasher", "csv"),
        help="plain: HASH  # path (default); threatexchange: pdq HASH (python-threatexchange's file format); "
        "pdq-hasher: hash,quality,path (as Meta's PDQ hashers print); csv: signal_type,signal_value,quality,path",
    )

    h.set_defaults(func=_hash)

    w = sub.add_parser("weights", help="download CLIP weights on a connected machine and print where they went")
    w.add_argument("backbone", nargs="?", default="clip", help="clip:MODEL/PRETRAINED (default: clip:ViT-B-32/laion2b_s34b_b79k)")
    w.add_argument("--cache-dir", default=None, help="download into this folder")

    w.set_defaults(func=_weights)


def _hash(args: argparse.Namespace) -> int:
    from genguard.defences.blocklist import format_header, format_line, pdq_hash
    from genguard.imageio import load_image

    header = format_header(args.format)
    if header is not None:
        print(header)
    for label, item in expand(args.paths):
        h = pdq_hash(load_image(item).frames[0])
        print(format_line(args.format, h.hash, h.quality, label))
    return EXIT_OK


def _weights(args: argparse.Namespace) -> int:
    from genguard.embedders.clip.embedder import download_weights

    print(download_weights(args.backbone, cache_dir=args.cache_dir))
    return EXIT_OK
