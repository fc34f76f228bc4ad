"""The hash chain of the audit log: how a record becomes one line, and how a line is checked.

A record is first written as a JSON object without chain fields, the *body*
(``{"seq": 7, "time": ..., ...}``, compact separators). Then::

    digest = sha256(body)                      # the record's content
    hash   = sha256(prev_hash || digest)       # its place in the chain (raw 32-byte values)
    line   = body[:-1] + ',"prev":"<prev_hash>","hash":"<hash>"' [+ ',"hmac":"<hmac>"'] + '}'

``prev_hash`` is the ``hash`` of the record before (64 zeros before record 0),
``hmac`` (optional) is HMAC-SHA256 of ``hash`` under the operator's key. The
chain fields sit at the end of the line in a fixed form, so the body is
recovered byte for byte without re-serialising JSON. Because ``hash`` needs
only the previous ``hash`` and this record's ``digest``, a slice of the log
can be proved against a later head with the digests of the records in between,
without their contents (see :mod:`.export`).
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from genguard.errors import AuditError

GENESIS: Final = "0" * 64
"""The ``prev`` of record 0."""

KEY_ENV: Final = "GENGUARD_AUDIT_KEY"
"""The environment variable :func:`load_key` reads when asked for the environment."""

_TAIL: Final = re.compile(rb',"prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"(?:,"hmac":"([0-9a-f]{64})")?\}$')


@dataclass(frozen=True)
class Link:
    """One parsed line: its record (chain fields removed), sequence number and chain values."""

    seq: int
    prev: str
    hash: str
    digest: str
    hmac: str | None
    record: dict[str, Any]


def chain_hash(prev: str, digest: str) -> str:
    """``sha256(prev || digest)`` of two hex digests, as hex."""
    return hashlib.sha256(bytes.fromhex(prev) + bytes.fromhex(digest)).hexdigest()


def sign(key: bytes, chain: str) -> str:
    """HMAC-SHA256 of a chain hash under ``key``, as hex."""
    return _hmac.new(key, bytes.fromhex(chain), hashlib.sha256).hexdigest()


def encode(record: dict[str, Any], seq: int, prev: str, key: bytes | None) -> tuple[bytes, str]:
    """``(line without newline, its chain hash)`` for ``record`` at position ``seq`` after ``prev``."""
    body = json.dumps({"seq": seq, **record}, separators=(",", ":"), default=str).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    chain = chain_hash(prev, digest)
    tail = f',"prev":"{prev}","hash":"{chain}"' + (f',"hmac":"{sign(key, chain)}"' if key is not None else "") + "}"
    return body[:-1] + tail.encode("ascii"), chain


def decode(line: bytes) -> Link:
    """Parse and self-check one line (without its newline).

    Raises
    ------
    ValueError
        The line is not a chained record, or its ``hash`` does not match its content and ``prev``.
    """
    m = _TAIL.search(line)
    if m is None:
        raise ValueError("no chain fields (prev, hash) at the end of the line")
    body = line[: m.start()] + b"}"
    try:
        record = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int) or isinstance(record["seq"], bool):
        raise ValueError("not a record with an integer seq")
    prev, chain = m.group(1).decode(), m.group(2).decode()
    digest = hashlib.sha256(body).hexdigest()
    if chain_hash(prev, digest) != chain:
        raise ValueError("its content does not match its hash (edited)")
    seq = record.pop("seq")
    mac = m.group(3).decode() if m.group(3) else None
    return Link(seq, prev, chain, digest, mac, record)


def load_key(file: str | os.PathLike[str] | None = None, env: str | None = None) -> bytes:
    """The HMAC key from a file (its bytes, surrounding whitespace removed) or an environment variable.

    Raises
    ------
    AuditError
        Neither is given, the file cannot be read, the variable is unset, or the key is shorter than 16 bytes.

    Examples
    --------
    >>> import os
    >>> os.environ["DEMO_AUDIT_KEY"] = "correct horse battery staple"
    >>> len(load_key(env="DEMO_AUDIT_KEY"))
    28
    """
    if (file is None) == (env is None):
        raise AuditError("give the audit HMAC key as a file or as an environment variable (exactly one)")
    if file is not None:
        try:
            key = Path(file).read_bytes().strip()
        except OSError as exc:
            raise AuditError(f"cannot read the audit HMAC key file {os.fspath(file)!r}: {exc}") from exc
        where = f"file {os.fspath(file)!r}"
    else:
        assert env is not None
        value = os.environ.get(env)
        if value is None:
            raise AuditError(f"the environment variable {env} (audit HMAC key) is not set")
        key, where = value.strip().encode("utf-8"), f"${env}"
    if len(key) < 16:
        raise AuditError(f"the audit HMAC key in {where} is {len(key)} bytes; use at least 16 (32 random bytes is good)")
    return key
