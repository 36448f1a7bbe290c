"""A compatible implementation of the official RGM generator: NCSN++ with AdaptiveGroupNorm and a z mapping.

Written from the description in REFERENCE.md section 1 (the official code is under a non-commercial licence).
Parameter names, shapes and their order equal the official ``state_dict``, so its checkpoints load unchanged:
``all_modules.N.*`` is one flat list (time MLP, input conv, down path, middle, up path, output head) and
``z_transform.{1,3,..}`` the latent mapping. ``G(x, t, z)``: x in [-1, 1] (B, C, H, W), integer level t (B,),
latent z (B, nz) -> restored x0 in [-1, 1] (tanh output unless ``not_use_tanh``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pnprgm.errors import UserError
from pnprgm.rgm.official.configs import GeneratorArgs, generator_args, resolve_config
from pnprgm.rgm.schedules import DDPMSchedule

_SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------- initialisation
def _variance_scaling_(weight: torch.Tensor, scale: float = 1.0, fan_in_dim: int = 1,
                       fan_out_dim: int = 0) -> torch.Tensor:
    """Uniform init with variance ``scale / fan_avg`` (the DDPM/NCSN++ default; scale 0 means a tiny 1e-10)."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[fan_in_dim] + weight.shape[fan_out_dim]) * receptive / 2.0
    bound = math.sqrt(3.0 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def _linear(in_features: int, out_features: int, scale: float = 1.0) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    _variance_scaling_(layer.weight, scale)
    nn.init.zeros_(layer.bias)
    return layer


def _conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int | None = None,
          scale: float = 1.0) -> nn.Conv2d:
    layer = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if padding is None else padding)
    _variance_scaling_(layer.weight, scale)
    nn.init.zeros_(layer.bias)
    return layer


