"""Docstring examples of the core modules stay true (``python -m doctest`` style)."""

from __future__ import annotations

import doctest
import importlib

import pytest

CORE_MODULES = [
    "genguard",
    "genguard.errors",
    "genguard.policy",
    "genguard.verdict",
    "genguard.heads.head",
    "genguard.guard",
    "genguard.embedders",
    "genguard.embedders.base",
    "genguard.embedders.bundled.assets",
    "genguard.embedders.bundled.embedder",
    "genguard.imageio.loader",
    "genguard.imageio._formats",
    "genguard.imageio._pixels",
    "genguard.imageio._budget",
    "genguard.imageio._read",
    "genguard.cli._output",
    "genguard.learn.datasets",
    "genguard.learn.cache",
    "genguard.learn.agenet.model",
    "genguard.learn.agenet.augment",
    "genguard.cli",
]

# Modules whose docstrings must carry at least one example that really runs.
WITH_EXAMPLES = {
    "genguard.policy",
    "genguard.verdict",
    "genguard.heads.head",
    "genguard.embedders",
    "genguard.learn.datasets",
    "genguard.learn.agenet.model",
    "genguard.learn.agenet.augment",
}


@pytest.mark.parametrize("name", CORE_MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}; run: python -m doctest -v {module.__file__}"
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, f"{name} lost its docstring examples"
