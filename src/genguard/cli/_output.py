"""Writing the CLI's output safely: file names escaped, a closed pipe never hides a block.

>>> print(escape_label("a.png\\nffff  # forged"))
a.png\\nffff  # forged
"""

from __future__ import annotations

import os
import re
import sys
from typing import Final, TextIO

__all__ = ["Output", "escape_label"]

_UNSAFE: Final = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_label(label: str) -> str:
    """A file name made safe for one line of text output.

    Backslashes, control characters (newlines included), Unicode line separators, bidirectional
    overrides and undecodable bytes (surrogate escapes) are written as backslash escapes, so a file
    name can neither start a new line (a forged blocklist entry or table row) nor reorder one.

    Examples
    --------
    >>> escape_label("ok.png"), escape_label("tab\\there.png")
    ('ok.png', 'tab\\\\there.png')
    """
    return _UNSAFE.sub(_escape_char, label)


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class Output:
    """stdout that survives a closed pipe: after ``BrokenPipeError`` it writes nowhere, so work (and the
    exit status that reports blocked images) goes on."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.broken = False

    def line(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text + "\n")
        except BrokenPipeError:
            self._drop()

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        self.broken = True
        try:  # later writes (and the interpreter's last flush) go to /dev/null instead of raising again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
