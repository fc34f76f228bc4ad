"""``genguard serve``: the HTTP service (see :mod:`genguard.serving`)."""

from __future__ import annotations

import argparse
from typing import Any

from genguard.cli._common import EXIT_OK, UsageError, add_guard_options, guard_kwargs

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``serve`` to the subparsers ``sub``."""
    s = sub.add_parser("serve", help="run the HTTP service")
    n = s.add_argument_group("network and access")
    n.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1); without --keys "
                   "only loopback is accepted")
    n.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    n.add_argument("--keys", default=None, help="API key file (genguard keys create); every route but /healthz then "
                   "needs 'Authorization: Bearer KEY'")
    n.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json to anyone (default: the schema "
                   "only to keys with the 'docs' permission)")
    n.add_argument("--workers", type=int, default=1, help="worker processes, each with its own models (default: 1)")
    lim = s.add_argument_group("limits and batching")
    lim.add_argument("--max-body", type=int, default=20 * 1024 * 1024, help="largest request body in bytes")
    lim.add_argument("--max-concurrency", type=int, default=32, help="requests waiting for or in inference; more "
                     "get 503 (default: 32)")
    lim.add_argument("--max-batch", type=int, default=8, help="most images in one model call (default: 8)")
    lim.add_argument("--batch-wait-ms", type=float, default=4.0, help="how long a batch waits to fill (default: 4)")
    lim.add_argument("--body-timeout", type=float, default=10.0, help="seconds for the whole body to arrive "
                     "(default: 10)")
    lim.add_argument("--rate-per-key", default=None, help="images per API key, e.g. 600/min (default: no limit)")
    lim.add_argument("--rate-per-subject", default=None, help="images per subject identity, e.g. 60/min")
    lim.add_argument("--rate-redis", default=None, help="Redis URL that shares the rate limits between workers "
                     "(default: the --monitor URL when it is Redis, else in memory)")
    rec = s.add_argument_group("records and enforcement")
    rec.add_argument("--monitor", default=None, help="attempt monitor: SQLite file or redis:// URL (subjects then "
                     "required)")
    rec.add_argument("--audit-log", default=None, help="audit log (JSON Lines, or SQLite for .sqlite/.db)")
    rec.add_argument("--on-throttle", default="refuse", choices=("refuse", "allow"),
                     help="a throttled subject: 429 with Retry-After (default) or served")
    rec.add_argument("--on-lock", default="block", choices=("block", "refuse", "allow"),
                     help="a locked subject: 403 with a blocking verdict (default), 429, or served")
    rec.add_argument("--retry-after", type=int, default=60, help="Retry-After for a refused subject (default: 60 s)")
    rec.add_argument("--skip-minor-below-review", action="store_true",
                     help="throughput option: skip the face stage where the sexual score is below review; the monitor then "
                     "cannot see probes with a high minor score and a sexual score just below review (default: both scores)")
    add_guard_options(s)
    s.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from genguard.serving.runner import serve

    rate_redis = args.rate_redis
    if rate_redis is None and args.monitor and args.monitor.startswith(("redis://", "rediss://", "unix://")):
        rate_redis = args.monitor
    service = {"max_body": args.max_body, "max_concurrency": args.max_concurrency, "max_batch": args.max_batch,
               "batch_wait_ms": args.batch_wait_ms, "body_timeout_s": args.body_timeout, "docs": args.docs,
               "rate_per_key": args.rate_per_key, "rate_per_subject": args.rate_per_subject,
               "rate_redis": rate_redis if (args.rate_per_key or args.rate_per_subject) else None}
    try:
        serve(host=args.host, port=args.port, keys=args.keys, workers=args.workers, monitor=args.monitor,
              audit_log=args.audit_log, service=service,
              enforcement={"throttle": args.on_throttle, "lock": args.on_lock, "retry_after_s": args.retry_after},
              guard={"backbone": args.backbone, "skip_minor_below_review": args.skip_minor_below_review, **guard_kwargs(args)})
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_OK