def _groups(channels: int) -> int:
    """GroupNorm groups of the official code, ``min(C // 4, 32)``; it must divide C."""
    groups = min(channels // 4, 32)
    if groups < 1 or channels % groups:
        raise UserError(f"official config gives a layer with {channels} channels, which min(C//4, 32) = {groups} "
                        "groups cannot split; choose num_channels_dae and ch_mult so every width is a multiple of 4 "
                        "(of 32 from 128 channels on).")
    return groups


# ----------------------------------------------------------------------------------------------- FIR resampling
def _fir_2d(taps: Sequence[float], gain: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised separable 2-D FIR kernel ``outer(k, k) / sum(outer(k, k)) * gain``."""
    k = torch.as_tensor(taps, dtype=like.dtype, device=like.device)
    k2 = torch.outer(k, k)
    return k2 / k2.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insert by ``up``, pad (before, after) on both axes, convolve each channel, keep every ``down``-th pixel.

    A true convolution (the kernel flipped), as in the StyleGAN2 resampling the official code relies on.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, (0, 1)).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def fir_upsample(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """2x upsampling by zero insertion and the FIR kernel (gain 4 keeps the mean)."""
    p = len(taps) - 2
    return upfirdn2d(x, _fir_2d(taps, 4.0, x), up=2, pad=((p + 1) // 2 + 1, p // 2))


def fir_downsample(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """2x downsampling after blurring with the FIR kernel."""
    p = len(taps) - 2
    return upfirdn2d(x, _fir_2d(taps, 1.0, x), down=2, pad=((p + 1) // 2, p // 2))


def nearest_upsample(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h, 1, w, 1).expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def box_downsample(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


class FIRConv2d(nn.Module):
    """A 3x3 convolution fused with FIR 2x resampling (``up`` xor ``down``); parameters ``weight``, ``bias``."""

    def __init__(self, in_ch: int, out_ch: int, taps: Sequence[float], *, up: bool = False, down: bool = False):
        super().__init__()
        self.taps = tuple(float(v) for v in taps)
        self.up, self.down = up, down
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        _variance_scaling_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            # blur with padding (len(k) - 2) + 2, then a valid stride-2 convolution
            p = len(self.taps)
            x = upfirdn2d(x, _fir_2d(self.taps, 1.0, x), pad=((p + 1) // 2, p // 2))
            x = F.conv2d(x, self.weight, stride=2)
        elif self.up:
            # transposed stride-2 convolution with the flipped kernel, then the FIR blur (gain 4)
            weight = torch.flip(self.weight, (2, 3)).transpose(0, 1)
            x = F.conv_transpose2d(x, weight, stride=2)
            p = len(self.taps) - 4
            x = upfirdn2d(x, _fir_2d(self.taps, 4.0, x), pad=((p + 1) // 2 + 1, p // 2 + 1))
        else:
            x = F.conv2d(x, self.weight, padding=1)
        return x + self.bias.view(1, -1, 1, 1)


class Upsample(nn.Module):
    """2x upsampling, optionally with a 3x3 convolution (official ``layerspp.Upsample``)."""

    official_name = "Upsample"

    def __init__(self, in_ch: int, out_ch: int | None = None, *, with_conv: bool, fir: bool, taps: Sequence[float]):
        super().__init__()
        out_ch = out_ch or in_ch
        self.fir, self.with_conv, self.taps = fir, with_conv, tuple(taps)
        if with_conv and fir:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, taps, up=True)
        elif with_conv:
            self.Conv_0 = _conv(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else fir_upsample(x, self.taps)
        h = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.Conv_0(h) if self.with_conv else h


class Downsample(nn.Module):
    """2x downsampling, optionally with a 3x3 stride-2 convolution (official ``layerspp.Downsample``)."""

    official_name = "Downsample"

    def __init__(self, in_ch: int, out_ch: int | None = None, *, with_conv: bool, fir: bool, taps: Sequence[float]):
        super().__init__()
        out_ch = out_ch or in_ch
        self.fir, self.with_conv, self.taps = fir, with_conv, tuple(taps)
        if with_conv and fir:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, taps, down=True)
        elif with_conv:
            self.Conv_0 = _conv(in_ch, out_ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else fir_downsample(x, self.taps)
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


# ----------------------------------------------------------------------------------------------- building blocks
class PixelNorm(nn.Module):
    """``z / sqrt(mean(z^2) + 1e-8)`` over the feature axis."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class AdaGN(nn.Module):
    """Adaptive group norm: ``gamma(zemb) * GroupNorm(h) + beta(zemb)``, gamma, beta from ``style``."""

    def __init__(self, channels: int, zemb_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6, affine=False)
        self.style = _linear(zemb_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0

    def forward(self, h: torch.Tensor, zemb: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(zemb)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(h) + beta


class NIN(nn.Module):
    """Per-pixel linear map; weight ``W`` stored (in, out) as in the official code."""

    def __init__(self, in_dim: int, out_dim: int, scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(torch.empty(in_dim, out_dim))
        self.b = nn.Parameter(torch.zeros(out_dim))
        _variance_scaling_(self.W, scale, fan_in_dim=0, fan_out_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b.view(1, -1, 1, 1)


class AttnBlock(nn.Module):
    """Self-attention over all pixels: ``x + NIN_3(softmax(q.k / sqrt(C)) v)`` (divided by sqrt 2 with skip_rescale)."""

    official_name = "AttnBlockpp"

    def __init__(self, channels: int, *, skip_rescale: bool):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, scale=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.GroupNorm_0(x)
        q = self.NIN_0(normed).reshape(b, c, h * w)
        k = self.NIN_1(normed).reshape(b, c, h * w)
        v = self.NIN_2(normed).reshape(b, c, h * w)
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * (c ** -0.5), dim=-1)  # (b, query, key)
        out = self.NIN_3(torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w))
        return (x + out) / _SQRT2 if self.skip_rescale else x + out


class ResBlockBigGAN(nn.Module):
    """BigGAN++ residual block with AdaGN; resamples h and the shortcut with FIR (or nearest/box) when up/down."""

    official_name = "ResnetBlockBigGANpp_Adagn"

    def __init__(self, in_ch: int, out_ch: int | None = None, *, temb_dim: int, zemb_dim: int, dropout: float,
                 skip_rescale: bool, fir: bool, taps: Sequence[float], up: bool = False, down: bool = False):
        super().__init__()
        out_ch = out_ch or in_ch
        self.up, self.down, self.fir, self.taps = up, down, fir, tuple(taps)
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = AdaGN(in_ch, zemb_dim)
        self.Conv_0 = _conv(in_ch, out_ch, 3)
        self.Dense_0 = _linear(temb_dim, out_ch)
        self.GroupNorm_1 = AdaGN(out_ch, zemb_dim)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = _conv(out_ch, out_ch, 3, scale=0.0)
        if in_ch != out_ch or up or down:
            self.Conv_2 = _conv(in_ch, out_ch, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return fir_upsample(x, self.taps) if self.fir else nearest_upsample(x)
        if self.down:
            return fir_downsample(x, self.taps) if self.fir else box_downsample(x)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None, zemb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.GroupNorm_0(x, zemb))
        h = self.Conv_0(self._resample(h))
        x = self._resample(x)
        if temb is not None:
            h = h + self.Dense_0(F.silu(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(F.silu(self.GroupNorm_1(h, zemb))))
        if hasattr(self, "Conv_2"):
            x = self.Conv_2(x)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class ResBlockDDPM(nn.Module):
    """DDPM++ residual block with AdaGN; a NIN shortcut when the width changes (resampling is separate)."""

    official_name = "ResnetBlockDDPMpp_Adagn"

    def __init__(self, in_ch: int, out_ch: int | None = None, *, temb_dim: int, zemb_dim: int, dropout: float,
                 skip_rescale: bool, **_unused: Any):
        super().__init__()
        out_ch = out_ch or in_ch
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = AdaGN(in_ch, zemb_dim)
        self.Conv_0 = _conv(in_ch, out_ch, 3)
        self.Dense_0 = _linear(temb_dim, out_ch)
        self.GroupNorm_1 = AdaGN(out_ch, zemb_dim)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = _conv(out_ch, out_ch, 3, scale=0.0)
        if in_ch != out_ch:
            self.NIN_0 = NIN(in_ch, out_ch)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None, zemb: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(F.silu(self.GroupNorm_0(x, zemb)))
        if temb is not None:
            h = h + self.Dense_0(F.silu(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(F.silu(self.GroupNorm_1(h, zemb))))
        if hasattr(self, "NIN_0"):
            x = self.NIN_0(x)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class Combine(nn.Module):
    """Input-skip merge: 1x1 conv of the image pyramid, then summed with or concatenated to h."""

    official_name = "Combine"

    def __init__(self, dim1: int, dim2: int, method: str):
        super().__init__()
        self.method = method
        self.Conv_0 = _conv(dim1, dim2, 1)

    def forward(self, pyramid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        p = self.Conv_0(pyramid)
        return torch.cat([p, h], dim=1) if self.method == "cat" else p + h


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[sin(2 pi W s), cos(2 pi W s)]``; ``W`` is fixed (saved, not trained)."""

    official_name = "GaussianFourierProjection"

    def __init__(self, size: int, scale: float):
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        proj = s[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def positional_embedding(t: torch.Tensor, dim: int, max_positions: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(t w_j), cos(t w_j)]``, ``w_j = exp(-j ln(max_positions) / (dim/2 - 1))``."""
    half = dim // 2
    step = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -step)
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


_RESBLOCKS = {"biggan": ResBlockBigGAN, "ddpm": ResBlockDDPM}


# ----------------------------------------------------------------------------------------------- the generator
class _Cursor:
    """Walks ``all_modules`` in construction order (the official layout is one flat list)."""

    def __init__(self, modules: nn.ModuleList):
        self._modules = modules
        self.index = 0

    def __call__(self) -> nn.Module:
        module = self._modules[self.index]
        self.index += 1
        return module


class NCSNppGenerator(nn.Module):
    """The official RGM generator ``G(x_{t+1}, t, z) -> x0`` (also the project's RGM-generator protocol).

    :param config: the official argument dict (missing keys take train.py defaults).
    """

    conditioning = "time"

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        args = generator_args(config)
        self.args: GeneratorArgs = args
        self.config: dict[str, Any] = resolve_config(config)
        self.nz = args.nz
        self.schedule = DDPMSchedule(T=args.num_timesteps, beta_min=args.beta_min, beta_max=args.beta_max)

        nf, ch_mult, taps = args.num_channels_dae, args.ch_mult, args.fir_kernel
        self.resolutions = [args.image_size // 2 ** i for i in range(len(ch_mult))]
        # Attention placement follows the training resolution of each level, so other input sizes keep the layout.
        self.attn_levels = {i for i, r in enumerate(self.resolutions) if r in args.attn_resolutions}
        block_kind = _RESBLOCKS[args.resblock_type]

        def resblock(in_ch: int, out_ch: int | None = None, **kw: bool) -> nn.Module:
            return block_kind(in_ch, out_ch, temb_dim=4 * nf, zemb_dim=args.z_emb_dim, dropout=args.dropout,
                              skip_rescale=args.skip_rescale, fir=args.fir, taps=taps, **kw)

        def attn(channels: int) -> AttnBlock:
            return AttnBlock(channels, skip_rescale=args.skip_rescale)

        def resample(kind: type, in_ch: int, out_ch: int | None = None, *, with_conv: bool) -> nn.Module:
            return kind(in_ch, out_ch, with_conv=with_conv, fir=args.fir, taps=taps)

        modules: list[nn.Module] = []
        if args.embedding_type == "fourier":
            modules.append(FourierEmbedding(nf, args.fourier_scale))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if args.conditional:
            modules += [_linear(embed_dim, 4 * nf), _linear(4 * nf, 4 * nf)]

        channels = args.num_channels
        modules.append(_conv(channels, nf, 3))
        skip_channels = [nf]
        in_ch, pyramid_ch = nf, channels
        last = len(ch_mult) - 1
        for level, mult in enumerate(ch_mult):
            for _ in range(args.num_res_blocks):
                modules.append(resblock(in_ch, nf * mult))
                in_ch = nf * mult
                if level in self.attn_levels:
                    modules.append(attn(in_ch))
                skip_channels.append(in_ch)
            if level == last:
                continue
            if args.resblock_type == "ddpm":
                modules.append(resample(Downsample, in_ch, with_conv=args.resamp_with_conv))
            else:
                modules.append(resblock(in_ch, down=True))
            if args.progressive_input == "input_skip":
                modules.append(Combine(pyramid_ch, in_ch, args.progressive_combine))
                in_ch = 2 * in_ch if args.progressive_combine == "cat" else in_ch
            elif args.progressive_input == "residual":
                modules.append(resample(Downsample, pyramid_ch, in_ch, with_conv=True))
                pyramid_ch = in_ch
            skip_channels.append(in_ch)

        in_ch = skip_channels[-1]
        modules += [resblock(in_ch), attn(in_ch), resblock(in_ch)]

        out_pyramid_ch = 0
        for level in reversed(range(len(ch_mult))):
            out_ch = nf * ch_mult[level]
            for _ in range(args.num_res_blocks + 1):
                modules.append(resblock(in_ch + skip_channels.pop(), out_ch))
                in_ch = out_ch
            if level in self.attn_levels:
                modules.append(attn(in_ch))
            if args.progressive == "output_skip":
                modules += [nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6), _conv(in_ch, channels, 3, scale=0.0)]
                out_pyramid_ch = channels
            elif args.progressive == "residual" and level == last:
                modules += [nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6), _conv(in_ch, in_ch, 3)]
                out_pyramid_ch = in_ch
            elif args.progressive == "residual":
                modules.append(resample(Upsample, out_pyramid_ch, in_ch, with_conv=True))
                out_pyramid_ch = in_ch
            if level != 0:
                if args.resblock_type == "ddpm":
                    modules.append(resample(Upsample, in_ch, with_conv=args.resamp_with_conv))
                else:
                    modules.append(resblock(in_ch, up=True))
        assert not skip_channels

        if args.progressive != "output_skip":
            modules += [nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6), _conv(in_ch, channels, 3, scale=0.0)]
        self.all_modules = nn.ModuleList(modules)

        mapping: list[nn.Module] = [PixelNorm(), _linear(args.nz, args.z_emb_dim), nn.SiLU()]
        for _ in range(args.n_mlp):
            mapping += [_linear(args.z_emb_dim, args.z_emb_dim), nn.SiLU()]
        self.z_transform = nn.Sequential(*mapping)

    # -------------------------------------------------------------------------------------------------- forward
    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor | int,
                      z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.args.num_channels:
            raise UserError(f"the official generator takes (B, {self.args.num_channels}, H, W) images; "
                            f"got shape {tuple(x.shape)}.")
        factor = 2 ** (len(self.args.ch_mult) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise UserError(f"image size {x.shape[2]}x{x.shape[3]} is not a multiple of {factor}; pad or crop it.")
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if z.shape != (x.shape[0], self.nz):
            raise UserError(f"latent z must have shape ({x.shape[0]}, {self.nz}); got {tuple(z.shape)}.")
        return t, z.to(x)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int, z: torch.Tensor) -> torch.Tensor:
        """``x0 = G(x, t, z)``: x in [-1, 1] (B, C, H, W), t the (B,) integer level, z (B, nz) latent."""
        args = self.args
        t, z = self._check_inputs(x, t, z)
        take = _Cursor(self.all_modules)
        zemb = self.z_transform(z)

        if args.embedding_type == "fourier":
            temb = take()(torch.log(t.to(x.dtype)))
        else:
            temb = positional_embedding(t, args.num_channels_dae).to(x.dtype)
        if args.conditional:
            temb = take()(temb)
            temb = take()(F.silu(temb))
        else:
            temb = None

        if not args.centered:
            x = 2 * x - 1.0
        pyramid = x
        hs = [take()(x)]
        last = len(args.ch_mult) - 1
        for level in range(len(args.ch_mult)):
            for _ in range(args.num_res_blocks):
                h = take()(hs[-1], temb, zemb)
                if level in self.attn_levels:
                    h = take()(h)
                hs.append(h)
            if level == last:
                continue
            down = take()
            h = down(hs[-1]) if args.resblock_type == "ddpm" else down(hs[-1], temb, zemb)
            if args.progressive_input == "input_skip":
                pyramid = self._downsample_pyramid(pyramid)
                h = take()(pyramid, h)
            elif args.progressive_input == "residual":
                pyramid = take()(pyramid)
                pyramid = (pyramid + h) / _SQRT2 if args.skip_rescale else pyramid + h
                h = pyramid
            hs.append(h)

        h = take()(hs[-1], temb, zemb)
        h = take()(h)
        h = take()(h, temb, zemb)

        out_pyramid = None
        for level in reversed(range(len(args.ch_mult))):
            for _ in range(args.num_res_blocks + 1):
                h = take()(torch.cat([h, hs.pop()], dim=1), temb, zemb)
            if level in self.attn_levels:
                h = take()(h)
            if args.progressive == "output_skip":
                norm, conv = take(), take()
                branch = conv(F.silu(norm(h)))
                out_pyramid = branch if out_pyramid is None else self._upsample_pyramid(out_pyramid) + branch
            elif args.progressive == "residual" and level == last:
                norm, conv = take(), take()
                out_pyramid = conv(F.silu(norm(h)))
            elif args.progressive == "residual":
                out_pyramid = take()(out_pyramid)
                out_pyramid = (out_pyramid + h) / _SQRT2 if args.skip_rescale else out_pyramid + h
                h = out_pyramid
            if level != 0:
                up = take()
                h = up(h) if args.resblock_type == "ddpm" else up(h, temb, zemb)
        assert not hs

        if args.progressive == "output_skip":
            h = out_pyramid
        else:
            norm, conv = take(), take()
            h = conv(F.silu(norm(h)))
        assert take.index == len(self.all_modules)
        return h if args.not_use_tanh else torch.tanh(h)

    def _downsample_pyramid(self, x: torch.Tensor) -> torch.Tensor:
        if self.args.fir:
            return fir_downsample(x, self.args.fir_kernel)
        return F.avg_pool2d(x, 2, stride=2)

    def _upsample_pyramid(self, x: torch.Tensor) -> torch.Tensor:
        if self.args.fir:
            return fir_upsample(x, self.args.fir_kernel)
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def extra_repr(self) -> str:
        a = self.args
        return (f"nf={a.num_channels_dae}, ch_mult={list(a.ch_mult)}, image_size={a.image_size}, nz={a.nz}, "
                f"T={a.num_timesteps}")


def build_generator(config: Mapping[str, Any]) -> NCSNppGenerator:
    """The official RGM generator for an official argument dict (one of the configs of :mod:`pnprgm.rgm.official.configs`)."""
    return NCSNppGenerator(config)
