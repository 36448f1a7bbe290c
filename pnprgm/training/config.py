"""Frozen configuration of an RGM training run: forward process, training arguments (the model's is
:class:`pnprgm.rgm.unet.GeneratorConfig`), and the resolution of one from the other.

A config file (JSON/YAML) has up to four sections ``model``, ``process``, ``train`` and ``size`` (a generator size
name; ``preset``, its old name, is read as ``size``); the keys of each section are the fields of its dataclass,
unknown keys are errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

from pnprgm.config import build_strict, check_seed, to_dict
from pnprgm.device import PRECISIONS
from pnprgm.errors import UserError
from pnprgm.rgm.unet import SIZES, GeneratorConfig


@dataclass(frozen=True)
class ProcessConfig:
    """Forward (degradation) process the generator learns to invert.

    :param name: ``ddpm`` (RGM noising), ``sr`` (RGM block averaging + noise), ``denoise`` (additive Gaussian noise
        of a continuous std) or ``operator`` (a linear operator + noise).
    :param T: number of levels (default: ddpm 4, sr 7, denoise/operator 1).
    :param beta_min: VP schedule beta at t=0 (ddpm, sr).
    :param beta_max: VP schedule beta at t=1 (ddpm, sr).
    :param sr_scale: block size of one ``sr`` down/up step (the official process uses 2).
    :param operator: operator spec (``pnprgm operators`` lists them) or ``module:callable`` / ``file.py:callable``
        returning a deepinv ``LinearPhysics`` for ``(shape=(C, H, W), device=...)`` (``operator`` process).
    :param noise_min: smallest measurement noise std in [0, 1] units (denoise, operator; > 0: the fidelity divides by it).
    :param noise_max: largest noise std (log-uniform between the two; default denoise 50/255, operator noise_min).
    """

    name: Literal["ddpm", "sr", "denoise", "operator"] = "ddpm"
    T: Optional[int] = None
    beta_min: float = 0.1
    beta_max: float = 20.0
    sr_scale: int = 2
    operator: Optional[str] = None
    noise_min: Optional[float] = None
    noise_max: Optional[float] = None


@dataclass(frozen=True)
class TrainConfig:
    """Training arguments (defaults: RGM's CIFAR-10 settings where they apply, short-run EMA).

    :param steps: generator updates.
    :param batch_size: images per step, over all processes (split evenly between DDP ranks).
    :param crop: training crop size in pixels (square).
    :param channels: 1 or 3; None: 1 if every training image is grayscale, else 3.
    :param prior: ``kld`` (discriminator), ``mmd`` (RBF kernels) or ``dswd`` (distributional sliced Wasserstein).
    :param lmbda: weight of the fidelity term (RGM: CIFAR 1e-3, CelebA-HQ 5e-5). Against a supervised term and no
        working prior, it makes the per-pixel target ``(x + w y) / (1 + w)`` with ``w = lmbda P / (2 supervised
        sigma^2)`` (P values per crop, sigma in [-1, 1] units): a shrinkage towards the noisy input, largest at low
        noise and growing with the crop (5e-5, 64x64 colour, 10/255: w = 0.5). Denoisers for PnP: 0.
    :param prior_weight: weight of the prior term (RGM: 1). 0 trains without it (no discriminator or prior
        updates): the supervised-only baseline an RGM run is compared with.
    :param supervised: weight of an auxiliary supervised term ``supervised * mean((G(y, z) - x)^2)`` against the
        clean image (not part of RGM; 0, the default, is RGM's objective). Short CPU runs use it so that the
        generator becomes a useful denoiser within minutes; the prior still shapes the residual texture.
    :param perceptual: weight of an auxiliary perceptual term ``perceptual * mean LPIPS_alex(G(y, z), x)`` against
        the clean image (not part of RGM; gray crops are compared channel-replicated). Against a pure MSE it keeps
        the fine texture an MSE denoiser averages away, at some PSNR; 0 (the default) leaves it out.
    :param supervised_weighting: ``pixel``: the MSE over all pixels of the batch, where high-noise samples dominate;
        ``psnr``: each sample's MSE scaled by ``mean_j MSE_j / MSE_i`` (detached), whose gradient is that of the
        batch's mean log-MSE (mean PSNR) at the MSE's scale, so every noise level counts alike.
    :param lr_g: generator learning rate.
    :param lr_d: discriminator (and DSWD projection net) learning rate.
    :param beta1: Adam beta1.
    :param beta2: Adam beta2.
    :param lr_min: floor of the cosine schedule.
    :param cosine: cosine learning-rate decay over ``steps``.
    :param ema_decay: decay of the generator's exponential moving average.
    :param ema_warmup: the EMA's decay at the generator's k-th update is ``min(ema_decay, (1 + k) / (10 + k))``, so
        that the saved model follows the trained weights early on: without it a short run from random weights
        saved a model that was mostly its random start (300 steps at 0.999: 74 % start weights). False: ``ema_decay``
        from the first update (runs checkpointed before this setting existed; a fine-tune then stays near its start).
    :param r1_gamma: R1 penalty weight ``r1_gamma/2 ||grad D(real)||^2``.
    :param lazy_reg: apply R1 every this many steps.
    :param mmd_features: MMD on ``discriminator`` features or on raw ``pixels`` (no discriminator).
    :param mmd_sigmas: RBF kernel widths.
    :param dswd_projections: DSWD random projections.
    :param dswd_iters: DSWD inner steps of the projection net per generator step.
    :param dswd_lam: DSWD weight of the projection-diversity penalty.
    :param d_nf: discriminator base width.
    :param d_ch_mult: discriminator width multipliers, one downsampling block each.
    :param d_cond: condition the discriminator on the degraded input as well (default False: RGM's official
        unconditional ``D(x_t, t)``, which makes the objective fidelity + prior).
    :param d_cond_input: what a conditional discriminator sees beside the sample: ``measurement`` (the generator's
        degraded input) or ``residual``: ``estimate(y - A x) / sigma``, the measurement residual the sample leaves,
        in noise units. For a real pair it is ``estimate(noise) / sigma`` (for denoising exactly the white unit
        noise, independent of the image), so the discriminator judges whether the sample explains the measurement as
        the noise model says: an output that keeps noise leaves too little residual, one that smooths texture away
        leaves image structure in it. Denoise and operator processes.
    :param d_residual_below: with ``d_cond_input=residual``, the residual is shown only for samples whose noise std
        is below this (in [0, 1] image units, like ``--noise``); above it both residuals are zeros, so one D judges
        the pair ``(x, residual)`` at low noise and the image alone (the official prior) at high noise. 0: every
        sample. Why: at low noise the KL prior cannot tell kept input noise from a photo's own grain, while at high
        noise the residual D smooths texture away (benchmarks/prior_vs_mse_2026-12-06b.md).
    :param d_residual_above: with ``d_cond_input=residual``, the residual is shown only for samples whose noise std
        is at least this (zeros below; same units): the residual D, which asks for a posterior sample's white
        residual, judges the high levels and the official image-only prior the low ones. With ``d_residual_below``
        it gives a band ``[above, below)``. 0: every sample.
    :param d_highpass: gain of the discriminator's high-pass input copy ``x - blur(x)`` (lets it see the fine
        texture a restoration lacks; :mod:`pnprgm.training.priors`); 0 leaves it out (the earlier architecture).
    :param d_renoise: for the denoise and operator processes, the discriminator compares real and generated images
        each with fresh noise of std ``d_renoise * sigma_y`` added (0: clean images). RGM's own processes compare
        ``x_t`` with the re-noised estimate at level t: against a known noise floor, noise an output keeps from its
        input is excess variance, while on clean images it passes for the photo's own grain or texture.
    :param added_input_gain: with ``--init-from`` and a generator input the source lacks (``model.noise_input``),
        the added channel's initial weights are a fresh layer's times this: small, so the start is the source's
        output to within a little grain, but not zero (from zero its gradient is zero: the output does not depend
        on it yet). 0.1 put grain of std 0.006 (1.6/255) on `unet-denoiser-color`'s every output, -1.2 dB at 5/255.
    :param d_warmup: first steps in which only the discriminator trains (the generator, its EMA and schedule stay
        put); they count towards ``steps``. A warm-started generator otherwise follows the gradient of a discriminator
        that has not yet learned what tells its outputs from real images. 0: none (RGM's own schedule).
    :param seed: seed of everything.
    :param checkpoint_every: steps between checkpoints (0: only at the end).
    :param keep_checkpoints: how many of the latest ``checkpoints/step_0000500.pt`` to keep (older ones are deleted;
        ``last.pt`` is always kept); 0 keeps every one.
    :param val_every: steps between validations (0: only at the end).
    :param sample_every: steps between sample grids (0: only at the end).
    :param log_every: steps between CSV log lines.
    :param val_fraction: fraction of the data folder held out for validation when no validation folder is given,
        chosen with a fixed seed (``data.HELD_OUT_SEED``), not ``seed``: runs with any seed hold out the same photos.
    :param data_downscale: shrink every training and validation image by this integer factor (mean of each
        ``f x f`` block) as it is loaded: a photo's own sensor noise and JPEG artefacts shrink with it (independent
        noise by ``f``), which an RGM prior otherwise learns as part of "clean" and adds back as grain. 1: as stored.
    :param val_images: validation images used (centre crops).
    :param val_crop: validation crop size.
    :param val_sigma: noise std (in [0, 1] units) of the validation of denoise/operator processes.
    :param minutes: stop after this many minutes of training in this process, as if ``steps`` were reached (validate,
        write the model); 0: no time limit. For a time-boxed machine, e.g. a lent GPU.
    :param model_every: also write ``model.pt`` every this many seconds (0: only at the end), so that a run that is
        killed still leaves its latest model.
    :param precision: forward passes of the generator and the discriminator in ``bf16`` autocast (weights, losses,
        the R1 gradient's accumulation and validation stay float32) or ``float32``; ``auto``: bf16 where the hardware
        computes it (:func:`pnprgm.device.native_bf16`). Measured on 1 core of an AMD EPYC with AVX512-BF16: a
        ``small`` generator's step at batch 16 x 64^2 takes 0.45 s in bf16 against 0.80 s in float32. float32 by
        default: every shipped model was trained so, and a GAN's balance may shift with the precision.
    :param model_at_steps: also write ``model_step<N>.pt`` (the EMA generator, as ``model.pt``) when step N is reached:
        with a prior the latest model is not always the best one, and a time-boxed run cannot be resumed to go back.
    """

    steps: int = 1000
    batch_size: int = 8
    crop: int = 64
    channels: Optional[int] = None
    prior: Literal["kld", "mmd", "dswd"] = "kld"
    lmbda: float = 1e-3
    prior_weight: float = 1.0
    supervised: float = 0.0
    perceptual: float = 0.0
    supervised_weighting: Literal["pixel", "psnr"] = "pixel"
    lr_g: float = 1.6e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    lr_min: float = 1e-5
    cosine: bool = True
    ema_decay: float = 0.999
    ema_warmup: bool = True
    r1_gamma: float = 0.02
    lazy_reg: int = 15
    mmd_features: Literal["discriminator", "pixels"] = "discriminator"
    mmd_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    dswd_projections: int = 1000
    dswd_iters: int = 10
    dswd_lam: float = 10.0
    d_nf: int = 32
    d_ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    d_cond: bool = False
    d_cond_input: Literal["measurement", "residual"] = "measurement"
    d_residual_below: float = 0.0
    d_residual_above: float = 0.0
    d_highpass: float = 16.0
    d_renoise: float = 0.0
    d_warmup: int = 0
    added_input_gain: float = 0.01
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    val_every: int = 500
    sample_every: int = 1000
    log_every: int = 10
    val_fraction: float = 0.1
    data_downscale: int = 1
    val_images: int = 8
    val_crop: int = 128
    val_sigma: float = 25 / 255
    minutes: float = 0.0
    model_every: float = 0.0
    model_at_steps: tuple[int, ...] = ()
    precision: Literal["float32", "bf16", "auto"] = "float32"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.crop < 4:
            raise UserError("train: steps and batch_size must be >= 1 and crop >= 4.")
        if self.d_warmup < 0 or self.d_warmup >= self.steps:
            raise UserError(f"train.d_warmup must be >= 0 and below steps ({self.steps}); got {self.d_warmup}.")
        check_seed(self.seed, "train.seed")
        if self.precision not in PRECISIONS:
            raise UserError(f"train.precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")
        if self.keep_checkpoints < 0:
            raise UserError(f"train: keep_checkpoints must be >= 0 (0 keeps every one); got {self.keep_checkpoints}.")
        if self.channels not in (None, 1, 3):
            raise UserError(f"train.channels must be 1, 3 or None (auto); got {self.channels}.")
        if self.supervised < 0 or self.lmbda < 0 or self.prior_weight < 0 or self.perceptual < 0:
            raise UserError("train: lmbda, prior_weight, supervised and perceptual must be >= 0.")
        if self.prior_weight == 0 and self.supervised == 0 and self.lmbda == 0 and self.perceptual == 0:
            raise UserError("train: prior_weight, lmbda, supervised and perceptual are all 0, so nothing is learned; set one.")
        if self.perceptual > 0 and self.crop < 32:
            raise UserError(f"train: the perceptual term (LPIPS-alex) needs crops of at least 32 pixels; got crop {self.crop}.")
        if self.d_cond_input != "measurement" and not self.d_cond:
            raise UserError(f"train.d_cond_input={self.d_cond_input} applies to a conditional discriminator; add "
                            f"train.d_cond=true (or remove d_cond_input).")
        for key in ("d_residual_below", "d_residual_above"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise UserError(f"train.{key} must be a noise std in [0, 1] (0: every sample); got {value}.")
            if value and not (self.d_cond and self.d_cond_input == "residual"):
                raise UserError(f"train.{key} applies to the residual discriminator; add train.d_cond=true "
                                f"train.d_cond_input=residual (or remove {key}).")
        if self.d_residual_below and self.d_residual_above >= self.d_residual_below:
            raise UserError(f"train.d_residual_above ({self.d_residual_above}) must be below d_residual_below "
                            f"({self.d_residual_below}): together they are the band [above, below) where D sees the "
                            f"residual.")
        if not (math.isfinite(self.added_input_gain) and 0 < self.added_input_gain <= 1):
            raise UserError(f"train.added_input_gain must be in (0, 1] (a fraction of a fresh layer's weights); got "
                            f"{self.added_input_gain}.")
        if not (math.isfinite(self.d_renoise) and 0 <= self.d_renoise <= 1):
            raise UserError(f"train.d_renoise must be in [0, 1] (a fraction of the measurement noise std; 0: off); got "
                            f"{self.d_renoise}.")
        if not (math.isfinite(self.d_highpass) and self.d_highpass >= 0):
            raise UserError(f"train.d_highpass must be a finite number >= 0 (0: no high-pass input); got {self.d_highpass}.")
        if not (math.isfinite(self.minutes) and self.minutes >= 0 and math.isfinite(self.model_every)
                and self.model_every >= 0):
            raise UserError(f"train: minutes and model_every must be finite and >= 0 (0: off); got {self.minutes}, "
                            f"{self.model_every}.")
        if any(isinstance(n, bool) or int(n) != n or not 1 <= n <= self.steps for n in self.model_at_steps):
            raise UserError(f"train.model_at_steps must list steps from 1 to steps ({self.steps}), e.g. 500,1000; got "
                            f"{','.join(map(str, self.model_at_steps))}.")
        if isinstance(self.data_downscale, bool) or int(self.data_downscale) != self.data_downscale \
                or self.data_downscale < 1:
            raise UserError(f"train.data_downscale must be an integer >= 1 (1: images as stored); got {self.data_downscale}.")
        if not 0 <= self.ema_decay < 1 or self.lazy_reg < 1 or not 0 <= self.val_fraction < 1:
            raise UserError("train: ema_decay must be in [0, 1), lazy_reg >= 1, val_fraction in [0, 1).")
        # checked here, before the run folder is touched: torch would refuse them only when it builds the optimisers
        for key in ("lr_g", "lr_d"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise UserError(f"train.{key} must be a learning rate > 0; got {getattr(self, key)}.")
        if not (math.isfinite(self.lr_min) and self.lr_min >= 0):  # a floor above lr_g is clamped to it (loop._cosine)
            raise UserError(f"train.lr_min (the cosine schedule's floor) must be >= 0; got {self.lr_min}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise UserError(f"train: Adam's beta1 and beta2 must be in [0, 1); got {self.beta1}, {self.beta2}.")
        if not (math.isfinite(self.r1_gamma) and self.r1_gamma >= 0):
            raise UserError(f"train.r1_gamma must be >= 0 (0: no R1 penalty); got {self.r1_gamma}.")
        sigmas = self.mmd_sigmas if isinstance(self.mmd_sigmas, (tuple, list)) else (self.mmd_sigmas,)
        if not sigmas or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in sigmas):
            raise UserError(f"train.mmd_sigmas must list one or more kernel widths > 0, e.g. 1,2,4,8,16; got "
                            f"{self.mmd_sigmas!r}.")
        if self.dswd_projections < 1 or self.dswd_iters < 0 or self.d_nf < 1 or not self.d_ch_mult \
                or any(m < 1 for m in self.d_ch_mult):
            raise UserError("train: dswd_projections and d_nf must be >= 1, dswd_iters >= 0, and d_ch_mult a list of "
                            "multipliers >= 1.")
        if self.val_images < 0 or self.val_crop < 4 or not (math.isfinite(self.val_sigma) and 0 < self.val_sigma <= 1):
            raise UserError(f"train: val_images must be >= 0 (0: no validation), val_crop >= 4 pixels and val_sigma a "
                            f"noise std in (0, 1]; "
                            f"got {self.val_images}, {self.val_crop}, {self.val_sigma}.")
        if min(self.checkpoint_every, self.val_every, self.sample_every, self.log_every) < 0:
            raise UserError("train: checkpoint_every, val_every, sample_every and log_every must be >= 0 (0: only at "
                            "the end).")


#: Train fields added after runs were checkpointed, with the value that rebuilds those runs' networks: a saved
#: config without the field is read with it (``d_cond`` was True by default before the official unconditional D).
LEGACY_TRAIN = {"d_cond": True, "d_highpass": 0.0, "ema_warmup": False}

#: Default output of the generator per process: RGM's tanh for its own processes, residual forms for the others.
DEFAULT_OUTPUT = {"ddpm": "tanh", "sr": "tanh", "denoise": "residual", "operator": "skip"}
DEFAULT_T = {"ddpm": 4, "sr": 7, "denoise": 1, "operator": 1}
SECTIONS = ("model", "process", "train", "size")


def resolve_process(config: ProcessConfig) -> ProcessConfig:
    """Fill the process-dependent defaults (T, noise range) and check consistency."""
    values = to_dict(config)
    name = config.name
    values["T"] = config.T if config.T is not None else DEFAULT_T[name]
    if values["T"] < 1:
        raise UserError(f"process.T must be >= 1; got {values['T']}.")
    if name in ("denoise", "operator"):
        if values["T"] != 1:
            raise UserError(f"the {name} process has a single level; remove process.T or set it to 1.")
        low = config.noise_min if config.noise_min is not None else (1 / 255 if name == "denoise" else 0.01)
        high = config.noise_max if config.noise_max is not None else (50 / 255 if name == "denoise" else low)
        if not 0 < low <= high <= 1:
            raise UserError(f"the noise range must satisfy 0 < noise_min <= noise_max <= 1 (std in [0, 1] units, e.g. "
                            f"--noise 0.004:0.2 or 1/255:50/255); got {low}, {high}.")
        values["noise_min"], values["noise_max"] = float(low), float(high)
    elif config.noise_min is not None or config.noise_max is not None:
        # ddpm and sr draw their noise from RGM's schedule: a --noise given there would be silently ignored.
        raise UserError(f"the {name} process takes its noise from RGM's schedule; remove --noise, or add --forward "
                        f"denoise or --operator SPEC (--noise applies to those processes).")
    if name == "operator" and not config.operator:
        raise UserError("the operator process needs an operator: give --operator SPEC (or process.operator).")
    if config.operator is not None and not isinstance(config.operator, str):
        # the spec is saved with the model and rebuilds the operator when it is loaded: an object cannot be
        raise UserError(f"process.operator must be text: an operator spec (pnprgm operators) or 'module:callable' / "
                        f"'file.py:callable' naming a function fn(shape, device) that returns your LinearPhysics; got a "
                        f"{type(config.operator).__name__} object.")
    if name != "operator" and config.operator:
        raise UserError(f"an operator was given but the process is {name!r}; use the operator process.")
    if config.sr_scale < 2:
        raise UserError(f"process.sr_scale must be >= 2; got {config.sr_scale}.")
    return build_strict(ProcessConfig, values, what="process")


def resolve_model(size: Optional[str], overrides: Mapping[str, Any], process: ProcessConfig, channels: int) -> GeneratorConfig:
    """Generator config from a named size (None: the dataclass defaults), user overrides and what the process and
    the data imply."""
    sigma_conditioned = process.name not in ("ddpm", "sr")
    derived = {
        "channels": channels,
        "conditioning": "sigma" if sigma_conditioned else "time",
        "T": process.T,
        "beta_min": process.beta_min,
        "beta_max": process.beta_max,
    }
    for key, value in derived.items():
        if key in overrides and str(overrides[key]) != str(value):
            raise UserError(f"model.{key}={overrides[key]!r} contradicts the data/process ({value!r}); remove it.")
    # Defaults the user may override: the output form, and a noise-level input channel (as DRUNet) for sigma models.
    defaults = {"output": DEFAULT_OUTPUT[process.name], "sigma_channel": sigma_conditioned}
    merged = {**(SIZES.get(size) if size else {}), **defaults, **derived, **dict(overrides)}
    if process.name == "sr" and str(merged["output"]) == "residual":
        raise UserError("model.output=residual preconditions with the ddpm noise schedule, which the sr process does not "
                        "follow; use tanh or skip.")
    return build_strict(GeneratorConfig, merged, what="model")


def split_sections(data: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Check a config mapping has only the known sections (``preset``, the old name of ``size``, is renamed)."""
    data = dict(data)
    if "preset" in data and "size" not in data:
        data["size"] = data.pop("preset")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise UserError(f"unknown section{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {source}; "
                        f"valid: {', '.join(SECTIONS)}.")
    for key in ("model", "process", "train"):
        if key in data and not isinstance(data[key], Mapping):
            raise UserError(f"section {key!r} of {source} must be a mapping of parameter: value.")
    return dict(data)
