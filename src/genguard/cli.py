"""The ``genguard`` command: a thin shell over the library.

Data goes to stdout, progress and errors to stderr. Exit status: 0 when
nothing is blocked, 1 when something is, 2 on usage errors (and on any other
error, which is printed as one line; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from . import __version__
from .errors import GenguardError

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_BLOCKED: Final = 1
EXIT_USAGE: Final = 2
_PROGRESS_MIN: Final = 10


class UsageError(Exception):
    """A bad command line; exits 2."""


def _add_guard_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--backbone", default="bundled", help="'bundled' (default, offline) or 'clip:MODEL/PRETRAINED'")
    g.add_argument("--head", default=None, help="head weights (.safetensors with .json beside it); default: the shipped head")
    g.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the models run (default: cpu)")
    g.add_argument("--batch-size", type=int, default=8, help="frames per model call (default: 8)")
    g.add_argument("--threads", type=int, default=None, help="onnxruntime threads per model (default: one per core)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genguard", description="Screen AI-generated images: minor presence x sexual content.")
    parser.add_argument("--version", action="version", version=f"genguard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("classify", help="screen images and print one verdict each")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (walked recursively), or - for image bytes on stdin")
    c.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    c.add_argument("--on-error", default="block", choices=("block", "allow", "raise"), help="verdict for unreadable images (default: block, fail closed)")
    c.add_argument("--minor-threshold", type=float, default=None, help="override the head's minor block threshold")
    c.add_argument("--sexual-threshold", type=float, default=None, help="override the head's sexual block threshold")
    c.add_argument("--blocklist", default=None, help="file of PDQ hashes (one hex hash per line, # comments) to block on sight")
    c.add_argument("--max-distance", type=int, default=None, help="Hamming distance for a blocklist match (default: the blocklist's)")
    c.add_argument("--subject", default=None, help="user, API key or session id, for the attempt monitor and audit log")
    c.add_argument("--monitor", default=None, help="SQLite file of the attempt monitor (records blocked and near-miss verdicts of --subject)")
    c.add_argument("--audit-log", default=None, help="append one JSON record per verdict to this file (JSON Lines, rotated)")
    c.add_argument("--full-scores", action="store_true", help="score the minor axis of every image (default: only where the sexual score could make it matter)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_guard_options(c)

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
    _add_guard_options(t)

    e = sub.add_parser("eval", help="evaluate a head on labelled data and write a report")
    e.add_argument("--data", required=True, help="UTKFace folder, CSV manifest, or folder")
    e.add_argument("--format", default=None, choices=("utkface", "csv", "folder"), help="dataset format (guessed when omitted)")
    e.add_argument("--assume", default=None, help="labels for plain folders, e.g. minor=0,sexual=0")
    e.add_argument("--report", required=True, help="output folder for metrics.json, report.md and plots")
    e.add_argument("--limit", type=int, default=None, help="use an evenly spaced subset of this many images")
    e.add_argument("--split", default="all", choices=("all", "val", "train"), help="evaluate only this part of the hash split (default: all)")
    e.add_argument("--cache", default=None, help="embedding cache folder")
    _add_guard_options(e)

    sc = sub.add_parser("scenes", help="build the scene set (faces pasted into benign backgrounds) and measure face recall")
    sc.add_argument("--faces", required=True, help="UTKFace folder to take faces from (its val split)")
    sc.add_argument("--out", required=True, help="folder for the scenes and manifest.csv (keep it outside the repository)")
    sc.add_argument("--n", type=int, default=400, help="number of scenes (default: 400)")
    sc.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_guard_options(sc)

    h = sub.add_parser("hash", help="print PDQ hashes in blocklist format")
    h.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")

    w = sub.add_parser("weights", help="download CLIP weights on a connected machine and print where they went")
    w.add_argument("backbone", nargs="?", default="clip", help="clip:MODEL/PRETRAINED (default: clip:ViT-B-32/laion2b_s34b_b79k)")
    w.add_argument("--cache-dir", default=None, help="download into this folder")

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument("--max-body", type=int, default=20 * 1024 * 1024, help="largest request body in bytes")
    s.add_argument("--max-concurrency", type=int, default=4, help="requests classified at once; more get 503")
    s.add_argument("--monitor", default=None, help="SQLite file for the attempt monitor (enables X-Genguard-Subject)")
    s.add_argument("--audit-log", default=None, help="JSON Lines audit log")
    _add_guard_options(s)
    return parser


def _parse_assume(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    out: dict[str, int] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("minor", "sexual") or value.strip() not in ("0", "1"):
            raise UsageError(f"--assume takes minor=0|1,sexual=0|1, got {text!r}")
        out[key.strip()] = int(value)
    return out


def _expand(paths: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """``(label, input)`` pairs: files as paths, folders walked, ``-`` read from stdin."""
    from .datasets import iter_image_files

    for p in paths:
        if p == "-":
            yield "-", sys.stdin.buffer.read()
        elif Path(p).is_dir():
            for f in iter_image_files(p):
                yield str(f), f
        elif Path(p).exists():
            yield p, Path(p)
        else:
            raise UsageError(f"no such file or folder: {p}")


def _guard_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"head": args.head, "device": args.device, "batch_size": args.batch_size}
    if args.threads is not None:
        kw["threads"] = args.threads
    return kw


def _cmd_classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .guard import Guard
    from .policy import Policy

    for p in args.paths:
        if p != "-" and not Path(p).exists():
            raise UsageError(f"no such file or folder: {p}")
    blocklist = None
    if args.blocklist:
        from .blocklist import Blocklist

        blocklist = Blocklist.from_file(args.blocklist, **({} if args.max_distance is None else {"max_distance": args.max_distance}))
    guard = Guard(args.backbone, on_error=args.on_error, blocklist=blocklist, full_scores=args.full_scores, **_guard_kwargs(args))
    if args.minor_threshold is not None or args.sexual_threshold is not None:
        base = guard.policy
        minor = base.minor_threshold if args.minor_threshold is None else args.minor_threshold
        sexual = base.sexual_threshold if args.sexual_threshold is None else args.sexual_threshold
        guard.policy = Policy(minor, sexual, min(base.review_minor, minor), min(base.review_sexual, sexual))
    monitor = audit = None
    if args.monitor:
        from .monitor import AttemptMonitor

        monitor = AttemptMonitor(args.monitor)
    if args.audit_log:
        from .audit import AuditLog

        audit = AuditLog(args.audit_log)

    labels: list[str] = []

    def inputs() -> Iterator[Any]:
        for label, item in _expand(args.paths):
            labels.append(label)
            yield item

    # The bar appears only when a run lasts over a second (many images), always on stderr.
    bar = tqdm(unit="img", file=sys.stderr, disable=args.quiet, delay=1.0, mininterval=0.5)
    blocked = 0
    if not args.json:
        print(f"{'decision':8}  {'minor':>6}  {'sexual':>6}  path  (details)")
    try:
        for i, verdict in enumerate(guard.iter_classify(inputs(), progress=bar.update)):
            label = labels[i]
            blocked += verdict.blocked
            record = {"path": label, **verdict.to_dict()}
            if monitor is not None and args.subject:
                record["escalation"] = monitor.record(args.subject, verdict, policy=guard.policy).to_dict()
            if audit is not None:
                audit.record(verdict, subject=args.subject, image=None if label == "-" else label, guard=guard)
            if args.json:
                print(json.dumps(record), flush=False)
            else:
                print(_table_row(label, verdict))
    finally:
        bar.close()
        sys.stdout.flush()
    return EXIT_BLOCKED if blocked else EXIT_OK


def _table_row(label: str, verdict: Any) -> str:
    extra = []
    if verdict.error:
        extra.append(f"error: {verdict.error}")
    ages = [r.detail.get("age") for r in verdict.reasons if r.code in ("minor_face", "face")]
    if ages:
        extra.append("face ages " + ", ".join(f"{a:.0f}" for a in ages if a is not None))
    elif any(r.code == "no_face" for r in verdict.reasons):
        extra.append("no face")
    elif any(r.code == "minor_skipped" for r in verdict.reasons):
        extra.append("minor not scored: sexual score below review")
    if any(r.code == "hash_match" for r in verdict.reasons):
        extra.append("hash match")
    tail = f"  ({'; '.join(extra)})" if extra else ""
    minor = "     -" if verdict.scores.minor is None else f"{verdict.scores.minor:6.3f}"
    return f"{verdict.decision:8}  {minor}  {verdict.scores.sexual:6.3f}  {label}{tail}"


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    result = train(
        args.data,
        out=args.out,
        backbone=args.backbone,
        format=args.format,
        assume=_parse_assume(args.assume),
        limit=args.limit,
        hidden=args.hidden,
        epochs=args.epochs,
        seed=args.seed,
        target_fpr=args.target_fpr,
        cache_dir=args.cache,
        device=args.device,
        batch_size=args.batch_size,
        members=args.members,
        lr=args.lr,
        weight_decay=args.weight_decay,
        face_features=args.face_features.split(",") if args.face_features else None,
    )
    print(json.dumps(result, indent=2))
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    metrics = evaluate(
        args.data,
        report=args.report,
        format=args.format,
        assume=_parse_assume(args.assume),
        limit=args.limit,
        split=args.split,
        cache_dir=args.cache,
        backbone=args.backbone,
        **_guard_kwargs(args),
    )
    print(json.dumps(metrics, indent=2))
    return EXIT_OK


def _cmd_scenes(args: argparse.Namespace) -> int:
    from .guard import Guard
    from .scenes import build_scenes, face_recall

    manifest = build_scenes(args.faces, args.out, n=args.n, seed=args.seed)
    guard = Guard(args.backbone, **_guard_kwargs(args))
    result = {"manifest": str(manifest), **face_recall(manifest, guard.embed)}
    print(json.dumps(result, indent=2))
    return EXIT_OK


def _cmd_hash(args: argparse.Namespace) -> int:
    from .blocklist import hash_image

    for label, item in _expand(args.paths):
        print(f"{hash_image(item)}  # {label}")
    return EXIT_OK


def _cmd_weights(args: argparse.Namespace) -> int:
    from .embedders.clip import download_weights

    print(download_weights(args.backbone, cache_dir=args.cache_dir))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(
        host=args.host,
        port=args.port,
        max_body=args.max_body,
        max_concurrency=args.max_concurrency,
        monitor=args.monitor,
        audit_log=args.audit_log,
        backbone=args.backbone,
        **_guard_kwargs(args),
    )
    return EXIT_OK


_COMMANDS: Final = {
    "classify": _cmd_classify,
    "train": _cmd_train,
    "eval": _cmd_eval,
    "scenes": _cmd_scenes,
    "hash": _cmd_hash,
    "weights": _cmd_weights,
    "serve": _cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="genguard: %(levelname)s: %(message)s", stream=sys.stderr)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"genguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except (GenguardError, OSError, ValueError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"genguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
