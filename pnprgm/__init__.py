"""pnprgm: plug-and-play image restoration with RGM (Restoration based Generative Models) denoisers.

Restore in Python (y: a float tensor (C, H, W) in [0, 1]; the operator as a spec string or a LinearPhysics)::

    import pnprgm
    from pnprgm import io
    y = io.read_image("small.png")                     # 3 x 64 x 64
    x = pnprgm.restore(y, "sr4", image_shape=(3, 256, 256), noise_sigma=0.01)
    io.write_image("restored.png", x)

``pnprgm.restore`` (one restoration), ``pnprgm.restoration.restore_samples`` (mean and std over seeds),
``pnprgm.operators`` (``pnprgm operators`` lists the specs), ``pnprgm.denoisers``, ``pnprgm.solvers``,
``pnprgm.metrics``; every bad input is a :class:`pnprgm.UserError` with a one-line message.
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


__all__ = ["restore", "UserError", "__version__"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


#: Subpackages reachable as ``pnprgm.NAME`` without their own import (as the docstring shows), imported on first use.
_SUBMODULES = ("benchmark", "denoisers", "io", "metrics", "operators", "presets", "restoration", "solvers", "training")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _SUBMODULES:
        return importlib.import_module(f"pnprgm.{name}")
    raise AttributeError(f"module 'pnprgm' has no attribute {name!r}")
