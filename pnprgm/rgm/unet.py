"""Our RGM generator: a fully convolutional UNet ``G(x, level, z) -> x0_hat`` (images in [-1, 1]).

The latent z drives every group norm through a mapping MLP (adaptive group norm, as RGM/DDGAN); the level
is a time index (sinusoidal embedding, as RGM) or a continuous noise std (embedding of log sigma, plus an
optional constant sigma input channel). A global z can restyle an output but cannot place independent detail at
each pixel, which a posterior sample needs (texture the measurement does not determine); with ``noise_input`` z
also seeds a white-noise image fed as one more input channel (:func:`latent_noise`), so ``G(x, level, z)`` stays a
function of z. Output modes:

- ``tanh``: ``x0_hat = tanh(F(x))`` (the official RGM output);
- ``residual``: EDM preconditioning of the noisy input ``x/a`` with std ``sigma = s/a``:
  ``x0_hat = c_skip x/a + c_out F(c_in x/a)``, which is ``x - sigma F`` for small sigma;
- ``skip``: ``x0_hat = x + F(x)`` (plain residual, for processes whose input is not a noisy image).

This is an independent implementation (the official NCSN++ code is under a non-commercial licence); the
port of the official architecture lives elsewhere and shares the protocol: attributes ``nz``,
``conditioning``, ``schedule``, ``config`` and ``forward(x, level, z)``.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from pnprgm.config import build_strict, to_dict
from pnprgm.errors import UserError
from pnprgm.registry import Registry
from pnprgm.rgm.schedules import DDPMSchedule

#: Data std of images in [-1, 1] used by the ``residual`` preconditioning (EDM's sigma_data).
SIGMA_DATA = 0.5


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of our UNet generator (stored in every checkpoint; rebuilt by :func:`build_generator_from_config`).

    :param arch: architecture name (``unet``; other registered architectures have their own configs).
    :param channels: image channels (1 gray, 3 colour).
    :param nf: base width.
    :param ch_mult: width multiplier per resolution level (the input size must be a multiple of 2^(levels-1)).
    :param num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
    :param attention: self-attention at the lowest resolution.
    :param nz: latent size.
    :param z_emb_dim: width of the z mapping MLP.
    :param n_mlp: hidden layers of the z mapping MLP.
    :param conditioning: ``time`` (integer level, RGM) or ``sigma`` (continuous noise std in [-1, 1] units).
    :param T: number of time levels (``time`` conditioning).
    :param beta_min: VP schedule beta at t=0 (``time``).
    :param beta_max: VP schedule beta at t=1 (``time``).
    :param output: ``tanh``, ``residual`` or ``skip`` (see the module docstring).
    :param sigma_channel: feed the noise std as an extra constant input channel (``sigma`` conditioning).
    :param dropout: dropout rate inside residual blocks.
    :param noise_input: feed a unit white-noise image seeded by z as an extra input channel (:func:`latent_noise`).
    :param noise_input_above: with ``noise_input``, the noise image is fed only to inputs whose noise std is at least
        this (in [0, 1] image units, like ``--noise``); below it the channel is zeros, so there the output is a
        function of x alone. 0: every level. Why: a posterior's spread is wide where the measurement is buried in
        noise and narrow where it is not, and PnP's last, low-noise calls decide its PSNR.
    """

    arch: str = "unet"
    channels: int = 3
    nf: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    attention: bool = False
    nz: int = 64
    z_emb_dim: int = 128
    n_mlp: int = 3
    conditioning: Literal["time", "sigma"] = "time"
    T: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    output: Literal["tanh", "residual", "skip"] = "tanh"
    sigma_channel: bool = False
    dropout: float = 0.0
    noise_input: bool = False
    noise_input_above: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_input_above) and 0 <= self.noise_input_above <= 1):
            raise UserError(f"model.noise_input_above must be a noise std in [0, 1] (0: every level); got "
                            f"{self.noise_input_above}.")
        if self.noise_input_above and not self.noise_input:
            raise UserError("model.noise_input_above applies to the noise input; add model.noise_input=true (or remove "
                            "noise_input_above).")
        if self.channels < 1 or self.nf < 4 or self.nz < 1 or self.T < 1 or not self.ch_mult:
            raise UserError("generator config: channels, nf (>= 4), nz, T and ch_mult must be positive.")
        if any(m < 1 for m in self.ch_mult) or self.num_res_blocks < 1:
            raise UserError("generator config: ch_mult entries and num_res_blocks must be >= 1.")


