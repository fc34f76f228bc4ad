"""``genguard hash``, ``weights`` and ``serve``."""

from __future__ import annotations

import argparse
from typing import Any

from genguard.cli._common import EXIT_OK, add_guard_options, expand, guard_kwargs, pick

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``hash``, ``weights`` and ``serve`` to the subparsers ``sub``."""
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

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument("--max-body", type=int, default=20 * 1024 * 1024, help="largest request body in bytes")
    s.add_argument("--max-concurrency", type=int, default=4, help="requests classified at once; more get 503")
    s.add_argument("--monitor", default=None, help="SQLite file for the attempt monitor (enables X-Genguard-Subject)")
    s.add_argument("--audit-log", default=None, help="JSON Lines audit log")
    add_guard_options(s)
    s.set_defaults(func=_serve)


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


def _serve(args: argparse.Namespace) -> int:
    from genguard.serving.server import serve

    serve(**pick(args, "host port max_body max_concurrency monitor audit_log backbone"), **guard_kwargs(args))
    return EXIT_OK
