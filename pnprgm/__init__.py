"""pnprgm: plug-and-play image restoration with RGM (Restoration based Generative Models) denoisers.

Heavy submodules are imported lazily so ``import pnprgm`` and the CLI start fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from pnprgm import _checkout

__version__ = "0.1.0"

_checkout.find_siblings(__file__)  # pnprgm.operators, .cli, .pretrained in a checkout

_LAZY = {
    "restore": ("pnprgm.restoration", "restore"),
    "UserError": ("pnprgm.errors", "UserError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'pnprgm' has no attribute {name!r}")
