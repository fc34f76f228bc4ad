"""Guard() and classify() never touch the network: every socket connection attempt raises."""

from __future__ import annotations

import socket
from typing import Any, NoReturn

import pytest


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every way of opening a connection raise, and record the attempts."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def _raise(*args: Any, **kwargs: Any) -> NoReturn:
            attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}")
            raise NetworkUsed(f"network access attempted: {name}")

        return _raise

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


def test_the_guard_really_is_cut_off(no_network: list[str]) -> None:
    """The fixture works: a connection attempt raises and is recorded."""
    with pytest.raises(NetworkUsed):
        socket.create_connection(("pypi.org", 443), timeout=1)
    with pytest.raises(NetworkUsed), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    assert len(no_network) == 2


@pytest.mark.slow
def test_fresh_guard_and_classify_make_no_connection(no_network: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage import data

    from genguard import Guard
    from genguard.embedders.bundled import assets as _assets

    monkeypatch.setattr(_assets, "_verified", {})  # check and open every bundled file again
    guard = Guard()
    v = guard.classify(data.astronaut())
    vs = guard.classify_batch([data.coffee(), b"not an image"])
    assert v.decision == "allow" and [x.decision for x in vs] == ["allow", "block"]
    assert no_network == []
