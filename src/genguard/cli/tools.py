"""``genguard hash``, ``weights`` and ``serve``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from genguard.cli._common import EXIT_BLOCKED, EXIT_OK, add_guard_options, expand, guard_kwargs
from genguard.cli._output import Output, escape_label

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``hash``, ``weights`` and ``serve`` to the subparsers ``sub``."""
    h = sub.add_parser("hash", help="print PDQ hashes in blocklist format (one per frame and view; exit 1 if any file could not be read)")
    h.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")

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
    """One line per scored frame and view; unreadable files are reported and skipped, and exit 1 at the end."""
    from genguard.defences.blocklist import pdq_hash
    from genguard.errors import GenguardError
    from genguard.imageio.loader import load_image

    out = Output()
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
            out.line(f"{pdq_hash(frame).hash}  # {safe}{' (' + ', '.join(tags) + ')' if tags else ''}")
    out.flush()
    if failed:
        print(f"genguard: {failed} file(s) could not be hashed", file=sys.stderr)
    return EXIT_BLOCKED if failed else EXIT_OK


def _weights(args: argparse.Namespace) -> int:
    from genguard.embedders.clip.embedder import download_weights

    print(download_weights(args.backbone, cache_dir=args.cache_dir))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from genguard.serving.server import serve

    serve(
        host=args.host,
        port=args.port,
        max_body=args.max_body,
        max_concurrency=args.max_concurrency,
        monitor=args.monitor,
        audit_log=args.audit_log,
        backbone=args.backbone,
        **guard_kwargs(args),
    )
    return EXIT_OK
