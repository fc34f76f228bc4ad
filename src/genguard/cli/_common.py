"""What every command shares: exit codes, usage errors, model options, input expansion."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = [
    "EXIT_BLOCKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "add_guard_options",
    "expand",
    "guard_kwargs",
    "parse_assume",
    "pick",
]

EXIT_OK: Final = 0
EXIT_BLOCKED: Final = 1
EXIT_USAGE: Final = 2
MAX_BYTES: Final = 64 * 1024 * 1024
"""genguard.imageio.MAX_BYTES, kept literal so that ``genguard --help`` imports no image code."""


class UsageError(Exception):
    """A bad command line; exits 2."""


def add_guard_options(p: argparse.ArgumentParser) -> None:
    """The model options every model-running command takes."""
    from genguard.embedders.registry import backbone_help

    g = p.add_argument_group("model")
    g.add_argument("--backbone", default="bundled", help=backbone_help())
    g.add_argument("--head", default=None, help="head weights (.safetensors with .json beside it); default: the shipped head")
    g.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the models run (default: cpu)")
    g.add_argument("--batch-size", type=int, default=8, help="frames per model call (default: 8)")
    g.add_argument("--threads", type=int, default=None, help="onnxruntime threads per model and lane (default: the cores shared among the lanes)")


def parse_assume(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    out: dict[str, int] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("minor", "sexual") or value.strip() not in ("0", "1"):
            raise UsageError(f"--assume takes minor=0|1,sexual=0|1, got {text!r}")
        out[key.strip()] = int(value)
    return out


def expand(paths: Sequence[str], max_bytes: int = MAX_BYTES) -> Iterator[tuple[str, Any]]:
    """``(label, input)`` pairs: files as paths, folders walked, ``-`` read from stdin.

    stdin is read up to ``max_bytes + 1`` bytes, never further: more is refused by the loader
    as too large. Paths are only named here; the loader opens nothing but regular files.
    """
    from genguard.imageio.files import iter_image_files
    from genguard.imageio.loader import read_limited

    for p in paths:
        if p == "-":
            yield "-", read_limited(sys.stdin.buffer, max_bytes)
        elif Path(p).is_dir():
            for f in iter_image_files(p):
                yield str(f), f
        elif Path(p).exists():
            yield p, Path(p)
        else:
            raise UsageError(f"no such file or folder: {p}")


def guard_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"head": args.head, "device": args.device, "batch_size": args.batch_size}
    if args.threads is not None:
        kw["threads"] = args.threads
    return kw


def pick(args: argparse.Namespace, names: str, **renamed: str) -> dict[str, Any]:
    """Keyword arguments from parsed options: ``names`` (space-separated) as they are, ``renamed`` as ``kw=option``."""
    out = {name: getattr(args, name) for name in names.split()}
    out.update({kw: getattr(args, option) for kw, option in renamed.items()})
    return out
