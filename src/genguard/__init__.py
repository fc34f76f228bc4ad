"""genguard: screen AI-generated images before anyone sees them.

Two calibrated risk scores per image, *minor presence* and *sexual content*,
and a gate that blocks when both are high.

>>> from genguard import Guard              # doctest: +SKIP
>>> Guard().classify("image.png").decision  # doctest: +SKIP
'allow'

The heavy parts (models, torch, training, evaluation, the server, CLIP) load
lazily, so ``import genguard`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    AuditError,
    BlocklistError,
    DeviceError,
    GenguardError,
    HeadError,
    ImageLoadError,
    ImageTooLargeError,
    IntegrityError,
    ModelFileError,
    MonitorError,
    UnknownBackboneError,
    UnsupportedFormatError,
)
from .policy import Policy
from .verdict import Reason, Scores, Verdict

if TYPE_CHECKING:
    from .audit import AuditLog
    from .blocklist import Blocklist
    from .guard import Guard
    from .imageio import LoadedImage, load_image
    from .monitor import AttemptMonitor

__version__ = "0.1.0"

__all__ = [
    "AttemptMonitor",
    "AuditError",
    "AuditLog",
    "Blocklist",
    "BlocklistError",
    "DeviceError",
    "GenguardError",
    "Guard",
    "HeadError",
    "ImageLoadError",
    "ImageTooLargeError",
    "IntegrityError",
    "LoadedImage",
    "ModelFileError",
    "MonitorError",
    "Policy",
    "Reason",
    "Scores",
    "UnknownBackboneError",
    "UnsupportedFormatError",
    "Verdict",
    "load_image",
]

_LAZY = {
    "Guard": "guard",
    "load_image": "imageio",
    "LoadedImage": "imageio",
    "Blocklist": "blocklist",
    "AttemptMonitor": "monitor",
    "AuditLog": "audit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genguard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
