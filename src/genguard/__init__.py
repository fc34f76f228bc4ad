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

from genguard.errors import (
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
from genguard.policy import Policy
from genguard.verdict import Reason, Scores, Verdict

if TYPE_CHECKING:
    from genguard.defences.audit import AuditLog
    from genguard.defences.blocklist import Blocklist
    from genguard.guard import Guard
    from genguard.defences.monitor import AttemptMonitor
    from genguard.imageio import LoadedImage, load_image

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
    "Guard": "genguard.guard",
    "load_image": "genguard.imageio",
    "LoadedImage": "genguard.imageio",
    "Blocklist": "genguard.defences.blocklist",
    "AttemptMonitor": "genguard.defences.monitor",
    "AuditLog": "genguard.defences.audit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genguard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
