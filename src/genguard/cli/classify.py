"""``genguard classify``: screen images and print one verdict each."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genguard.cli._common import EXIT_BLOCKED, EXIT_OK, UsageError, add_guard_options, expand, guard_kwargs
from genguard.cli._output import Output, escape_label

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``classify`` command to the subparsers ``sub``."""
    c = sub.add_parser("classify", help="screen images and print one verdict each")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (walked recursively), or - for image bytes on stdin")
    c.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    c.add_argument("--on-error", default="block", choices=("block", "allow", "raise"), help="verdict for unreadable images (default: block, fail closed)")
    c.add_argument("--minor-threshold", type=float, default=None, help="override the head's minor block threshold")
    c.add_argument("--sexual-threshold", type=float, default=None, help="override the head's sexual block threshold")
    c.add_argument("--blocklist", action="append", default=[], metavar="FILE",
                   help="PDQ hash list whose matches are blocked whatever the scores (repeatable; plain, python-threatexchange, "
                   "PDQ-hasher or signal_type/signal_value CSV: see docs/evidence.md)")
    c.add_argument("--review-list", action="append", default=[], metavar="FILE", help="PDQ hash list whose matches go to review (repeatable)")
    c.add_argument("--banks", default=None, metavar="JSON", help="bank configuration: a JSON list of {path, name, action, max_distance, ...} (see docs/evidence.md)")
    c.add_argument("--blocklist-format", default="auto", choices=("auto", "plain", "threatexchange", "pdq-hasher", "csv"),
                   help="format of the lists (default: told apart by their first line)")
    c.add_argument("--allow-empty-blocklist", action="store_true", help="accept a list that holds no PDQ hash (else an error)")
    c.add_argument("--max-distance", type=int, default=None, help="Hamming distance for a blocklist match (default: 31)")
    c.add_argument("--subject", default=None, help="user, API key or session id, for the attempt monitor and audit log")
    c.add_argument("--monitor", default=None, help="SQLite file of the attempt monitor (records blocked and near-miss verdicts of --subject)")
    c.add_argument("--audit-log", default=None, help="append one hash-chained record per verdict (JSON Lines, rotated; or .sqlite)")
    c.add_argument("--audit-key-file", default=None, help="file holding the audit log's HMAC key (signs every record)")
    c.add_argument("--audit-key-env", default=None, help="environment variable holding the audit log's HMAC key")
    c.add_argument("--audit-fsync", action="store_true", help="flush every audit record to disk before going on (slower; see docs/evidence.md)")
    c.add_argument("--skip-minor-below-review", action="store_true",
                   help="throughput option: skip the face stage (minor score shown as -) where the sexual score is below review; decisions are unchanged (default: both scores for every image)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    add_guard_options(c)

    c.set_defaults(func=run)


def _blocklist(args: argparse.Namespace) -> Any:
    """One Blocklist per --blocklist / --review-list file; several are matched together as Banks."""
    from genguard.defences.blocklist import Action, Banks, Blocklist

    lists: list[tuple[str, Action]] = [(path, "block") for path in args.blocklist] + [(path, "review") for path in args.review_list]
    if args.banks is not None:
        if lists:
            raise UsageError("give the lists either in --banks or as --blocklist / --review-list, not both")
        return Banks.from_config(args.banks)
    if not lists:
        return None
    kw: dict[str, Any] = {"format": args.blocklist_format, "allow_empty": args.allow_empty_blocklist}
    if args.max_distance is not None:
        kw["max_distance"] = args.max_distance
    banks: list[Blocklist] = []
    for i, (path, action) in enumerate(lists):
        name = Path(path).stem
        if any(b.name == name for b in banks):
            name = f"{name}-{i + 1}"
        banks.append(Blocklist.from_file(path, action=action, name=name, **kw))
    return banks[0] if len(banks) == 1 else Banks(banks)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from genguard.guard import Guard
    from genguard.policy import Policy
    from genguard.serving.screening import Screening

    for p in args.paths:
        if p != "-" and not Path(p).exists():
            raise UsageError(f"no such file or folder: {p}")
    blocklist = _blocklist(args)
    guard = Guard(args.backbone, on_error=args.on_error, blocklist=blocklist, skip_minor_below_review=args.skip_minor_below_review,
                  hash_frames=bool(args.audit_log), **guard_kwargs(args))
    if args.minor_threshold is not None or args.sexual_threshold is not None:
        base = guard.policy
        minor = base.minor_threshold if args.minor_threshold is None else args.minor_threshold
        sexual = base.sexual_threshold if args.sexual_threshold is None else args.sexual_threshold
        guard.policy = Policy(minor, sexual, min(base.review_minor, minor), min(base.review_sexual, sexual))
    monitor = audit = None
    if args.monitor:
        from genguard.defences.monitor import AttemptMonitor

        monitor = AttemptMonitor(args.monitor)
    if args.audit_log:
        from genguard.defences.audit import AuditLog

        from genguard.defences.audit import load_key

        key = None if args.audit_key_file is None and args.audit_key_env is None else load_key(args.audit_key_file, args.audit_key_env)
        audit = AuditLog(args.audit_log, key=key, fsync=args.audit_fsync)
    screening = Screening(guard, monitor=monitor, audit=audit)

    labels: list[str] = []

    def inputs() -> Iterator[Any]:
        for label, item in expand(args.paths):
            labels.append(label)
            yield item

    # The bar appears only when a run lasts over a second (many images), always on stderr.
    bar = tqdm(unit="img", file=sys.stderr, disable=args.quiet, delay=1.0, mininterval=0.5)
    blocked = 0
    # A closed pipe (`genguard classify ... | head`) drops the output but not the work: every image is
    # still screened and recorded, and the exit status still reports a block.
    out = Output()
    if not args.json:
        out.line(f"{'decision':8}  {'minor':>6}  {'sexual':>6}  path  (details)")
    try:
        for i, verdict in enumerate(guard.iter_classify(inputs(), progress=bar.update)):
            label = labels[i]
            blocked += verdict.blocked
            record = {"path": label, **screening.record(verdict, subject=args.subject, source=label).to_dict()}
            out.line(json.dumps(record) if args.json else _table_row(label, verdict))
    finally:
        bar.close()
        out.flush()
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
        extra.append("minor skipped: sexual score below review")
    if any(r.code == "hash_match" for r in verdict.reasons):
        extra.append("hash match")
    tail = f"  ({escape_label('; '.join(extra))})" if extra else ""
    return f"{verdict.decision:8}  {_score(verdict.scores.minor)}  {_score(verdict.scores.sexual)}  {escape_label(label)}{tail}"


def _score(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.3f}"
