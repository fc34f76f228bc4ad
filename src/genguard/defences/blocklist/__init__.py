"""PDQ hash blocklists: block (or send for review) images that look like a listed image, whatever their scores.

A :class:`Blocklist` is one named bank of listed hashes with its own action
(``block`` or ``review``), distance and labels; :class:`Banks` matches several.
Lists are read in the formats industry lists come in (see :mod:`.formats`).
Each frame is matched in its 8 dihedral variants, so mirrored and rotated
copies are caught, and low-contrast frames through a contrast-normalised hash;
the reason of a match names the bank, the label, the distance and the variant.
Lookup is exact (multi-index hashing up to 47 bits, a popcount scan beyond).
"""

from __future__ import annotations

from .bank import DEFAULT_MAX_DISTANCE, Action, Blocklist
from .banks import Banks
from .formats import FORMATS, HashList, format_header, format_line, read_list
from .hashing import DEFAULT_MIN_QUALITY, VARIANTS, FrameHash, frame_hash, hash_image, pdq_hash

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "DEFAULT_MIN_QUALITY",
    "FORMATS",
    "VARIANTS",
    "Action",
    "Banks",
    "Blocklist",
    "FrameHash",
    "HashList",
    "format_header",
    "format_line",
    "frame_hash",
    "hash_image",
    "pdq_hash",
    "read_list",
]
