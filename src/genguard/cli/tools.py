"""``genguard hash`` and ``weights``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from genguard.cli._common import EXIT_BLOCKED, EXIT_OK, expand
from genguard.cli._output import Output, escape_label

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``hash`` and ``weights`` to the subparsers ``sub``."""
    h = sub.add_parser("hash", help="print PDQ hashes in a blocklist format (one per frame and view; exit 1 if any file could not be read)")
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
    """One line per scored frame and view; unreadable files are reported and skipped, and exit 1 at the end."""
    from genguard.defences.blocklist import format_header, format_line, pdq_hash
    from genguard.errors import GenguardError
    from genguard.imageio.loader import load_image

    out = Output()
    header = format_header(args.format)
    if header is not None:
        out.line(header)
    failed = 0
    for label, item in expand(args.paths):
        safe = escape_label(label)
        try:
            loaded = load_image(item)
        except GenguardError as exc:
            failed += 1
            print(f"genguard: error: {safe}: {escape_label(str(exc))}", file=sys.stderr)
            continue
        for frame, index, view in zip(loaded.frames, loaded.frame_indices, loaded.views):
            tags = ([f"frame {index}"] if loaded.n_frames > 1 else []) + ([view] if view else [])
            h = pdq_hash(frame)
            out.line(format_line(args.format, h.hash, h.quality, safe + (" (" + ", ".join(tags) + ")" if tags else "")))
    out.flush()
    if failed:
        print(f"genguard: {failed} file(s) could not be hashed", file=sys.stderr)
    return EXIT_BLOCKED if failed else EXIT_OK


def _weights(args: argparse.Namespace) -> int:
    from genguard.embedders.clip.embedder import download_weights

    print(download_weights(args.backbone, cache_dir=args.cache_dir))
    return EXIT_OK
