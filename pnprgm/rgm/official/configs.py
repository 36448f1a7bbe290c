"""The official RGM argument dicts (train.py ``args``) and their validation for the generator.

Presets are the full argument dicts of the published models (values copied from the official training
commands and train.py defaults), so a checkpoint built from one carries the same config the official code had.
:class:`GeneratorArgs` is the typed subset that decides the generator's architecture and its schedule.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping

from pnprgm.config import build_strict
from pnprgm.errors import UserError
from pnprgm.registry import Registry

# Shared by both configs: train.py defaults that the README commands leave unchanged.
_TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 1024,
    "exp": "d",
    "resume": False,
    "dataset": "cifar10",
    "image_size": 32,
    "num_channels": 3,
    "centered": True,
    "num_channels_dae": 128,
    "n_mlp": 4,
    "ch_mult": [1, 2, 2, 2],
    "num_res_blocks": 2,
    "attn_resolutions": [16],
    "dropout": 0.0,
    "resamp_with_conv": True,
    "conditional": True,
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "resblock_type": "biggan",
    "progressive": "none",
    "progressive_input": "residual",
    "progressive_combine": "sum",
    "embedding_type": "positional",
    "fourier_scale": 16.0,
    "not_use_tanh": False,
    "z_emb_dim": 256,
    "t_emb_dim": 256,
    "nz": 100,
    "ngf": 64,
    "batch_size": 256,
    "num_epoch": 900,
    "lr_g": 0.00016,
    "lr_d": 0.0001,
    "beta1": 0.5,
    "beta2": 0.9,
    "schedule": 1800,
    "no_lr_decay": False,
    "r1_gamma": 0.02,
    "lazy_reg": 15,
    "use_ema": True,
    "ema_decay": 0.9999,
    "forward_name": "ddpm",
    "discrete_type": "original",
    "num_timesteps": 4,
    "posterior": False,
    "lmbda": 0.001,
    "beta_min": 0.1,
    "beta_max": 20.0,
    "sf": 0.5,
    "prior_name": "gan",
    "fixed_kernel": False,
    "num_projections": 1000,
    "sigma_list": [1, 2, 4, 8, 16],
    "print_every": 100,
    "save_content_every": 5,
    "save_ckpt_every": 100,
    "save_image_every": 10,
}

CIFAR10: dict[str, Any] = dict(_TRAIN_DEFAULTS)

CELEBAHQ256: dict[str, Any] = {
    **_TRAIN_DEFAULTS,
    "exp": "rgm-kld-d",
    "dataset": "celeba_256",
    "image_size": 256,
    "num_channels_dae": 64,
    "n_mlp": 3,
    "ch_mult": [1, 1, 2, 2, 4, 4],
    "batch_size": 32,
    "num_epoch": 650,
    "lr_g": 0.0002,
    "schedule": 700,
    "r1_gamma": 2.0,
    "lazy_reg": 10,
    "lmbda": 5e-05,
    "save_content_every": 10,
    "save_ckpt_every": 20,
    "save_image_every": 1,
}

CONFIGS: Registry[dict[str, Any]] = Registry("official RGM generator config")
CONFIGS.add("celebahq256", CELEBAHQ256, "CelebA-HQ 256x256 RGM-KLD-D generator (39.7 M parameters, T=4)")
CONFIGS.add("cifar10", CIFAR10, "CIFAR-10 32x32 RGM generator (48.4 M parameters, T=4)")


def known_arguments() -> set[str]:
    """The names of the official train.py arguments pnprgm knows (those a config dict may hold)."""
    return set(_TRAIN_DEFAULTS)


def official_config(name: str) -> dict[str, Any]:
    """A fresh copy of the official argument dict registered as ``name``."""
    return copy.deepcopy(CONFIGS.get(name))


_Resblock = Literal["biggan", "ddpm"]
_Progressive = Literal["none", "output_skip", "residual"]
_ProgressiveInput = Literal["none", "input_skip", "residual"]


@dataclass(frozen=True)
class GeneratorArgs:
    """The official arguments that shape the NCSN++ AdaGN generator and its forward process.

    :param image_size: training resolution; levels are ``image_size / 2^i``, which place the attention blocks.
    :param num_channels_dae: base width ``nf``; level i has ``nf * ch_mult[i]`` channels.
    :param attn_resolutions: resolutions (of the training size) that get self-attention.
    :param num_timesteps: T of the ``ddpm`` forward process; ``beta_min``, ``beta_max`` its VP betas.
    """

    image_size: int
    num_channels: int
    centered: bool
    num_channels_dae: int
    n_mlp: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    dropout: float
    resamp_with_conv: bool
    conditional: bool
    fir: bool
    fir_kernel: tuple[float, ...]
    skip_rescale: bool
    resblock_type: _Resblock
    progressive: _Progressive
    progressive_input: _ProgressiveInput
    progressive_combine: Literal["sum", "cat"]
    embedding_type: Literal["positional", "fourier"]
    fourier_scale: float
    not_use_tanh: bool
    z_emb_dim: int
    nz: int
    num_timesteps: int
    beta_min: float
    beta_max: float
    forward_name: Literal["ddpm"]
    discrete_type: Literal["original"]

    def __post_init__(self) -> None:
        for name in ("image_size", "num_channels", "num_channels_dae", "num_res_blocks", "z_emb_dim", "nz",
                     "num_timesteps"):
            if getattr(self, name) < 1:
                raise UserError(f"official config {name} must be >= 1; got {getattr(self, name)}.")
        if self.n_mlp < 0:
            raise UserError(f"official config n_mlp must be >= 0; got {self.n_mlp}.")
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise UserError("official config ch_mult must be a non-empty list of positive ints; "
                            f"got {list(self.ch_mult)}.")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise UserError(f"official config image_size {self.image_size} must be divisible by "
                            f"2^(len(ch_mult)-1) = {2 ** (len(self.ch_mult) - 1)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"official config dropout must be in [0, 1); got {self.dropout}.")
        if len(self.fir_kernel) < 2 or sum(self.fir_kernel) == 0:
            raise UserError("official config fir_kernel must have >= 2 taps with a non-zero sum; "
                            f"got {list(self.fir_kernel)}.")
        if self.embedding_type == "positional" and self.num_channels_dae < 4:
            raise UserError("official config num_channels_dae must be >= 4 for the positional time embedding.")
        if not self.beta_max > self.beta_min >= 0:
            raise UserError(f"official config needs 0 <= beta_min < beta_max; got {self.beta_min}, {self.beta_max}.")


_ARG_NAMES = tuple(f.name for f in fields(GeneratorArgs))
_LOWERCASED = ("resblock_type", "progressive", "progressive_input", "progressive_combine", "embedding_type",
               "forward_name", "discrete_type")


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The full official argument dict: ``config`` over the train.py defaults (missing keys as train.py would)."""
    if not isinstance(config, Mapping):
        raise UserError(f"an official config must be a dict of train.py arguments; got {type(config).__name__}.")
    resolved = copy.deepcopy(_TRAIN_DEFAULTS)
    resolved.update(copy.deepcopy(dict(config)))
    for name in _LOWERCASED:
        if isinstance(resolved[name], str):
            resolved[name] = resolved[name].lower()
    return resolved


def generator_args(config: Mapping[str, Any]) -> GeneratorArgs:
    """Validated :class:`GeneratorArgs` from an official argument dict (other training arguments are ignored)."""
    resolved = resolve_config(config)
    return build_strict(GeneratorArgs, {name: resolved[name] for name in _ARG_NAMES}, what="official config")
