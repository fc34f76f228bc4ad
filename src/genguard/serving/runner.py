"""Run the service with uvicorn (``genguard serve``): loopback unless keys are configured, credentials masked in logs.

:func:`serve` builds the app with the models loading in the background (``/healthz``
answers at once, ``/readyz`` once they are loaded) and runs it until SIGINT or SIGTERM;
on either signal it stops accepting connections and lets in-flight requests finish (up to
``graceful_s``) before the batcher stops. With ``workers`` > 1, uvicorn starts that many
processes, each with its own models and batcher; they share the key file, the audit log,
and, when they are Redis URLs, the attempt monitor and the rate limits.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from typing import Any, Final

__all__ = ["app_from_env", "is_loopback", "log_config", "serve", "serve_app"]

logger = logging.getLogger("genguard.serving")

_ENV: Final = "GENGUARD_SERVE_CONFIG"
_HEALTHCHECK_S: Final = 120


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("localhost")
    (True, True, False, True)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging, with :class:`~genguard.serving.redact.RedactingFilter` on every handler."""
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "genguard.serving.redact.RedactingFilter"}},
        "formatters": {"plain": {"format": fmt}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"],
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "genguard": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def _screening_factory(config: dict[str, Any]) -> Any:
    def build() -> Any:
        from genguard.guard import Guard
        from genguard.serving.enforcement import Enforcement
        from genguard.serving.screening import Screening
        from genguard.serving.server import resolve_audit, resolve_monitor

        g = dict(config["guard"])
        guard = Guard(g.pop("backbone"), hash_frames=config.get("audit_log") is not None, **g)
        return Screening(guard, monitor=resolve_monitor(config.get("monitor")),
                         audit=resolve_audit(config.get("audit_log")),
                         enforcement=Enforcement(**config.get("enforcement", {})))

    return build


def app_from_env() -> Any:
    """The app of one uvicorn worker, from the configuration :func:`serve` left in the environment."""
    from genguard.serving.server import create_app

    config = json.loads(os.environ[_ENV])
    return create_app(_screening_factory(config), keys=config.get("keys"), **config.get("service", {}))


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    keys: str | os.PathLike[str] | None = None,
    workers: int = 1,
    monitor: str | os.PathLike[str] | None = None,
    audit_log: str | os.PathLike[str] | None = None,
    enforcement: dict[str, Any] | None = None,
    service: dict[str, Any] | None = None,
    guard: dict[str, Any] | None = None,
    graceful_s: float = 30.0,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM (``genguard serve``).

    Parameters
    ----------
    host, port : str, int
        Where to listen. Without ``keys`` only a loopback host is accepted.
    keys : path or None
        The key file (``genguard keys create``); every route but ``/healthz`` then needs a key.
    workers : int, default 1
        uvicorn worker processes.
    monitor, audit_log : path/URL or None
        The attempt monitor (SQLite file or Redis URL) and the audit log.
    enforcement : dict, optional
        Fields of :class:`~genguard.serving.enforcement.Enforcement`.
    service : dict, optional
        Fields of :class:`~genguard.serving.settings.ServiceSettings` (rates as strings, e.g. ``"600/min"``).
    guard : dict, optional
        Arguments of :class:`~genguard.Guard` (``backbone``, ``head``, ``device``, ``threads`` ...).
    graceful_s : float, default 30
        How long a shutdown waits for in-flight requests.

    Raises
    ------
    ValueError
        A non-loopback host without ``keys``, or a bad setting.

    Examples
    --------
    >>> serve(host="127.0.0.1", port=8000, service={"max_batch": 8})  # doctest: +SKIP
    """
    if keys is None and not is_loopback(host):
        raise ValueError(f"refusing to listen on {host!r} without API keys: anyone who can reach it could call it. "
                         "Create keys with `genguard keys create NAME --keys FILE` and pass --keys FILE, or listen "
                         "on 127.0.0.1")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    from genguard.serving.enforcement import Enforcement
    from genguard.serving.settings import ServiceSettings

    ServiceSettings.build(**(service or {}))  # bad settings fail here, before any worker starts
    Enforcement(**(enforcement or {}))
    config = {"keys": None if keys is None else os.fspath(keys),
              "monitor": None if monitor is None else os.fspath(monitor),
              "audit_log": None if audit_log is None else os.fspath(audit_log),
              "enforcement": enforcement or {}, "service": service or {},
              "guard": {"backbone": "bundled", **(guard or {})}}
    if keys is not None:
        from genguard.serving.keys import KeyStore

        if not KeyStore(keys).list():
            raise ValueError(f"the key file {os.fspath(keys)!r} holds no keys; create one with `genguard keys create`")
    os.environ[_ENV] = json.dumps(config)
    if workers > 1:
        # Loading the models keeps a worker's event loop busy for a while: give the health check time.
        serve_app("genguard.serving.runner:app_from_env", host=host, port=port, graceful_s=graceful_s,
                  log_level=log_level, factory=True, workers=workers, timeout_worker_healthcheck=_HEALTHCHECK_S)
    else:
        serve_app(app_from_env(), host=host, port=port, graceful_s=graceful_s, log_level=log_level)


def serve_app(app: Any, *, host: str, port: int, graceful_s: float = 30.0, log_level: str = "info",
              **uvicorn_options: Any) -> None:
    """Run ``app`` (an ASGI app or an import string) under uvicorn with masked logs and a graceful shutdown."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=log_config(log_level), timeout_graceful_shutdown=max(1, round(graceful_s)),
                server_header=False, access_log=False, **uvicorn_options)
