"""Run the service around a stub Guard (painted scores, a fixed delay per model call) in its own process.

For the fault tests (SIGTERM, Redis killed): ``python tests/stub_server.py --port P [--audit-log F]
[--monitor URL] [--delay-s S]``. Built with the same :func:`genguard.serving.runner.serve_app`
path as ``genguard serve``, so signals and shutdown behave as in production.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import ScoreEmbedder, ScoreHead  # noqa: E402


class SlowEmbedder(ScoreEmbedder):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def embed(self, frames: Any) -> Any:
        time.sleep(self.delay_s)
        return super().embed(frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audit-log", default=None)
    parser.add_argument("--monitor", default=None)
    parser.add_argument("--delay-s", type=float, default=0.1)
    args = parser.parse_args()

    from genguard import Guard
    from genguard.serving.runner import serve_app
    from genguard.serving.screening import Screening
    from genguard.serving.server import create_app, resolve_audit, resolve_monitor

    guard = Guard(embedder=SlowEmbedder(args.delay_s), head=ScoreHead(), hash_frames=True)
    screening = Screening(guard, monitor=resolve_monitor(args.monitor), audit=resolve_audit(args.audit_log))
    app = create_app(screening, max_batch=4)
    serve_app(app, host="127.0.0.1", port=args.port, graceful_s=30)


if __name__ == "__main__":
    main()
