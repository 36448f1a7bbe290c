"""Generator architectures by name, and rebuilding a generator from the config stored in its model file.

Every architecture follows one protocol: attributes ``nz``, ``conditioning``, ``schedule``, ``config`` and
``forward(x, level, z)`` on images in [-1, 1] (:mod:`pnprgm.rgm.unet`, :mod:`pnprgm.rgm.official`,
:mod:`pnprgm.rgm.drunet`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from pnprgm.config import build_strict, to_dict
from pnprgm.registry import Registry
from pnprgm.rgm.unet import GeneratorConfig, UNetGenerator

#: Generator architectures by ``config["arch"]``: ``builder(config: dict) -> nn.Module`` following the protocol.
ARCHITECTURES: Registry[Callable[[Mapping[str, Any]], nn.Module]] = Registry("generator architecture")


@ARCHITECTURES.register("unet", "pnprgm's UNet with adaptive group norm (pnprgm.rgm.unet)")
def _build_unet(config: Mapping[str, Any]) -> nn.Module:
    return UNetGenerator(build_strict(GeneratorConfig, config, what="model"))


@ARCHITECTURES.register("ncsnpp", "the official RGM NCSN++ generator (pnprgm.rgm.official), official argument dicts")
def _build_ncsnpp(config: Mapping[str, Any]) -> nn.Module:
    from pnprgm.rgm.official import build_generator

    return build_generator(config)


@ARCHITECTURES.register("drunet", "deepinv's DRUNet denoiser (pnprgm.rgm.drunet): no latent, noise-level map input")
def _build_drunet(config: Mapping[str, Any]) -> nn.Module:
    from pnprgm.rgm.drunet import build_drunet

    return build_drunet(config)


def build_generator_from_config(config: Mapping[str, Any] | GeneratorConfig) -> nn.Module:
    """Rebuild a generator (untrained weights) from its stored config dict (``generator.config``).

    The architecture is ``config["arch"]``; official argument dicts (with ``num_channels_dae``) are ``ncsnpp``.
    """
    if isinstance(config, GeneratorConfig):
        config = to_dict(config)
    config = dict(config)
    arch = config.get("arch") or ("ncsnpp" if "num_channels_dae" in config else "unet")
    return ARCHITECTURES.get(arch)(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
