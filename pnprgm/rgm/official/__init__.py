"""The official RGM generator (NCSN++ with AdaGN), compatible with the published checkpoints.

``build_generator(config)`` builds it from an official train.py argument dict, ``load_generator(path, config)``
loads ``netG_*.pth`` / ``content.pth`` / our own files, ``save_generator`` writes a self-describing file.
"""
from __future__ import annotations

from pnprgm.rgm.official.configs import (
    CELEBAHQ256,
    CIFAR10,
    CONFIGS,
    GeneratorArgs,
    generator_args,
    official_config,
    resolve_config,
)
from pnprgm.rgm.official.loading import load_generator, save_generator
from pnprgm.rgm.official.ncsnpp import NCSNppGenerator, build_generator

__all__ = [
    "CELEBAHQ256",
    "CIFAR10",
    "CONFIGS",
    "GeneratorArgs",
    "NCSNppGenerator",
    "build_generator",
    "generator_args",
    "official_config",
    "load_generator",
    "resolve_config",
    "save_generator",
]