#: Named generator sizes; ``small`` is the CPU size (see the :data:`SIZES` summaries for measured cost).
SIZES: Registry[dict] = Registry("generator size")
SIZES.add("tiny", dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, nz=8, z_emb_dim=16, n_mlp=1),
            "tests only: 0.05 M parameters")
SIZES.add("small", dict(nf=16, ch_mult=(1, 2, 4, 8, 8), num_res_blocks=1, nz=64, z_emb_dim=128, n_mlp=3),
            "CPU size: 4.9 M parameters, about 0.2 s per 256x256 colour forward on 2 cores")
SIZES.add("base", dict(nf=64, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attention=True, nz=100, z_emb_dim=256,
                         n_mlp=3), "GPU: 21 M parameters, attention at the lowest level")
SIZES.add("large", dict(nf=64, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attention=True, nz=100,
                          z_emb_dim=256, n_mlp=3), "GPU, RGM CelebA-HQ-256 layout (6 levels): 34 M parameters")


def sized_config(name: str, **overrides: Any) -> GeneratorConfig:
    """A :class:`GeneratorConfig` of a named size with field overrides."""
    return build_strict(GeneratorConfig, {**SIZES.get(name), **overrides}, what="model")


# ----------------------------------------------------------------------------------------------- layers


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[sin(v w_j), cos(v w_j)]`` with ``w_j = exp(-j ln(max_period) / (half - 1))`` (sin first, as RGM)."""
    half = dim // 2
    scale = math.log(max_period) / max(half - 1, 1)
    freqs = torch.exp(-scale * torch.arange(half, device=values.device, dtype=torch.float32))
    args = values.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class LevelEmbedding(nn.Module):
    """Embedding of the level: integer time (sinusoidal) or noise std (sinusoidal of ``log sigma`` scaled to
    cover stds from 1e-4 to 100 with distinct codes), followed by Linear, SiLU, Linear."""

    def __init__(self, conditioning: str, dim: int, out_dim: int):
        super().__init__()
        self.conditioning = conditioning
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        if self.conditioning == "time":
            code = level.float()
        else:
            # log sigma in about [-9, 5]; x100 spreads it over the sinusoid's frequency range like integer times.
            code = 100.0 * torch.log(level.float().clamp_min(1e-4))
        return self.mlp(sinusoidal_embedding(code, self.dim))


class PixelNorm(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _groups(channels: int) -> int:
    """Largest divisor of ``channels`` not above ``min(channels // 4, 32)`` (RGM's rule when it divides)."""
    groups = max(1, min(channels // 4, 32))
    while channels % groups:
        groups -= 1
    return groups


class AdaGN(nn.Module):
    """``GroupNorm(x) * (1 + gamma(w)) + beta(w)``: the z code w modulates each group norm."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6, affine=False)
        self.style = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.style.weight)
        nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class ResBlock(nn.Module):
    """AdaGN, SiLU, conv3x3, + level embedding, AdaGN, SiLU, dropout, conv3x3; skip 1x1 when widths differ; /sqrt2."""

    def __init__(self, cin: int, cout: int, emb_dim: int, w_dim: int, dropout: float):
        super().__init__()
        self.norm0 = AdaGN(cin, w_dim)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm1 = AdaGN(cout, w_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x, w)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h, w))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class Attention(nn.Module):
    """Single-head self-attention over all pixels, ``(x + out) / sqrt2``."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.out(out.transpose(1, 2).reshape(b, c, h, w))) / math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------- model


class UNetGenerator(nn.Module):
    """RGM generator ``forward(x, level, z) -> x0_hat`` (x and output in [-1, 1]).

    :param config: architecture (:class:`GeneratorConfig`).
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.cfg = config
        self.nz = config.nz
        self.conditioning = config.conditioning
        self.schedule: Optional[DDPMSchedule] = (
            DDPMSchedule(T=config.T, beta_min=config.beta_min, beta_max=config.beta_max)
            if config.conditioning == "time" else None
        )
        self.config: dict = to_dict(config)
        self.size_multiple = 2 ** (len(config.ch_mult) - 1)
        if self.schedule is not None:
            self.register_buffer("_signal", self.schedule.signal(), persistent=False)
            self.register_buffer("_noise", self.schedule.noise(), persistent=False)

        nf, emb_dim, w_dim = config.nf, 4 * config.nf, config.z_emb_dim
        layers: list[nn.Module] = [PixelNorm(), nn.Linear(config.nz, w_dim), nn.SiLU()]
        for _ in range(config.n_mlp):
            layers += [nn.Linear(w_dim, w_dim), nn.SiLU()]
        self.z_transform = nn.Sequential(*layers)
        self.level_embed = LevelEmbedding(config.conditioning, nf, emb_dim)

        self.sigma_input = config.sigma_channel and config.conditioning == "sigma"
        self.conv_in = nn.Conv2d(config.channels + int(self.sigma_input) + int(config.noise_input), nf, 3, padding=1)
        widths = [nf * m for m in config.ch_mult]

        def block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, w_dim, config.dropout)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [nf]
        ch = nf
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(block(ch, width))
                ch = width
                skips.append(ch)
            self.down.append(blocks)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid0 = block(ch, ch)
        self.mid_attn = Attention(ch) if config.attention else nn.Identity()
        self.mid1 = block(ch, ch)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                blocks.append(block(ch + skips.pop(), width))
                ch = width
            self.up.append(blocks)
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.norm_out = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.conv_out = nn.Conv2d(ch, config.channels, 3, padding=1)
        if config.output != "tanh":
            # Residual outputs start as the identity map, which is already a sensible restoration.
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def scale_and_sigma(self, level: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signal coefficient ``a`` and equivalent noise std ``s / a`` of the input at ``level``, shaped (B,1,1,1)."""
        if self.conditioning == "time":
            a = self._signal.to(x.dtype)[level + 1]
            sigma = self._noise.to(x.dtype)[level + 1] / a
        else:
            sigma = level.to(x.dtype)
            a = torch.ones_like(sigma)
        return a.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor, level: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """:param x: (B, C, H, W) input in [-1, 1] units, H and W multiples of ``size_multiple``.
        :param level: (B,) long time index or (B,) float noise std (in [-1, 1] units).
        :param z: (B, nz) latent.
        """
        level = _as_batch(level, x)
        a, sigma = self.scale_and_sigma(level, x)
        if self.cfg.output == "residual":
            noisy = x / a
            c_in = 1.0 / torch.sqrt(sigma**2 + SIGMA_DATA**2)
            inp = noisy * c_in
        else:
            inp = x
        if self.sigma_input:
            inp = torch.cat([inp, sigma.expand(-1, 1, *x.shape[2:])], dim=1)
        if self.cfg.noise_input:
            noise = latent_noise(z, x.shape[-2:]).to(inp)
            if self.cfg.noise_input_above:  # sigma is in [-1, 1] units, the setting in [0, 1] ones
                noise = noise * (sigma >= 2 * self.cfg.noise_input_above).to(inp)
            inp = torch.cat([inp, noise], dim=1)
        out = self._unet(inp, level, z)
        if self.cfg.output == "tanh":
            return torch.tanh(out)
        if self.cfg.output == "skip":
            return x + out
        c_skip = SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
        c_out = sigma * SIGMA_DATA / torch.sqrt(sigma**2 + SIGMA_DATA**2)
        return c_skip * noisy + c_out * out

    def _unet(self, x: torch.Tensor, level: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"input size {h}x{w} must be a multiple of {self.size_multiple}; pad it first")
        emb = self.level_embed(level)
        wz = self.z_transform(z)
        hs = [self.conv_in(x)]
        out = hs[-1]
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                out = blk(out, emb, wz)
                hs.append(out)
            if i < len(self.downsample):
                out = self.downsample[i](out)
                hs.append(out)
        out = self.mid1(self.mid_attn(self.mid0(out, emb, wz)), emb, wz)
        for i, blocks in enumerate(self.up):
            for blk in blocks:
                out = blk(torch.cat([out, hs.pop()], dim=1), emb, wz)
            if i < len(self.upsample):
                out = self.upsample[i](F.interpolate(out, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(out)))


def latent_noise(z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) unit white noise, each sample's a fixed function of its latent ``z[b]`` (a seed from its bytes).

    Why seeded rather than mapped: a learned map from nz numbers cannot make H x W independent values; the seed
    keeps the generator a function of (x, level, z), so a seed given to the solver reproduces the output.
    """
    maps = []
    for row in z.detach().to("cpu", torch.float32):
        seed = int.from_bytes(hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest(), "little") >> 1
        maps.append(torch.randn(1, *size, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(maps).to(z.device)


def _as_batch(level: Any, x: torch.Tensor) -> torch.Tensor:
    level = torch.as_tensor(level, device=x.device)
    if level.dim() == 0:
        level = level.expand(x.shape[0])
    return level
