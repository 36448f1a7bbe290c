"""RGM's learned priors and the discriminator they use.

- ``kld``: ``g = log(1 - D) - log D`` = minus the logit; the discriminator is trained with softplus GAN losses
  and an R1 penalty ``r1_gamma/2 ||grad_x D(x_real)||^2`` every ``lazy_reg`` steps.
- ``mmd``: ``sqrt(relu(MMD^2))`` (biased estimate) with a sum of RBF kernels (widths {1,2,4,8,16}) on
  discriminator features (the discriminator is still trained as for ``kld``) or on raw pixels (no discriminator).
- ``dswd``: distributional sliced Wasserstein distance on discriminator features; a projection net is trained
  for ``dswd_iters`` steps per generator step to find informative, diverse directions.

Discriminator (our design, the official one is not reused): by default RGM's official unconditional
``D(x_t, level)``; with ``d_cond`` it also takes a second image and judges the pair (a posterior match): the
generator's degraded input (``d_cond_input=measurement``) or the measurement residual the sample leaves in noise
units, ``estimate(y - A x) / sigma`` (``residual``). For a real pair that residual is ``estimate(noise) / sigma``
(for denoising exactly the white unit noise of the measurement), so the pair is real only if the sample explains
the measurement as the noise model says (the posterior-sampling conditional GAN of Ohayon et al. 2021 judges pairs
for the same reason). It learns far faster: on the realistic pairs of the tests (clean photo crops against an
MSE-like denoiser's outputs at noise 10-25/255, default lr_d and R1) its mean loss over steps 0-25, 25-50, 50-75 is
1.20, 0.70, 0.26, where the unconditional D is at 1.35, 1.27, 1.16.
Input: the sample, a high-pass copy of it ``d_highpass * (x - blur_121(x))`` (see below), and the second image
when conditional. Body: conv3x3, then one residual down block per ``d_ch_mult`` entry (LeakyReLU 0.2, conv3x3,
+ level embedding, LeakyReLU, conv3x3, 2x2 average pooling; 1x1 pooled skip; /sqrt2); features: the last map
average-pooled to 4x4 and flattened (any crop size works); logit: a linear map of the features plus the
projection of the level embedding onto the channel means.

Why the high-pass copy: a restoration differs from a clean crop mostly in fine texture whose amplitude is a few
percent of the image's. Without it the discriminator stayed at chance on realistic pairs (clean photo crops
against an MSE-like denoiser's outputs at noise 10-25/255, fresh pairs each step: summed softplus loss 1.397
after 300 steps at lr 1e-4, 1.394 after 200 at lr 1e-3; R1 on or off made no difference): its piecewise-linear
layers pass the small detail almost linearly and the pooling averages it away beside the much larger image
content. The 3x3 binomial high-pass, amplified (``d_highpass``), gives the first layer the detail at the scale of
the content: after 200 steps at lr 1e-4 the loss is 1.22 with gain 4, 1.03 with 8, 0.52 with 16 (the default).
Against a strong denoiser's outputs (the shipped DRUNet, 35 dB on these crops) the task is much harder: 1.32
after 300 steps at lr 1e-4 (without the copy 1.40), so a run with the prior needs thousands of D steps.
``d_highpass=0`` is the earlier architecture (checkpoints without the field resume with it). The R1 penalty acts
on the gradient through the copy too, which grows with the gain: keep ``r1_gamma`` modest (RGM's 0.02).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pnprgm.registry import Registry
from pnprgm.training.config import TrainConfig
from pnprgm.rgm.unet import LevelEmbedding


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.leaky_relu(x, 0.2)) + self.emb(emb)[:, :, None, None]
        h = F.avg_pool2d(self.conv1(F.leaky_relu(h, 0.2)), 2, ceil_mode=True)
        skip = F.avg_pool2d(self.skip(x), 2, ceil_mode=True)
        return (h + skip) / math.sqrt(2.0)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """``x - blur(x)`` with the separable binomial kernel [1, 2, 1]/4 (reflect padding): the finest scale of ``x``."""
    kernel = torch.tensor([0.25, 0.5, 0.25], device=x.device, dtype=x.dtype)
    c = x.shape[1]
    blurred = F.pad(x, (1, 1, 1, 1), mode="reflect") if min(x.shape[-2:]) > 1 else F.pad(x, (1, 1, 1, 1), mode="replicate")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, 3).expand(c, 1, 1, 3), groups=c)
    blurred = F.conv2d(blurred, kernel.view(1, 1, 3, 1).expand(c, 1, 3, 1), groups=c)
    return x - blurred


class Discriminator(nn.Module):
    """``D(x, level, cond) -> (logit (B,), features (B, 16 C))`` (see the module docstring).

    :param channels: image channels.
    :param conditioning: ``time`` or ``sigma`` (the generator's).
    :param nf: base width.
    :param ch_mult: width multipliers, one down block each.
    :param cond: take the degraded input as a second image (False: RGM's official unconditional D).
    :param highpass: gain of the high-pass input copy; 0 leaves it out (the earlier architecture).
    """

    def __init__(self, channels: int, conditioning: str, nf: int = 32, ch_mult: tuple[int, ...] = (1, 2, 4, 4),
                 cond: bool = False, highpass: float = 16.0):
        super().__init__()
        self.cond = cond
        self.highpass = float(highpass)
        emb_dim = 4 * nf
        self.embed = LevelEmbedding(conditioning, nf, emb_dim)
        inputs = channels * (1 + int(cond) + int(self.highpass != 0))
        self.conv_in = nn.Conv2d(inputs, nf, 3, padding=1)
        blocks, ch = [], nf
        for mult in ch_mult:
            blocks.append(DownBlock(ch, nf * mult, emb_dim))
            ch = nf * mult
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(ch, ch, 3, padding=1)
        self.feature_dim = ch * 16
        # A vector rather than Linear(F, 1): its gradient is contiguous, which DDP's buckets expect.
        self.weight = nn.Parameter(torch.randn(self.feature_dim) / math.sqrt(self.feature_dim))
        self.bias = nn.Parameter(torch.zeros(()))
        self.project = nn.Linear(emb_dim, ch, bias=False)
        self._init_variance_preserving()

    def _init_variance_preserving(self) -> None:
        # PyTorch's default conv init (kaiming_uniform, a=sqrt(5)) shrinks the signal about threefold in variance per
        # layer: after ten convolutions the logit no longer depends on the image (real and fake logits agreed to
        # 1e-5 at init) and D stayed at chance for whole runs, so the prior never acted. He init for LeakyReLU(0.2)
        # keeps each layer's variance, as the DDGAN/RGM discriminators' variance-scaling init does.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, level: torch.Tensor, cond: Optional[torch.Tensor] = None):
        emb = F.silu(self.embed(level))
        parts = [x]
        if self.cond:
            parts.append(cond)
        if self.highpass:
            parts.append(self.highpass * high_pass(x))
        h = self.conv_in(torch.cat(parts, dim=1) if len(parts) > 1 else x)
        for block in self.blocks:
            h = block(h, emb)
        h = F.leaky_relu(self.conv_out(F.leaky_relu(h, 0.2)), 0.2)
        features = F.adaptive_avg_pool2d(h, 4).flatten(1)
        logit = features @ self.weight + self.bias + (self.project(emb) * h.mean(dim=(2, 3))).sum(dim=1)
        return logit, features


def build_discriminator(config: TrainConfig, channels: int, conditioning: str) -> Discriminator:
    return Discriminator(channels, conditioning, nf=config.d_nf, ch_mult=tuple(config.d_ch_mult), cond=config.d_cond,
                         highpass=config.d_highpass)


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, level: torch.Tensor,
                       cond_real: Optional[torch.Tensor], cond_fake: Optional[torch.Tensor], r1_gamma: float,
                       apply_r1: bool) -> dict[str, torch.Tensor]:
    """Softplus GAN losses ``softplus(-D(real)) + softplus(D(fake))`` (batch means) plus the R1 penalty.

    ``cond_real``/``cond_fake``: the conditional D's second image beside each (the same measurement for both, or each
    sample's own residual); None for the unconditional D. One forward on the concatenated batch so a DDP-wrapped D
    sees one forward per backward.
    """
    real = real.detach().requires_grad_(apply_r1)
    both = torch.cat([real, fake.detach()])
    if cond_real is not None:
        # R1 covers everything D sees of the real sample: a residual is a function of it (gain 1/sigma), and the
        # generator's gradient flows mostly through that path
        cond_real = cond_real.detach().requires_grad_(apply_r1)
    cond2 = torch.cat([cond_real, cond_fake.detach()]) if cond_real is not None else None
    logits, _ = D(both, torch.cat([level, level]), cond2)
    real_logit, fake_logit = logits.chunk(2)
    loss_real = F.softplus(-real_logit).mean()
    loss_fake = F.softplus(fake_logit).mean()
    total = loss_real + loss_fake
    r1 = torch.zeros((), device=real.device)
    if apply_r1:
        inputs = [real] if cond_real is None else [real, cond_real]
        grads = torch.autograd.grad(real_logit.sum(), inputs, create_graph=True)
        r1 = r1_gamma / 2 * sum(g.flatten(1).pow(2).sum(1) for g in grads).mean()
        total = total + r1
    return {"d_loss": total, "d_real": loss_real.detach(), "d_fake": loss_fake.detach(), "r1": r1.detach()}


# ------------------------------------------------------------------------------------------------ priors


class Prior(nn.Module):
    """A prior term ``g(x0_hat)`` of the generator loss; its own trainable parts (DSWD) are submodules.

    :param config: training config (prior parameters).
    :param feature_dim: size of the discriminator's features.
    """

    name = ""
    same_level = False  # one level for the whole batch in the generator step

    def __init__(self, config: TrainConfig, feature_dim: int):
        super().__init__()
        self.cfg = config

    @property
    def uses_discriminator(self) -> bool:
        return True

    def generator_loss(self, D: Optional[nn.Module], real: torch.Tensor, fake: torch.Tensor, level: torch.Tensor,
                       cond_real: Optional[torch.Tensor], cond_fake: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-sample prior loss (B,) (a batch statistic is broadcast); ``cond_*`` as in :func:`discriminator_loss`."""
        raise NotImplementedError


PRIORS: Registry[type[Prior]] = Registry("prior")


@PRIORS.register("kld", "KL divergence through a discriminator: g = log(1-D) - log D (minus the logit)")
class KLDPrior(Prior):
    name = "kld"

    def generator_loss(self, D, real, fake, level, cond_real, cond_fake):
        logit, _ = D(fake, level, cond_fake)
        return F.softplus(-logit) - F.softplus(logit)


@PRIORS.register("mmd", "MMD with RBF kernels (widths 1..16) on discriminator features or pixels")
class MMDPrior(Prior):
    name = "mmd"

    @property
    def uses_discriminator(self) -> bool:
        return self.cfg.mmd_features == "discriminator"

    def generator_loss(self, D, real, fake, level, cond_real, cond_fake):
        if self.uses_discriminator:
            with torch.no_grad():
                feat_real = D(real, level, cond_real)[1]
            feat_fake = D(fake, level, cond_fake)[1]
        else:
            feat_real, feat_fake = real.flatten(1), fake.flatten(1)
        loss = torch.sqrt(F.relu(mmd2(feat_real, feat_fake, self.cfg.mmd_sigmas)) + 1e-12)
        return loss.expand(fake.shape[0])


def mmd2(x: torch.Tensor, y: torch.Tensor, sigmas: tuple[float, ...]) -> torch.Tensor:
    """Biased ``MMD^2 = mean K(x,x') + mean K(y,y') - 2 mean K(x,y)`` with ``K = sum_s exp(-|a-b|^2 / (2 s^2))``."""
    z = torch.cat([x, y]).float()
    sq = z.pow(2).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * z @ z.t()).clamp_min(0)
    kernel = sum(torch.exp(-dist / (2 * s**2)) for s in sigmas)
    m = x.shape[0]
    return kernel[:m, :m].mean() + kernel[m:, m:].mean() - 2 * kernel[:m, m:].mean()


class ProjectionNet(nn.Module):
    """DSWD's map of random directions to unit directions: ``f(v) = Lv / ||Lv||``."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out = self.linear(v)
        return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)


@PRIORS.register("dswd", "distributional sliced Wasserstein distance on discriminator features")
class DSWDPrior(Prior):
    name = "dswd"
    same_level = True

    def __init__(self, config: TrainConfig, feature_dim: int):
        super().__init__(config, feature_dim)
        self.projector = ProjectionNet(feature_dim)
        self.optimizer: Optional[torch.optim.Optimizer] = None  # set by the loop (checkpointed with it)
        self.grad_sync = None  # set by the loop under DDP: averages the projector's gradients over ranks

    def generator_loss(self, D, real, fake, level, cond_real, cond_fake):
        with torch.no_grad():
            feat_real = D(real, level, cond_real)[1]
        feat_fake = D(fake, level, cond_fake)[1]
        loss = dswd(feat_real, feat_fake, self.projector, self.optimizer, self.cfg.dswd_projections,
                    self.cfg.dswd_iters, self.cfg.dswd_lam, grad_sync=self.grad_sync)
        return loss.expand(fake.shape[0])


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor, p: int = 2) -> torch.Tensor:
    """``(mean_dirs (sum_i |sort(x.d)_i - sort(y.d)_i|^p))^(1/p)`` (the DSWD paper's normalisation)."""
    px = torch.sort(x @ directions.t(), dim=0)[0]
    py = torch.sort(y @ directions.t(), dim=0)[0]
    per_dir = (px - py).abs().pow(p).sum(0)
    return per_dir.mean().pow(1.0 / p)


def dswd(real: torch.Tensor, fake: torch.Tensor, projector: nn.Module, optimizer: Optional[torch.optim.Optimizer],
         n_projections: int, iters: int, lam: float, p: int = 2, grad_sync=None) -> torch.Tensor:
    """Distributional sliced Wasserstein distance; first ``iters`` ascent steps of the projector on
    ``SW - lam * mean |cos(d_i, d_j)|`` (detached features), then the distance with gradients to ``fake``."""
    base = torch.randn(n_projections, real.shape[1], device=real.device)
    base = base / base.norm(dim=1, keepdim=True)
    if optimizer is not None:
        real_d, fake_d = real.detach(), fake.detach()
        for _ in range(iters):
            directions = projector(base)
            cosine = (directions @ directions.t()).abs().mean()  # unit rows: the Gram matrix is the cosine
            loss = lam * cosine - sliced_wasserstein(real_d, fake_d, directions, p)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_sync is not None:
                grad_sync(projector)
            optimizer.step()
    directions = projector(base).detach()
    return sliced_wasserstein(real, fake, directions, p)


def build_prior(config: TrainConfig, feature_dim: int) -> Prior:
    return PRIORS.get(config.prior)(config, feature_dim)
