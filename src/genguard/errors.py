"""Exceptions raised by genguard.

Every error genguard raises derives from :class:`GenguardError`, so one
``except GenguardError`` catches them all. Some also inherit the matching
built-in exception, so existing handlers keep working::

    GenguardError
    ├── ImageLoadError (ValueError)         the input could not be read as an image
    │   ├── ImageTooLargeError              over the byte or pixel limit; refused before decoding
    │   └── UnsupportedFormatError          a format genguard does not decode
    ├── ModelFileError (FileNotFoundError)  a model or head file is missing
    ├── IntegrityError                      a model file does not match its recorded sha256
    ├── UnknownBackboneError (ValueError)   a backbone name that the registry does not know
    ├── HeadError (ValueError)              head weights or metadata are malformed or mismatched
    ├── DeviceError (RuntimeError)          device="cuda" asked for, but no usable GPU runtime
    ├── BlocklistError (ValueError)         a hash blocklist line is not a valid PDQ hash
    ├── MonitorError (RuntimeError)         the attempt monitor's store cannot be read or written
    └── AuditError (OSError)                an audit record cannot be written or read

Errors from Pillow, onnxruntime and open_clip are wrapped and chained with
``raise ... from exc``, so the original is always in ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "BlocklistError",
    "DeviceError",
    "GenguardError",
    "HeadError",
    "ImageLoadError",
    "ImageTooLargeError",
    "IntegrityError",
    "ModelFileError",
    "MonitorError",
    "UnknownBackboneError",
    "UnsupportedFormatError",
]


class GenguardError(Exception):
    """Base class of every error genguard raises."""


class ImageLoadError(GenguardError, ValueError):
    """Raised when an input cannot be decoded into an image (corrupt, truncated, empty, not an image)."""


class ImageTooLargeError(ImageLoadError):
    """Raised when an input exceeds the byte or pixel limit; checked from the header, before decoding."""


class UnsupportedFormatError(ImageLoadError):
    """Raised when the input is an image format genguard does not decode."""


class ModelFileError(GenguardError, FileNotFoundError):
    """Raised when a model, weights or head file is missing; the message names the file and how to provide it."""


class IntegrityError(GenguardError):
    """Raised when a bundled model file's sha256 differs from the digest genguard recorded."""


class UnknownBackboneError(GenguardError, ValueError):
    """Raised for a backbone name the registry does not know; the message lists the known ones."""


class HeadError(GenguardError, ValueError):
    """Raised when head weights or metadata are malformed, or built for another backbone."""


class BlocklistError(GenguardError, ValueError):
    """Raised when a blocklist line is not a 64-digit hex PDQ hash; the message names the line."""


class DeviceError(GenguardError, RuntimeError):
    """Raised when ``device="cuda"`` is asked for but torch or onnxruntime has no usable GPU; never falls back to the CPU."""


class MonitorError(GenguardError, RuntimeError):
    """Raised when the monitor's store (SQLite file or Redis server) cannot be read or written."""


class AuditError(GenguardError, OSError):
    """Raised when an audit record cannot be written or read."""
