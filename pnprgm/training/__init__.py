"""RGM training: priors, forward processes, the training loop, checkpoints and sampling (the networks, schedules
and model files it trains live in :mod:`pnprgm.rgm`; their names below are re-exported from there).

Public API (imported lazily so ``import pnprgm.training`` stays light):

- :func:`train` (``pnprgm train``), :func:`load_model` (model file -> generator),
  :func:`build_generator_from_config`, :func:`build_process`, :func:`sample_from_noise`;
- configs :class:`GeneratorConfig`, :class:`ProcessConfig`, :class:`TrainConfig`;
- registries ``SIZES`` (generator sizes), ``PROCESSES``, ``PRIORS``, ``ARCHITECTURES``.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "train": "pnprgm.training.loop",
    "prepare": "pnprgm.training.loop",
    "load_model": "pnprgm.rgm.model_file",
    "read_model_file": "pnprgm.rgm.model_file",
    "load_checkpoint": "pnprgm.training.checkpoint",
    "build_generator_from_config": "pnprgm.rgm.architectures",
    "UNetGenerator": "pnprgm.rgm.unet",
    "GeneratorConfig": "pnprgm.rgm.unet",
    "SIZES": "pnprgm.rgm.unet",
    "ARCHITECTURES": "pnprgm.rgm.architectures",
    "sized_config": "pnprgm.rgm.unet",
    "ProcessConfig": "pnprgm.training.config",
    "TrainConfig": "pnprgm.training.config",
    "build_process": "pnprgm.training.processes",
    "PROCESSES": "pnprgm.training.processes",
    "PRIORS": "pnprgm.training.priors",
    "Discriminator": "pnprgm.training.priors",
    "sample_from_noise": "pnprgm.training.sampling",
    "restore_degraded": "pnprgm.training.sampling",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pnprgm.training' has no attribute {name!r}")
