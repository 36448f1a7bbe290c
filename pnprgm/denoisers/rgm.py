"""Any RGM generator as a deepinv denoiser; registers the shipped models as denoisers (``default``: the default,
colour or gray picked from the input; each family; each shipped denoiser by name; the old names as aliases).

The generator protocol: an ``nn.Module`` with ``nz``, ``conditioning`` (``time`` | ``sigma``), ``schedule``
(a :class:`pnprgm.rgm.schedules.DDPMSchedule` for ``time``), ``config`` and ``forward(x, level, z)`` with images in
[-1, 1]. The wrapper maps [0, 1] <-> [-1, 1] (noise std doubles), pads to the size multiple the generator
needs (reflect) and crops back, and draws z from its own seeded ``torch.Generator``.

Time-conditioned generators see inputs ``x_{j} = a_j x0 + s_j eps`` at label ``j - 1``. A noisy image
``x0 + sigma eps`` is mapped to the smallest level j whose noise-to-signal ratio ``s_j / a_j`` is at least
sigma, scaled by ``a_j`` and topped up with fresh noise of std ``sqrt(s_j^2 - (a_j sigma)^2)`` so that it
follows the training distribution exactly (``level_mode="match"``); ``"nearest"`` picks the closest level
without adding noise. Above the last level the input is only scaled.
"""
from __future__ import annotations

from functools import partial
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnprgm.denoisers.base import registry
from pnprgm.denoisers.channels import ChannelAdapter, adapt_channels
from pnprgm.errors import UserError
from pnprgm.rgm import models


