"""``genguard keys create | list | revoke``: the API keys of ``genguard serve --keys FILE``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from genguard.cli._common import EXIT_OK, UsageError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``keys`` (with ``create``, ``list``, ``revoke``) to the subparsers ``sub``."""
    from genguard.serving.keys import PERMISSIONS

    k = sub.add_parser("keys", help="manage the API keys of the HTTP service")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    c = ks.add_parser("create", help="add a key and print it once (only a salted hash is stored)")
    c.add_argument("name", help="who the key is for (1-64 letters, digits, '_', '.', '-'); namespaces its subjects")
    c.add_argument("--keys", required=True, help="the key file (created, mode 0600)")
    c.add_argument("--permissions", default="classify",
                   help=f"comma-separated, from {', '.join(PERMISSIONS)} (default: classify); 'scores' shows "
                        "scores and face details, 'metrics' reads /metrics, 'docs' reads the API schema")
    c.set_defaults(func=_create)

    ls = ks.add_parser("list", help="list the keys (names, ids, permissions; never the keys themselves)")
    ls.add_argument("--keys", required=True, help="the key file")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_list)

    r = ks.add_parser("revoke", help="revoke a key by name or id (a running server notices within a request)")
    r.add_argument("name", help="the key's name or id")
    r.add_argument("--keys", required=True, help="the key file")
    r.set_defaults(func=_revoke)


def _store(path: str) -> Any:
    from genguard.serving.keys import KeyStore

    return KeyStore(path)


def _create(args: argparse.Namespace) -> int:
    perms = [p.strip() for p in args.permissions.split(",") if p.strip()]
    try:
        key = _store(args.keys).create(args.name, permissions=perms)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(key)
    print(f"genguard: key {args.name!r} created with {', '.join(sorted(set(perms)))}; it is shown only this once",
          file=sys.stderr)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    keys = _store(args.keys).list()
    if args.json:
        for k in keys:
            print(json.dumps({"name": k.name, "id": k.id, "permissions": list(k.permissions), "created": k.created,
                              "revoked": k.revoked}))
        return EXIT_OK
    print(f"{'name':20}  {'id':8}  {'permissions':28}  {'created':25}  revoked")
    for k in keys:
        print(f"{k.name:20}  {k.id:8}  {','.join(k.permissions):28}  {k.created:25}  {k.revoked or '-'}")
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    try:
        record = _store(args.keys).revoke(args.name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from exc
    print(f"genguard: revoked key {record.name!r} ({record.id})", file=sys.stderr)
    return EXIT_OK
