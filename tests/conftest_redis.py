"""A real ``redis-server`` on loopback for the Redis backend tests (import :func:`redis_url` as a fixture).

The server gets a free port and a temporary folder and runs as production should (see
docs/service.md): append-only file on (``--appendonly yes``), fsync'd on every write
(``--appendfsync always``), no RDB snapshots. It is stopped after the session. Tests skip
with a clear message only when the ``redis-server`` binary is absent (CI installs Debian's
``redis-server`` package). :class:`RedisServer` can also be killed and restarted on the same
port and folder, for the fault tests.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "redis_binary", "redis_url"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1; :meth:`start`, :meth:`kill`, :meth:`stop`."""

    def __init__(self, binary: str, folder: Path, *, appendonly: bool = True) -> None:
        self.binary, self.folder, self.appendonly = binary, folder, appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 3, wait_s: float = 10.0, *, same_port: bool = False) -> None:
        """Start (or restart on the same port and folder, reading back the append-only file)."""
        import redis

        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        for _ in range(attempts):  # another process may take the free port between bind and start
            if not (same_port and self.port):
                self.port = _free_port()
            log = self.folder / f"redis-{self.port}.log"
            self.process = subprocess.Popen(
                [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                 "--save", "", *aof, "--daemonize", "no", "--logfile", str(log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                        return
                except redis.BusyLoadingError:
                    time.sleep(0.05)
                except redis.ConnectionError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"redis-server did not start after {attempts} attempts; see logs in {self.folder}")

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to save anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); Redis backend tests skipped")
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'genguard[redis]')")
    return binary


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """Path of ``redis-server`` (skips when absent, or when the redis package is missing)."""
    return _binary()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a fresh loopback ``redis-server`` (append-only file on) for this test session."""
    server = RedisServer(_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class FakeClock:
    """A settable clock for monitors (seconds since the epoch)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def make_monitor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory of monitors on one store (a SQLite file, or a Redis key prefix unique to the test)."""
    from genguard.defences.monitor import AttemptMonitor

    opened: list[Any] = []
    if request.param == "sqlite":
        target, extra = str(tmp_path / "attempts.sqlite"), {}
    else:
        target, extra = request.getfixturevalue("redis_url"), {"key_prefix": f"test:{uuid.uuid4().hex}:"}

    def make(**kwargs: Any) -> Any:
        mon = AttemptMonitor(target, **extra, **kwargs)
        opened.append(mon)
        return mon

    yield make
    for mon in opened:
        mon.close()
