"""API keys of the HTTP service: create, list, revoke, verify; only salted scrypt hashes are stored.

A key reads ``gg_<id>_<secret>``: ``id`` (8 hex digits) names the record to check, ``secret``
(32 random bytes, URL-safe base64) is the part that proves possession. The key file (JSON, mode
0600) holds, per key, its name, id, permissions, creation and revocation times, and
``scrypt(secret, salt)`` with a random 16-byte salt per key; never the key itself. Verification
recomputes the hash and compares it with :func:`hmac.compare_digest` (constant time); a
verified key is remembered in memory (as an HMAC under a per-process random key, never in
clear) so that a busy client does not pay for scrypt on every request.

Examples
--------
>>> import tempfile, os
>>> store = KeyStore(os.path.join(tempfile.mkdtemp(), "keys.json"))
>>> key = store.create("frontend", permissions=("classify",))
>>> store.verify(key).name
'frontend'
>>> store.verify(key + "x") is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

try:
    import fcntl
except ImportError:  # Windows: only one process should manage keys at a time
    fcntl = None  # type: ignore[assignment]

__all__ = ["PERMISSIONS", "ApiKey", "KeyStore"]

PERMISSIONS: Final = ("classify", "scores", "metrics", "docs")
"""What a key may do: ``classify`` (screen images), ``scores`` (see scores and face details),
``metrics`` (read ``/metrics``), ``docs`` (read the OpenAPI schema and docs)."""

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY: Final = re.compile(r"^gg_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_SCRYPT: Final = {"n": 2**14, "r": 8, "p": 1}
_CACHE_MAX: Final = 1024
_FAILURES_PER_S: Final = 10


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's record, without its secret: name, id, permissions, created and revoked (ISO 8601 or None)."""

    name: str
    id: str
    permissions: tuple[str, ...]
    created: str
    revoked: str | None = None

    def allows(self, permission: str) -> bool:
        """True when the key holds ``permission``."""
        return permission in self.permissions


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2), dklen=32)


class KeyStore:
    """The API keys in one JSON file: :meth:`create`, :meth:`revoke`, :meth:`list`, :meth:`verify`.

    Parameters
    ----------
    path : str or PathLike
        The key file; created (mode 0600) by the first :meth:`create`.

    The file is re-read when it changes on disk, so ``genguard keys revoke`` takes effect on a
    running server within a second, without a restart.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._pepper = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}
        self._failures: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ file
    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "keys": []}
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the key file {str(self.path)!r}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("keys"), list):
            raise ValueError(f"{str(self.path)!r} is not a genguard key file (version 1)")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        """The file's content under an exclusive lock; written back when the block succeeds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            self._write(data)

    # ------------------------------------------------------------ management
    def create(self, name: str, *, permissions: Iterable[str] = ("classify",)) -> str:
        """Add a key named ``name`` and return it; the key itself is shown only this once.

        Raises
        ------
        ValueError
            A bad name, an unknown permission, or a name already held by a live key.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"key name {name!r} is not allowed: use 1 to 64 letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        perms = tuple(sorted(set(permissions)))
        unknown = sorted(set(perms) - set(PERMISSIONS))
        if unknown or not perms:
            raise ValueError(f"unknown or no permissions {unknown or list(perms)}; choose from {list(PERMISSIONS)}")
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        salt = secrets.token_bytes(16)
        with self._editing() as data:
            live = [k for k in data["keys"] if k.get("revoked") is None]
            if any(k["name"] == name for k in live):
                raise ValueError(f"a live key named {name!r} exists; revoke it first or choose another name")
            ids = {k["id"] for k in data["keys"]}
            key_id = secrets.token_hex(4)
            while key_id in ids:
                key_id = secrets.token_hex(4)
            data["keys"].append({
                "name": name, "id": key_id, "permissions": list(perms),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "revoked": None,
                "kdf": {"name": "scrypt", **_SCRYPT}, "salt": salt.hex(), "hash": _hash(secret, salt, **_SCRYPT).hex(),
            })
        return f"gg_{key_id}_{secret}"

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke the live key with this name or id; returns its record.

        Raises
        ------
        KeyError
            No live key has this name or id.
        """
        with self._editing() as data:
            for k in data["keys"]:
                if k.get("revoked") is None and name_or_id in (k["name"], k["id"]):
                    k["revoked"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                    return _record(k)
        raise KeyError(f"no live key named {name_or_id!r} in {str(self.path)!r}; see `genguard keys list`")

    def list(self) -> list[ApiKey]:
        """Every key in the file, revoked ones included, oldest first."""
        return [_record(k) for k in self._read()["keys"]]

    # ---------------------------------------------------------- verification
    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            records = {k["id"]: k for k in self._read()["keys"]} if stamp is not None else {}
            self._records, self._stamp, self._verified = records, stamp, {}

    def cached(self, key: str) -> ApiKey | None:
        """The record of ``key`` if it was verified before and is still live; None means "not known yet".

        Cheap (no key derivation), so it may run on an event loop; fall back to :meth:`verify`.
        """
        match = _KEY.match(key) if isinstance(key, str) else None
        if match is None:
            return None
        tag = hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()
        with self._lock:
            self._refresh()
            record = self._records.get(match.group(1))
            if record is None or record.get("revoked") is not None or self._verified.get(tag) is None:
                return None
        return _record(record)

    def verify(self, key: str) -> ApiKey | None:
        """The record of a live key that matches ``key``, or None (malformed, unknown, revoked or wrong).

        A wrong secret for a known id costs one scrypt; past 10 wrong secrets for one id in a
        second, further ones that second are refused without computing (so guessing cannot
        burn the server's CPU).
        """
        match = _KEY.match(key) if isinstance(key, str) else None
        if match is None:
            return None
        key_id, secret = match.groups()
        tag = hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()
        second = int(time.monotonic())
        with self._lock:
            self._refresh()
            record = self._records.get(key_id)
            if record is None or record.get("revoked") is not None:
                return None
            if self._verified.get(tag) is not None:
                return _record(record)
            start, failures = self._failures.get(key_id, (second, 0))
            if start == second and failures >= _FAILURES_PER_S:
                return None
        kdf = record.get("kdf", {})
        try:
            digest = _hash(secret, bytes.fromhex(record["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
            ok = hmac.compare_digest(digest, bytes.fromhex(record["hash"]))
        except (KeyError, TypeError, ValueError):
            return None
        if not ok:
            with self._lock:
                start, failures = self._failures.get(key_id, (second, 0))
                self._failures[key_id] = (second, failures + 1 if start == second else 1)
            return None
        with self._lock:
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            self._verified[tag] = key_id
        return _record(record)


def _record(k: dict[str, Any]) -> ApiKey:
    return ApiKey(k["name"], k["id"], tuple(k["permissions"]), k["created"], k.get("revoked"))