class RGMDenoiser(Denoiser):
    """``D(x, sigma)`` from an RGM generator: x and output in [0, 1], sigma in [0, 1] units.

    :param generator: an RGM generator (see the module docstring).
    :param z: ``fixed`` (same latent, and same top-up noise, at every call: deterministic) or ``fresh``
        (a new latent per call from a generator seeded once).
    :param seed: seed of the latent (and top-up noise).
    :param level_mode: ``match`` or ``nearest`` (time-conditioned generators, see the module docstring).
    :param device: torch device (the generator is moved there).
    """

    def __init__(self, generator: nn.Module, *, z: Literal["fixed", "fresh"] = "fixed", seed: int = 0,
                 level_mode: Literal["match", "nearest"] = "match", device: str | torch.device = "cpu"):
        super().__init__(device="cpu")
        trained_for = (getattr(generator, "process", None) or {}).get("name", "ddpm")
        if trained_for in ("sr", "operator"):
            use = ("it restores measurements of its own operator in one step: pnprgm restore --model MODEL"
                   if trained_for == "operator" else
                   "it super-resolves through its own levels: pnprgm sample MODEL --input LOW --upscale 4")
            raise UserError(f"this RGM model was trained for the {trained_for} process, not for denoising ({use}); "
                            f"a PnP solver needs a denoiser (a ddpm or denoise model).")
        if z not in ("fixed", "fresh"):
            raise UserError(f"z must be 'fixed' or 'fresh'; got {z!r}.")
        if level_mode not in ("match", "nearest"):
            raise UserError(f"level_mode must be 'match' or 'nearest'; got {level_mode!r}.")
        self.generator = generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.z_mode, self.seed, self.level_mode = z, int(seed), level_mode
        self.nz = int(generator.nz)
        self.conditioning = generator.conditioning
        self.schedule = getattr(generator, "schedule", None)
        if self.conditioning == "time" and self.schedule is None:
            raise UserError("a time-conditioned RGM generator needs a schedule; rebuild it from its model file.")
        self.channels = int(generator.config.get("channels", generator.config.get("num_channels", 3)))
        self.multiple = size_multiple(generator)
        self._rngs: dict[str, torch.Generator] = {}
        self.to(device)

    # randomness ------------------------------------------------------------------------------------------------
    def _rng(self, device: torch.device) -> torch.Generator:
        """Fixed mode: a generator re-seeded at every call; fresh mode: one persistent generator per device."""
        key = str(device)
        if self.z_mode == "fixed" or key not in self._rngs:
            self._rngs[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._rngs[key]

    def reseed(self, seed: int) -> None:
        """Restart the random streams from ``seed``."""
        self.seed = int(seed)
        self._rngs.clear()

    def draw_z(self, batch: int, device: torch.device, rng: Optional[torch.Generator] = None) -> torch.Tensor:
        rng = rng if rng is not None else self._rng(device)
        return torch.randn(batch, self.nz, device=device, generator=rng)

    # level mapping ---------------------------------------------------------------------------------------------
    def level_for_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Level j in 1..T (the generator label is j - 1) of a noise std in [-1, 1] units, per sample."""
        ratio = (self.schedule.noise() / self.schedule.signal()).to(sigma)[1:]  # levels 1..T
        if self.level_mode == "nearest":
            return (ratio.log()[None] - sigma.clamp_min(1e-8).log()[:, None]).abs().argmin(1) + 1
        above = ratio[None] >= sigma[:, None] * (1 - 1e-6)
        first = torch.where(above.any(1), above.float().argmax(1), torch.full_like(sigma, len(ratio) - 1).long())
        return first + 1

    # deepinv interface -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        """Denoise ``x`` (B, C, H, W) in [0, 1] with noise std ``sigma`` (float or (B,), [0, 1] units)."""
        sigma = self._handle_sigma(sigma, batch_size=x.shape[0], reference_tensor=x).view(-1)
        rng = self._rng(x.device)
        xm, sigma_m = 2 * x - 1, 2 * sigma
        if self.conditioning == "time":
            j = self.level_for_sigma(sigma_m)
            a = self.schedule.signal().to(x)[j].view(-1, 1, 1, 1)
            s = self.schedule.noise().to(x)[j].view(-1, 1, 1, 1)
            inp = a * xm
            if self.level_mode == "match":
                top_up = torch.sqrt((s**2 - (a * sigma_m.view(-1, 1, 1, 1)) ** 2).clamp_min(0))
                inp = inp + top_up * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=rng)
            level = j - 1
        else:
            inp, level = xm, sigma_m
        z = self.draw_z(x.shape[0], x.device, rng)
        return self._run(inp, level, z)

    def generate(self, x01: torch.Tensor, level, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(G(2 x01 - 1, level, z) + 1) / 2`` clamped to [0, 1]; the input is already at the generator's level.

        :param x01: (B, C, H, W) input mapped to [0, 1] (``(x_model + 1) / 2``).
        :param level: int / (B,) long label (time) or float / (B,) noise std in [-1, 1] units (sigma).
        :param z: (B, nz) latent; None draws one (fixed or fresh, as configured).
        """
        level = self._level_tensor(level, x01)
        if z is None:
            z = self.draw_z(x01.shape[0], x01.device)
        return self._run(2 * x01 - 1, level, z)

    @property
    def stochastic_restore(self):
        """RGM's relaxed restoration step for time-conditioned generators (None otherwise, so solvers fall back):
        ``x_j = a_j (2x - 1) + noise_scale s_j eps``, ``G(x_j, j - 1, fresh z)``, back to [0, 1]."""
        if self.conditioning != "time":
            return None
        return self._stochastic_restore

    def _stochastic_restore(self, x: torch.Tensor, level: int, *, noise_scale: float = 0.99,
                            generator: Optional[torch.Generator] = None) -> torch.Tensor:
        level = min(max(int(level), 1), self.schedule.T)
        rng = generator if generator is not None else self._rng(x.device)
        a, s = float(self.schedule.signal()[level]), float(self.schedule.noise()[level])
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=rng)
        xj = a * (2 * x - 1) + noise_scale * s * noise
        z = torch.randn(x.shape[0], self.nz, device=x.device, generator=rng)
        return self._run(xj, torch.full((x.shape[0],), level - 1, dtype=torch.long, device=x.device), z)

    # plumbing ------------------------------------------------------------------------------------------------
    def _level_tensor(self, level, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.long if self.conditioning == "time" else x.dtype
        level = torch.as_tensor(level, device=x.device, dtype=dtype).view(-1)
        return level.expand(x.shape[0]) if level.numel() == 1 else level

    def _run(self, xm: torch.Tensor, level: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Adapt channels (:func:`~pnprgm.denoisers.channels.adapt_channels`), then :meth:`_run_matched`."""
        return adapt_channels(self._run_matched, xm, self.channels, level, z)

    def _run_matched(self, xm: torch.Tensor, level: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return run_padded(self.generator, xm, level, z, self.multiple)

    def extra_repr(self) -> str:
        return f"conditioning={self.conditioning}, z={self.z_mode}, seed={self.seed}, multiple={self.multiple}"


def size_multiple(generator: nn.Module) -> int:
    """The multiple of the image sides a generator needs (its UNet's downsampling)."""
    return int(getattr(generator, "size_multiple", 0) or 2 ** (len(generator.config.get("ch_mult", [1])) - 1))


def run_padded(generator: nn.Module, xm: torch.Tensor, level: torch.Tensor, z: torch.Tensor, multiple: int) -> torch.Tensor:
    """``(G(xm, level, z) + 1) / 2`` clamped to [0, 1], ``xm`` in [-1, 1] padded (reflect) to ``multiple`` for G and
    cropped back."""
    h, w = xm.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        xm = F.pad(xm, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
    with torch.no_grad():
        out = generator(xm, level, z)
    out = out[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
    return ((out + 1) / 2).clamp(0, 1)


def load_denoiser(source: str, *, channels: int = 3, device: str | torch.device = "cpu", seed: int = 0) -> torch.nn.Module:
    """A deepinv Denoiser from what :func:`pnprgm.rgm.models.resolve` reads: a shipped model, family or
    ``default`` (the member for ``channels``), our model file, or ``PATH#celebahq256`` (an official checkpoint)."""
    found = models.resolve(source, channels)
    generator = models.load_generator_file(found.path, device=device, official_config=found.official_config)
    return RGMDenoiser(generator, seed=seed).to(device)


def _channel_picked(pick):
    """A denoiser factory loading ``pick(channels)``, adapted when its channel count differs from the input's."""

    def factory(*, channels: int, device: torch.device, seed: int):
        entry = pick(channels)
        denoiser = load_denoiser(entry.name, device=device, seed=seed)
        return denoiser if entry.channels == channels else ChannelAdapter(denoiser, entry.channels)

    return factory


def _shipped(name: str):
    return lambda *, channels, device, seed: load_denoiser(name, device=device, seed=seed)


registry.add(models.DEFAULT_DENOISER, _channel_picked(partial(models.shipped_entry, models.DEFAULT_DENOISER)),
             "the shipped default denoiser, colour or gray picked from the input (pnprgm models: "
             "today DRUNet, trained without an RGM prior)")
for _family, _members in models.families().items():
    registry.add(_family, _channel_picked(partial(models.shipped_entry, _family)),
                 f"shipped denoisers {', '.join(m.name for m in _members.values())} "
                 f"(colour or gray picked from the input)")
for _entry in models.registry.entries():
    if _entry.obj.role == "denoiser":
        registry.add(_entry.name, _shipped(_entry.name), _entry.summary)
for _old, _new in models.RENAMED.items():
    if _new in registry:
        registry.alias(_old, _new, models.why_renamed(_new))
