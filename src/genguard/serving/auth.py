"""Who may call the service: ``Authorization: Bearer KEY`` checked against a :class:`~genguard.serving.keys.KeyStore`.

Without a key store every caller is anonymous with the permissions ``classify`` and
``metrics`` (and ``docs`` when the docs are public): ``genguard serve`` then listens on
loopback only. A missing or unknown key gets 401 with ``WWW-Authenticate: Bearer``; a key
without the route's permission gets 403.
"""

from __future__ import annotations

import os
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from genguard.serving._http import ApiError
from genguard.serving.keys import ApiKey, KeyStore

__all__ = ["Authorizer"]

_ANONYMOUS: Final = frozenset({"classify", "metrics"})
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}


class Authorizer:
    """Check a request's API key and permission.

    Parameters
    ----------
    keys : KeyStore, path or None
        The key store; None lets every caller in anonymously (loopback only).
    docs : bool
        The API docs are public.
    """

    def __init__(self, keys: KeyStore | str | os.PathLike[str] | None, *, docs: bool = False) -> None:
        self.store = keys if keys is None or isinstance(keys, KeyStore) else KeyStore(keys)
        self.docs = docs
        self.anonymous = _ANONYMOUS | ({"docs"} if docs else set())

    async def check(self, request: Request, permission: str | None) -> ApiKey | None:
        """The caller's key (None when anonymous); raises ApiError 401 or 403."""
        if self.store is None:
            if permission is not None and permission not in self.anonymous:
                raise ApiError(403, "forbidden", f"this route needs an API key with the {permission!r} permission")
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer KEY'", _CHALLENGE)
        key = self.store.cached(token)
        if key is None:
            key = await run_in_threadpool(self.store.verify, token)
        if key is None:
            raise ApiError(401, "unauthorized", "the API key is not valid", _CHALLENGE)
        if permission is not None and not key.allows(permission):
            raise ApiError(403, "forbidden", f"this key lacks the {permission!r} permission")
        request.scope.setdefault("state", {})["key"] = key.name
        return key

    def may(self, key: ApiKey | None, permission: str) -> bool:
        """True when the caller (None: anonymous) holds ``permission``."""
        return permission in self.anonymous if key is None else key.allows(permission)

    @staticmethod
    def namespace(key: ApiKey | None, value: str) -> str:
        """A subject as the monitor stores it: prefixed by the key's name (keys cannot contain '/')."""
        return value if key is None else f"{key.name}/{value}"
