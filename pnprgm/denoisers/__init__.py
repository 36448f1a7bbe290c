"""Denoisers usable as proximal operators: one registry (``registry``) drives the CLI, the tests and the docs.

Every entry is a factory ``factory(*, channels, device, seed) -> deepinv.models.Denoiser``; every denoiser
follows deepinv's contract ``forward(x, sigma)`` with x in [0, 1] and sigma a float or a (B,) tensor.
Learned models are registered by :mod:`pnprgm.denoisers.rgm` (the ``default`` entry, the shipped models and their
families, the old names of renamed ones as aliases; model files are given by path).
"""
from __future__ import annotations


import torch
from deepinv.models import Denoiser

from pnprgm.denoisers.base import DenoiserFactory, registry
from pnprgm.denoisers import classical as _classical  # noqa: F401  (registers tv, nlm, bm3d)
from pnprgm.denoisers import tikhonov as _tikhonov  # noqa: F401  (registers tikhonov)
from pnprgm.denoisers import rgm as _rgm  # noqa: F401  (registers rgm, the shipped families and models)
from pnprgm.denoisers.tiled import TiledDenoiser
from pnprgm.errors import UserError

__all__ = ["registry", "build", "check_name", "names", "canonical", "TiledDenoiser", "DenoiserFactory"]


def names() -> list[str]:
    """Registered denoiser names (model files are accepted by path as well)."""
    return registry.names()


def canonical(name: str, *, notice: bool = True) -> str:
    """Today's name of a denoiser name (an old name announces its new one once, unless ``notice`` is False);
    other names and paths unchanged."""
    return registry.canonical(name, notice=notice)


def build(name_or_path: str | Denoiser, *, channels: int = 3, device: str | torch.device = "cpu", seed: int = 0) -> Denoiser:
    """A denoiser from a registered name, a model file path, or an instance (returned as is).

    :param name_or_path: registry name (``pnprgm denoisers`` lists them) or path to a ``.pt`` model file.
    :param channels: channels of the images it will see (picks the colour or gray shipped model).
    :param device: torch device.
    :param seed: seed of its randomness (latent z of RGM models).
    """
    if isinstance(name_or_path, torch.nn.Module) and not isinstance(name_or_path, Denoiser) \
            and hasattr(name_or_path, "nz") and hasattr(name_or_path, "config"):
        # a generator as pnprgm.training.load_model returns it, forward(x, level, z): the denoiser a model file makes
        return _rgm.RGMDenoiser(name_or_path, seed=seed).to(device)
    if isinstance(name_or_path, Denoiser) or isinstance(name_or_path, torch.nn.Module):
        return name_or_path
    name = str(name_or_path)
    if name in registry:
        return registry.get(name)(channels=channels, device=torch.device(device), seed=seed)
    check_name(name, channels)
    return _rgm.load_denoiser(name, channels=channels, device=device, seed=seed)


def check_name(name: str, channels: int = 3) -> None:
    """A :class:`UserError` listing the choices unless ``name`` is a registered denoiser or names a model file (a
    path, or PATH#CONFIG); reads nothing but the file's existence (and a shipped file's sha256)."""
    if name not in registry and _rgm.models.resolve(name, channels, required=False) is None:
        missing = _rgm.models.missing_file(name)
        if missing:  # meant as a file: the list of names would not help
            raise UserError(f"denoiser {missing}; give the path of a model file (.pt, .pth), or a denoiser name "
                            f"(pnprgm models, pnprgm denoisers).")
        raise UserError(registry.unknown_message(name).rstrip(".") + ", or a path to a model file (.pt, .pth).")
