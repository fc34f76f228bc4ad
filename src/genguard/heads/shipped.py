"""The heads genguard ships, and the sha256 of each of their files, checked at load.

The thresholds of a shipped head live in its JSON file, so an edited JSON (say,
thresholds 1.0/1.0) must be refused like an edited ONNX model. After training a
new shipped head, record its digests here (``sha256sum src/genguard/heads/NAME.*``)
and say so in the commit.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from genguard._digest import file_sha256
from genguard.errors import IntegrityError, ModelFileError
from genguard.heads.head import Head, load_head

__all__ = ["SHIPPED", "load_shipped_head", "shipped_head_path", "verify_shipped_head"]

SHIPPED: Final[dict[str, dict[str, str]]] = {
    "bundled": {
        "bundled.safetensors": "94e4c884092d821cf70b7625c26434c1f8841621657427069eb38af99a9468b0",
        "bundled.json": "5c7c61a02b6b30a86e2eefa585a24d756692faaa6f08e6c2a9173f7b6392c111",
    },
}
"""Shipped head name -> {file name: sha256}."""


def shipped_head_path(name: str) -> Path:
    """The weights file of the shipped head ``name`` (inside the installed package).

    Raises
    ------
    ModelFileError
        genguard ships no head of that name.
    """
    if name not in SHIPPED:
        raise ModelFileError(
            f"genguard ships a head only for {', '.join(repr(n) for n in SHIPPED)}, not {name!r}; "
            "pass head=PATH (from `genguard train`) or use the CLIP zero-shot head"
        )
    return Path(str(files("genguard.heads").joinpath(f"{name}.safetensors")))


def verify_shipped_head(name: str) -> Path:
    """Check every file of the shipped head ``name`` against its recorded sha256; returns the weights path.

    Raises
    ------
    ModelFileError
        A file is missing.
    IntegrityError
        A file's sha256 differs from the recorded one (the message names the file).
    """
    weights = shipped_head_path(name)
    for file_name, expected in SHIPPED[name].items():
        path = weights.with_name(file_name)
        if not path.is_file():
            raise ModelFileError(f"shipped head file {path} is missing; reinstall genguard")
        actual = file_sha256(path)
        if actual != expected:
            raise IntegrityError(
                f"shipped head file {path} has sha256 {actual}, expected {expected}: it was edited or "
                "corrupted; reinstall genguard (or pass head=PATH for a head of your own)"
            )
    return weights


def load_shipped_head(name: str, *, device: str = "cpu") -> Head:
    """Load the shipped head ``name`` after checking its files' sha256."""
    return load_head(verify_shipped_head(name), device=device)
