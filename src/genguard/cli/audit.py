"""``genguard audit verify | head | export | verify-export``: check and hand over the tamper-evident audit log.

``verify`` exits 0 when the chain is intact and 1 at the first missing, edited,
reordered or truncated record (named on stdout); 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from genguard.cli._common import EXIT_BLOCKED, EXIT_OK, UsageError

__all__ = ["register"]


def _add_key_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--key-file", default=None, help="file holding the HMAC key the log was written with (checks every record's HMAC)")
    g.add_argument("--key-env", default=None, help="environment variable holding the HMAC key (e.g. GENGUARD_AUDIT_KEY)")


def register(sub: Any) -> None:
    """Add ``audit`` and its subcommands to the subparsers ``sub``."""
    a = sub.add_parser("audit", help="verify, anchor and export the tamper-evident audit log")
    asub = a.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)

    v = asub.add_parser("verify", help="check the hash chain; exit 1 naming the first missing, edited, reordered or truncated record")
    v.add_argument("paths", nargs="+", metavar="PATH", help="audit log (JSON Lines: its rotated PATH.NNNNNNNNNNNN files are read too; or SQLite)")
    v.add_argument("--head", default=None, metavar="SEQ:HASH", help="a head anchored earlier (`genguard audit head`): it must still be in the chain")
    v.add_argument("--from-seq", type=int, default=None, metavar="N", help="older files were archived on purpose: the chain starts at record N")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_key_options(v)
    v.set_defaults(func=_verify)

    h = asub.add_parser("head", help="print the chain head (after verifying the chain), to anchor it elsewhere")
    h.add_argument("paths", nargs="+", metavar="PATH", help="audit log")
    _add_key_options(h)
    h.set_defaults(func=_head)

    e = asub.add_parser("export", help="records of one subject and time window, with the chain proof for investigators")
    e.add_argument("paths", nargs="+", metavar="PATH", help="audit log")
    e.add_argument("--subject", default=None, help="only this subject's records (default: every subject)")
    e.add_argument("--since", default=None, metavar="TIME", help="from this ISO 8601 time or date (UTC unless it names a zone)")
    e.add_argument("--until", default=None, metavar="TIME", help="up to this ISO 8601 time or date, inclusive")
    e.add_argument("--format", default="jsonl", choices=("jsonl", "csv"), help="records as JSON Lines (byte for byte as logged) or CSV (default: jsonl)")
    e.add_argument("--out", required=True, help="file for the records; the proof goes to OUT.proof.json unless --proof")
    e.add_argument("--proof", default=None, help="file for the chain proof (default: OUT.proof.json)")
    _add_key_options(e)
    e.set_defaults(func=_export)

    c = asub.add_parser("verify-export", help="check an export against its proof and an anchored head")
    c.add_argument("export", help="the exported records (JSON Lines or CSV from `genguard audit export`)")
    c.add_argument("--proof", default=None, help="its proof (default: EXPORT.proof.json)")
    c.add_argument("--head", default=None, metavar="SEQ:HASH", help="the head anchored before the export was asked for")
    c.set_defaults(func=_verify_export)


def _key(args: argparse.Namespace) -> bytes | None:
    from genguard.defences.audit import load_key

    if args.key_file is None and args.key_env is None:
        return None
    return load_key(file=args.key_file, env=args.key_env)


def _anchor(text: str | None) -> Any:
    from genguard.defences.audit import parse_anchor

    if text is None:
        return None
    try:
        return parse_anchor(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _report(report: Any, as_json: bool) -> int:
    for warning in report.warnings:
        print(f"genguard: warning: {warning}", file=sys.stderr)
    if as_json:
        head = None if report.head is None else {"seq": report.head.seq, "hash": report.head.hash, "anchor": report.head.anchor}
        print(json.dumps({"ok": report.ok, "records": report.records, "head": head, "problem": report.problem,
                          "hmac_checked": report.hmac_checked, "warnings": report.warnings}))
    elif report.ok:
        where = "empty" if report.head is None else f"head {report.head.anchor}"
        print(f"ok: {report.records} records, {where}" + (", HMAC checked" if report.hmac_checked else ""))
    else:
        print(f"FAILED after {report.records} intact records: {report.problem}")
    return EXIT_OK if report.ok else EXIT_BLOCKED


def _verify(args: argparse.Namespace) -> int:
    from genguard.defences.audit import verify

    return _report(verify(args.paths, key=_key(args), anchor=_anchor(args.head), from_seq=args.from_seq), args.json)


def _head(args: argparse.Namespace) -> int:
    from genguard.defences.audit import head

    h = head(args.paths, key=_key(args))
    print(json.dumps({"seq": h.seq, "hash": h.hash, "time": h.time, "anchor": h.anchor}))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from genguard.defences.audit import export

    try:
        ex = export(args.paths, subject=args.subject, since=args.since, until=args.until, key=_key(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    proof = Path(args.proof) if args.proof else out.with_name(out.name + ".proof.json")
    out.write_text(ex.csv() if args.format == "csv" else ex.jsonl(), encoding="utf-8")
    proof.write_text(json.dumps(ex.proof, indent=1) + "\n", encoding="utf-8")
    head = ex.proof["head"]
    print(json.dumps({"records": len(ex.lines), "out": str(out), "proof": str(proof),
                      "head": None if head is None else f"{head['seq']}:{head['hash']}"}))
    return EXIT_OK


def _verify_export(args: argparse.Namespace) -> int:
    import csv
    import io

    from genguard.defences.audit import verify_export

    path = Path(args.export)
    proof_path = Path(args.proof) if args.proof else path.with_name(path.name + ".proof.json")
    try:
        proof = json.loads(proof_path.read_text(encoding="utf-8"))
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the export or its proof: {exc}") from exc
    if text.startswith("seq,"):
        lines = [row["record"].encode("utf-8") for row in csv.DictReader(io.StringIO(text))]
    else:
        lines = [line.encode("utf-8") for line in text.splitlines() if line.strip()]
    return _report(verify_export(lines, proof, anchor=_anchor(args.head)), False)
