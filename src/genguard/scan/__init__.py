"""Scan whole datasets into Parquet: ``genguard scan`` (see docs/scan.md).

>>> from genguard.scan import scan                         # doctest: +SKIP
>>> scan(["shards/*.tar"], "out/")["decisions"]            # doctest: +SKIP
{'allow': 9998, 'review': 2}
"""

from genguard.scan.run import scan
from genguard.scan.sources import ScanSourceError
from genguard.scan.worker import ScreeningFactory, ScreeningSettings

__all__ = ["ScanSourceError", "ScreeningFactory", "ScreeningSettings", "scan"]
