"""The RGM training loop (single process, or DDP under ``torchrun``).

Per step (as the official ``train.py``): a discriminator update on real ``x_t`` against re-degraded
``G(x_{t+1}, t, z)`` (softplus losses, R1 every ``lazy_reg`` steps), then a generator update on
``prior + lmbda * fidelity`` with new levels, noise and latents, then the EMA and the cosine schedules.

Engineering beyond the official code:
- every random draw of step k comes from generators seeded with ``(seed, step, rank)``, so a resumed run
  continues exactly as an uninterrupted one (the RNG states are checkpointed as well);
- checkpoints and the model file are self-describing and load with ``weights_only=True``;
- under ``torchrun`` (``WORLD_SIZE`` > 1) models are wrapped in ``DistributedDataParallel`` (gloo on CPU,
  nccl on GPU), each rank takes its shard of the data and ``batch_size / world`` images, only rank 0 writes.
"""
from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import math
import os
import platform
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pnprgm.config import MAX_SEED, build_strict, coerce, field_types, to_dict
from pnprgm.device import resolve_device, resolve_precision
from pnprgm.errors import UserError
from pnprgm import io
from pnprgm.io import check_writable, refuse_taken, versions, write_image, write_json
from pnprgm.metrics import psnr
from pnprgm.rgm import model_file
from pnprgm.training import checkpoint as ckpt
from pnprgm.training.config import LEGACY_TRAIN, ProcessConfig, TrainConfig, resolve_model, resolve_process
from pnprgm.training.interrupt import StopRequest
from pnprgm.training.data import HELD_OUT_SEED, ImageSet, ShardedSampler, centre_crops, detect_channels, load_images, \
    random_crops, scan_folder, split_validation
from pnprgm.rgm.unet import SIZES, GeneratorConfig
from pnprgm.rgm.architectures import build_generator_from_config, count_parameters
from pnprgm.training.priors import build_discriminator, build_prior, discriminator_loss
from pnprgm.training.processes import ForwardProcess, Pairs, build_process, check_operator_files, operator_file_data, \
    operator_files, process_size_multiple
from pnprgm.training.sampling import grid, restore_degraded, sample_from_noise

#: Train fields that may change when resuming (the others must match the checkpoint).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "val_every", "sample_every", "log_every",
                     "model_at_steps", "precision")
#: settings of one process, never taken from a checkpoint: a resumed run has the time box its own command gives
PER_PROCESS = ("minutes", "model_every")
LOG_FIELDS = ["step", "seconds", "lr_g", "g_loss", "prior", "fidelity", "supervised", "perceptual", "d_loss", "d_real", "d_fake", "r1",
              "val_psnr", "val_psnr_input"]


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    #: whether :func:`init_distributed` created the process group (and :func:`leave_distributed` destroys it)
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str | torch.device) -> Distributed:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (nccl on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world <= 1:
        return Distributed(0, 1, resolved)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(resolved)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Distributed(rank, world, resolved, owns_group)


def leave_distributed(info: Distributed) -> None:
    """Destroy the process group :func:`init_distributed` created: torch warns at exit about one left standing, and
    gloo's threads may abort the interpreter's teardown after a run that succeeded. A caller's own group stays."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


#: the clock of ``minutes`` and ``model_every`` (a test replaces it)
_clock = time.monotonic


def step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 1_009 + rank) % MAX_SEED


def supervised_loss(per_sample_mse: torch.Tensor, weighting: str) -> torch.Tensor:
    """The supervised term from per-sample MSEs: ``mean_i MSE_i`` (``pixel``) or ``mean_i (m / sg(MSE_i)) MSE_i`` with
    ``m = sg(mean_j MSE_j)`` (``psnr``): same value, gradient ``m * grad mean_i log MSE_i``.

    :param per_sample_mse: shape ``(B,)``.
    :param weighting: ``pixel`` or ``psnr`` (:class:`TrainConfig`).
    """
    if weighting == "pixel":
        return per_sample_mse.mean()
    detached = per_sample_mse.detach()
    return (detached.mean() / detached.clamp_min(1e-12) * per_sample_mse).mean()


def perceptual_distance(lpips_net: nn.Module, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample LPIPS ``(B,)`` between images in [-1, 1] (LPIPS's own range); gray images are replicated to RGB."""
    if x.shape[1] == 1:
        x, reference = x.expand(-1, 3, -1, -1), reference.expand(-1, 3, -1, -1)
    return lpips_net(x, reference, normalize=False).flatten()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


# ------------------------------------------------------------------------------------------------ setup


@dataclass
class Prepared:
    """Data, resolved configs and the process of a run, built before any training starts."""

    train_set: ImageSet
    val_set: Optional[ImageSet]
    model: GeneratorConfig
    process_config: ProcessConfig
    train: TrainConfig
    process: ForwardProcess
    val_size: int
    data_root: Path
    val_root: Optional[Path]


def prepare(data: str | Path, *, process: ProcessConfig, train: TrainConfig, size: Optional[str] = "small",
            model: Optional[dict] = None, val: Optional[str | Path] = None,
            device: torch.device = torch.device("cpu"), code_operator: Optional[str] = None) -> Prepared:
    """Check every input and decode the data; every problem is a one-line :class:`UserError`.

    :param code_operator: the ``module:callable`` operator the user typed (:func:`build_process`).
    """
    process_config = resolve_process(process)
    data_root = Path(data)
    files = scan_folder(data_root)
    val_root = Path(val) if val is not None else None
    if val_root is not None:
        train_files, val_files = files, scan_folder(val_root, "validation")
    else:
        # the held-out photos are the folder's, not the run's: another --seed must not train on the photos that
        # the benchmarks and the other runs hold out (held_out_files), so the split's seed is fixed
        train_files, val_files = split_validation(files, train.val_fraction, HELD_OUT_SEED)
    channels = train.channels or detect_channels(files + list(val_files))
    if model and "channels" in model and int(model["channels"]) != channels:
        if train.channels is not None:  # the user's setting, not the photos, disagrees with the model
            raise UserError(f"train.channels={train.channels} contradicts the model's {model['channels']} channels; "
                            f"remove train.channels (photos are converted to the model's channels).")
        raise UserError(f"the model has {model['channels']} channels but the images give {channels}; use "
                        f"{'colour' if int(model['channels']) == 3 else 'grayscale'} images or another model.")
    model_config = resolve_model(size, model or {}, process_config, channels)
    generator_multiple = 2 ** (len(model_config.ch_mult) - 1)
    if train.crop % generator_multiple:
        raise UserError(f"crop {train.crop} must be a multiple of {generator_multiple} for this model "
                        f"(2^(levels-1)); use --crop {max(generator_multiple, train.crop // generator_multiple * generator_multiple)}.")
    shape = (channels, train.crop, train.crop)
    forward = build_process(process_config, shape, device, code_operator=code_operator)
    if train.d_cond and train.d_cond_input == "residual" and not forward.has_residual:
        raise UserError(f"train.d_cond_input=residual needs a measurement with known noise (the denoise or operator "
                        f"process); the {process_config.name} process has none: use train.d_cond_input=measurement.")
    if train.d_renoise and not forward.has_residual:
        raise UserError(f"train.d_renoise applies to a measurement with known noise (the denoise or operator process); "
                        f"the {process_config.name} process already re-noises what its discriminator compares: remove it.")
    train_set = load_images(train_files, channels, train.crop, downscale=train.data_downscale)
    val_set, val_size = None, 0
    if val_files and train.val_images > 0:
        chosen = sorted(val_files)[: train.val_images]
        val_set = load_images(chosen, channels, 1, what="validation", downscale=train.data_downscale)
        shared = set(val_set.sha256) & set(train_set.sha256)
        if shared:
            warnings.warn(f"{len(shared)} of the {len(chosen)} validation images are also training images (--val holds "
                          f"photos of --data): the validation PSNR is not measured on unseen photos.", stacklevel=2)
        smallest = min(min(im.shape[1:]) for im in val_set.images)
        multiple = math.lcm(generator_multiple, process_size_multiple(process_config))
        val_size = min(train.val_crop, smallest) // multiple * multiple
        if val_size < multiple:
            shrunk = (f" once shrunk {train.data_downscale}x ({multiple * train.data_downscale} on disk; or lower "
                      f"train.data_downscale)") if train.data_downscale > 1 else ""
            raise UserError(f"validation images must be at least {multiple} pixels on each side{shrunk}; remove the "
                            f"small ones.")
        try:
            forward.check_shape((channels, val_size, val_size))
        except UserError as err:  # e.g. a mask file of the training crop's size: the validation crop differs
            raise UserError(f"validation crops are {val_size}x{val_size}: {str(err).rstrip('.')}; set "
                            f"train.val_crop={train.crop} to validate at the training crop size.") from None
    return Prepared(train_set, val_set, model_config, process_config, train, forward, val_size, data_root, val_root)




# ------------------------------------------------------------------------------------------------ training

#: Generator settings a fine-tuning run may add to an ``--init-from`` model: the noise input (one more channel of
#: ``conv_in``) and the noise level from which it is fed (no new weights).
ADDED_INPUTS = ("noise_input", "noise_input_above")


class Trainer:
    """One training run; :meth:`run` trains to ``train.steps`` and writes the run folder.

    :param prepared: data and configs from :func:`prepare`.
    :param out: run folder.
    :param dist_info: rank, world size and device.
    :param command: the command line (for the record).
    :param progress: show a progress bar (rank 0).
    """

    def __init__(self, prepared: Prepared, out: str | Path, dist_info: Distributed, *, command: str = "",
                 progress: bool = True):
        self.p = prepared
        self.cfg = prepared.train
        self.out = Path(out)
        self.dist = dist_info
        self.device = dist_info.device
        self.precision = resolve_precision(self.cfg.precision, self.device)  # once: auto reads /proc/cpuinfo
        self.command = command
        self.history: list[dict[str, Any]] = []  # earlier segments of a resumed run
        self.replaced_pending: set[str] = set()  # --overwrite: kinds of the earlier run's files not yet replaced
        self.interrupted = False  # stopped by Ctrl-C before its steps
        self.operator_files = operator_files(prepared.process_config)  # kernels, masks: checked on resume and load
        self.operator_file_data = operator_file_data(prepared.process_config)  # their copies, in model files
        self.init_from: Optional[dict[str, Any]] = None  # provenance of the starting weights when fine-tuning
        self.progress = progress
        if self.cfg.batch_size % dist_info.world:
            raise UserError(f"batch size {self.cfg.batch_size} must be divisible by the {dist_info.world} processes.")
        self.local_batch = self.cfg.batch_size // dist_info.world
        process = prepared.process

        if self.device.type == "cuda":  # fixed crop sizes: let cuDNN pick its fastest convolutions once
            torch.backends.cudnn.benchmark = True
        seed_everything(self.cfg.seed)  # identical initial weights on every rank
        self.G = build_generator_from_config(prepared.model).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        for p in self.G_ema.parameters():
            p.requires_grad_(False)
        betas = (self.cfg.beta1, self.cfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr_g, betas=betas)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, self._cosine(self.cfg.lr_g))
        probe = build_discriminator(self.cfg, prepared.model.channels, process.conditioning)
        self.prior = build_prior(self.cfg, probe.feature_dim).to(self.device)
        self.D = probe.to(self.device) if self.prior.uses_discriminator else None
        self.opt_D = self.sched_D = None
        if self.D is not None:
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr_d, betas=betas)
            self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, self._cosine(self.cfg.lr_d))
        self.opt_P = None
        if any(True for _ in self.prior.parameters()):
            self.opt_P = torch.optim.Adam(self.prior.parameters(), lr=self.cfg.lr_d, betas=betas)
            self.prior.optimizer = self.opt_P
            if dist_info.active:
                self.prior.grad_sync = _average_gradients
        self.G_train: nn.Module = self.G
        self.D_train: Optional[nn.Module] = self.D
        if dist_info.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = DDP(self.G, device_ids=ids)
            if self.D is not None:
                self.D_train = DDP(self.D, device_ids=ids)
        self.sampler = ShardedSampler(len(prepared.train_set), self.cfg.seed, dist_info.rank, dist_info.world)
        self.step = 0
        self.last: dict[str, float] = {}
        # the discriminator's loss (softplus terms, no R1) over the last steps of this process: one step's value is
        # too noisy to say "below chance" (2 ln 2); the window restarts when a run is resumed
        self.recent_d_loss: collections.deque[float] = collections.deque(maxlen=200)
        self.val_psnr: Optional[float] = None
        self.val_step: Optional[int] = None  # the step val_psnr was measured at (a model saved later says so)
        self.val_psnr_input: Optional[float] = None
        self.started = time.time()
        self.elapsed_before = 0.0

    # configuration record ----------------------------------------------------------------------------------------
    def _cosine(self, base_lr: float):
        steps, floor = self.cfg.steps, min(self.cfg.lr_min, base_lr)

        def factor(step: int) -> float:
            if not self.cfg.cosine:
                return 1.0
            progress = min(step, steps) / steps
            return (floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))) / base_lr

        return factor

    def run_config(self) -> dict[str, Any]:
        """Everything that defines the run, JSON-able."""
        return {
            "model": to_dict(self.p.model),
            "process": to_dict(self.p.process_config),
            "train": to_dict(self.cfg),
            "data": {"root": str(self.p.data_root), "files": self.p.train_set.record(self.p.data_root),
                     "val_root": str(self.p.val_root or self.p.data_root),
                     "val_files": self.p.val_set.record(self.p.val_root or self.p.data_root) if self.p.val_set else [],
                     "val_size": self.p.val_size, "val_given": self.p.val_root is not None},
            "world_size": self.dist.world,
            "init_from": self.init_from,
            "operator_files": self.operator_files,
        }

    def hardware(self) -> dict[str, Any]:
        info = {"device": str(self.device), "world_size": self.dist.world, "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                "precision": self.precision}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info

    # checkpoints ---------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        content = {
            "step": self.step,
            "config": self.run_config(),
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "sched_G": self.sched_G.state_dict(),
            "D": self.D.state_dict() if self.D is not None else None,
            "opt_D": self.opt_D.state_dict() if self.opt_D is not None else None,
            "sched_D": self.sched_D.state_dict() if self.sched_D is not None else None,
            "prior": self.prior.state_dict(),
            "opt_prior": self.opt_P.state_dict() if self.opt_P is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": ckpt.rng_state(),
            "elapsed": self.elapsed(),
            "record": self.record(),
            "operator_file_data": self.operator_file_data,
        }
        return content

    def _clear_replaced_run(self, kind: str) -> None:
        if kind in self.replaced_pending and self.dist.main:
            remove_replaced_files(self.out, kind)
            self.replaced_pending.discard(kind)

    def save_checkpoint(self, *, kept: bool = True) -> None:
        """Write ``last.pt`` and, when ``kept``, ``checkpoints/step_0000500.pt`` (pruned to ``keep_checkpoints``). A Ctrl-C
        save is not kept: a stop at an arbitrary step must not push a scheduled checkpoint out of the kept ones."""
        if self.dist.main:
            self._clear_replaced_run("checkpoint")
            kept_path = [self.out / "checkpoints" / f"step_{self.step:07d}.pt"] if kept else []
            ckpt.save_checkpoint(self.state(), *kept_path, self.out / "last.pt")
            if kept:
                ckpt.prune_checkpoints(self.out / "checkpoints", self.cfg.keep_checkpoints)

    def start_from(self, initial: model_file.InitialWeights) -> None:
        """Start the generator and its EMA from another model's weights (fine-tuning); an input channel this run
        adds (:data:`ADDED_INPUTS`) starts with this run's seeded initial weights scaled by ``train.added_input_gain``."""
        state = dict(initial.state_dict)
        ours = self.G.conv_in.weight
        theirs = state["conv_in.weight"]
        if theirs.shape[1] < ours.shape[1]:
            state["conv_in.weight"] = torch.cat([theirs, self.cfg.added_input_gain * ours.detach()[:, theirs.shape[1]:].cpu()], 1)
        self.G.load_state_dict(state)
        self.G_ema.load_state_dict(state)
        self.init_from = dict(initial.provenance)
        if theirs.shape[1] < ours.shape[1]:  # the start depends on it: a later change must not rewrite history
            self.init_from["added_input_gain"] = self.cfg.added_input_gain

    def load(self, content: dict[str, Any]) -> None:
        """Restore everything from a checkpoint's content."""
        self.init_from = content["config"].get("init_from")
        self.G.load_state_dict(content["G"])
        self.G_ema.load_state_dict(content["G_ema"])
        self.opt_G.load_state_dict(content["opt_G"])
        self.sched_G.load_state_dict(content["sched_G"])
        if self.D is not None:
            self.D.load_state_dict(content["D"])
            self.opt_D.load_state_dict(content["opt_D"])
            self.sched_D.load_state_dict(content["sched_D"])
        self.prior.load_state_dict(content["prior"])
        if self.opt_P is not None:
            self.opt_P.load_state_dict(content["opt_prior"])
        self.sampler.load_state_dict(content["sampler"])
        ckpt.set_rng_state(content["rng"])
        self.step = int(content["step"])
        self.elapsed_before = float(content.get("elapsed", 0.0))
        record = content.get("record") or {}
        self.history = list(record.get("history") or [])
        if record.get("command"):
            self.history.append({"command": record["command"], "until_step": self.step,
                                 "seconds": record.get("seconds"), "hardware": record.get("hardware")})
        self.last = dict(record.get("final_losses") or {})
        self.val_psnr = record.get("val_psnr")
        self.val_step = record.get("val_step")

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def record(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "history": list(self.history),
            "init_from": self.init_from,
            "steps": self.step,
            "interrupted": self.interrupted,
            "seconds": round(self.elapsed(), 1),
            "hardware": self.hardware(),
            "versions": versions(),
            "files": self.p.train_set.record(self.p.data_root),
            "final_losses": dict(self.last),
            "recent_d_loss": (round(sum(self.recent_d_loss) / len(self.recent_d_loss), 4) if self.recent_d_loss
                              else None),
            "val_psnr": self.val_psnr,
            "val_step": self.val_step,
            "val_psnr_input": self.val_psnr_input,
            "val_protocol": self._val_protocol(),
            "parameters": count_parameters(self.G),
            "process": to_dict(self.p.process_config),
            "operator_files": self.operator_files,
            "train": to_dict(self.cfg),
        }

    def _val_protocol(self) -> str:
        if self.p.val_set is None:
            return "no validation images"
        level = ("level 1 of the process (x_1), label 0" if self.p.process.conditioning == "time"
                 else f"noise std {self.cfg.val_sigma:.4g} (clamped to the process range)")
        return (f"EMA generator, fixed z (seed {self.cfg.seed}), {len(self.p.val_set)} centre crops "
                f"{self.p.val_size}x{self.p.val_size}, input at {level}; PSNR on [0,1] images, data range 1, all channels")

    def _agree(self, flag: bool) -> bool:
        """``flag`` as rank 0 sees it, on every rank (itself when not distributed)."""
        if not self.dist.active:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def save_model(self, name: str = "model.pt") -> Path:
        self._clear_replaced_run("model")
        path = self.out / name
        model_file.save_model(path, self.G_ema.state_dict(), dict(self.G.config), to_dict(self.p.process_config), self.record(),
                              self.operator_file_data)
        return path

    # steps ---------------------------------------------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        indices = self.sampler.take(self.local_batch)
        return 2 * random_crops(self.p.train_set.images, indices, self.cfg.crop, self.device) - 1

    def _d_cond(self, pairs, fake: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The conditional discriminator's second image beside the real and the fake sample (None, None: unconditional)."""
        if not self.cfg.d_cond:
            return None, None
        if self.cfg.d_cond_input == "residual":  # each sample's own residual; the fake's carries the generator's gradient
            real, generated = self.p.process.residual(pairs.x_real, pairs), self.p.process.residual(fake, pairs)
            return residual_in_band(real, generated, pairs.sigma_y, self.cfg.d_residual_below, self.cfg.d_residual_above)
        return pairs.g_in, pairs.g_in

    def _d_inputs(self, pairs: Pairs, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The real and generated images as the discriminator sees them (``train.d_renoise``)."""
        return renoise_both(pairs.x_real, fake, pairs.sigma_y, self.cfg.d_renoise)

    def _forward_precision(self):
        """The forward passes' autocast (``train.precision``); the losses are taken in float32 after it."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def train_step(self) -> dict[str, float]:
        seed_everything(step_seed(self.cfg.seed, self.step, self.dist.rank))
        x0 = self.batch()
        process, cfg = self.p.process, self.cfg
        losses: dict[str, float] = {}
        self.G.train()
        use_prior = cfg.prior_weight > 0
        trains_d = self.D is not None and use_prior
        if trains_d:
            self.D.train()
            for p in self.D.parameters():
                p.requires_grad_(True)
            pairs = process.pairs(x0)
            with torch.no_grad():
                z = torch.randn(x0.shape[0], self.G.nz, device=self.device)
                with self._forward_precision():
                    estimate = self.G(pairs.g_in, pairs.level, z)
                fake = process.renoise(estimate.float(), pairs)
            with self._forward_precision():
                out = discriminator_loss(self.D_train, *self._d_inputs(pairs, fake), pairs.level,
                                         *self._d_cond(pairs, fake), cfg.r1_gamma,
                                         apply_r1=self.step % cfg.lazy_reg == 0)
            self.opt_D.zero_grad(set_to_none=True)
            out["d_loss"].backward()
            self.opt_D.step()
            losses.update({k: float(v.detach()) for k, v in out.items()})
            for p in self.D.parameters():
                p.requires_grad_(False)
            self.D.eval()

        if trains_d and self.step < cfg.d_warmup:
            if self.sched_D is not None:
                self.sched_D.step()
            self.step += 1  # the discriminator's warm-up: the generator waits
            return losses
        pairs = process.pairs(x0, same_level=self.prior.same_level)
        z = torch.randn(x0.shape[0], self.G.nz, device=self.device)
        with self._forward_precision():
            x0_hat = self.G_train(pairs.g_in, pairs.level, z).float()
        fake = process.renoise(x0_hat, pairs)
        if use_prior:
            with self._forward_precision():
                prior = self.prior.generator_loss(self.D, *self._d_inputs(pairs, fake), pairs.level,
                                                  *self._d_cond(pairs, fake)).float()
        else:  # no discriminator forward either: the supervised-only baseline costs only the generator
            prior = torch.zeros(x0.shape[0], device=self.device)
        fidelity = process.fidelity(x0_hat, pairs)
        loss = (cfg.prior_weight * prior + cfg.lmbda * fidelity).mean()
        if cfg.supervised > 0:
            per_sample = (x0_hat - x0).pow(2).flatten(1).mean(1)
            loss = loss + cfg.supervised * supervised_loss(per_sample, cfg.supervised_weighting)
            losses["supervised"] = float(per_sample.detach().mean())
        if cfg.perceptual > 0:
            from pnprgm.metrics.perceptual import get_model  # built once per device and cached there
            from pnprgm.metrics.protocol import DEFAULT_PROTOCOL

            distance = perceptual_distance(get_model(DEFAULT_PROTOCOL, self.device), x0_hat, x0)
            loss = loss + cfg.perceptual * distance.mean()
            losses["perceptual"] = float(distance.detach().mean())
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        self._update_ema()
        losses.update({"g_loss": float(loss.detach()), "prior": float(prior.detach().mean()),
                       "fidelity": float(fidelity.detach().mean())})
        self.sched_G.step()
        if self.sched_D is not None and use_prior:  # D's schedule advances only with D's own steps
            self.sched_D.step()
        self.step += 1
        return losses

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.ema_decay
        if self.cfg.ema_warmup:
            # the generator's update number, 1 for its first: it waits through d_warmup only while a D trains
            waited = self.cfg.d_warmup if self.D is not None and self.cfg.prior_weight > 0 else 0
            update = self.step - waited + 1
            decay = min(decay, (1 + update) / (10 + update))
        for ema, live in zip(self.G_ema.parameters(), self.G.parameters()):
            ema.lerp_(live.detach(), 1 - decay)
        for ema, live in zip(self.G_ema.buffers(), self.G.buffers()):
            ema.copy_(live)

    # validation, samples, logs -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Optional[float]:
        if self.p.val_set is None:
            return None
        clean = centre_crops(self.p.val_set.images, self.p.val_size, self.device)
        g_in, restored = restore_degraded(self.G_ema, self.p.process, clean, sigma01=self.cfg.val_sigma,
                                          seed=self.cfg.seed)
        self.val_psnr = round(float(psnr(restored, clean).mean()), 3)
        self.val_step = self.step
        self.val_psnr_input = round(float(psnr(g_in, clean).mean()), 3) if g_in.shape == clean.shape else None
        return self.val_psnr

    @torch.no_grad()
    def write_samples(self) -> Optional[Path]:
        self._clear_replaced_run("samples")
        process = self.p.process
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        shape = (self.p.model.channels, self.cfg.crop, self.cfg.crop)
        if not process.conditioned:
            images = sample_from_noise(self.G_ema, process, 16, shape, seed=self.cfg.seed, device=self.device)
            write_image(path, grid(images, nrow=4))
            return path
        if self.p.val_set is not None:
            clean = centre_crops(self.p.val_set.images, self.p.val_size, self.device)
        else:
            clean = centre_crops(self.p.train_set.images[:8], self.cfg.crop, self.device)
        g_in, restored = restore_degraded(self.G_ema, process, clean, sigma01=self.cfg.val_sigma, seed=self.cfg.seed)
        rows = torch.cat([g_in, restored, clean]) if g_in.shape == clean.shape else torch.cat([restored, clean])
        write_image(path, grid(rows, nrow=clean.shape[0]))
        return path

    def log_row(self, losses: dict[str, float], validated: bool) -> None:
        if not self.dist.main:
            return
        path = self.out / "log.csv"
        new = not path.exists()
        row = {"step": self.step, "seconds": round(self.elapsed(), 2), "lr_g": self.opt_G.param_groups[0]["lr"],
               **{k: round(v, 6) for k, v in losses.items() if k in LOG_FIELDS}}
        if validated:
            row["val_psnr"], row["val_psnr_input"] = self.val_psnr, self.val_psnr_input
        with io.open_for_append(path, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _truncate_log(self) -> None:
        """On resume, drop log lines written after the checkpoint."""
        path = self.out / "log.csv"
        if not self.dist.main or not path.exists():
            return
        if path.is_symlink():  # not the log this run wrote (an --overwrite start): a new log replaces the link
            path.unlink()
            return
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) <= self.step]

        def rewrite(tmp: Path) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

        io.atomic_write(path, rewrite)

    # main loop ---------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "config.json", self.run_config())
            self._truncate_log()
        bar = None
        if self.dist.main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                       file=sys.stderr)
        started = last_model = _clock()
        first_step = self.step
        done, self.timed_out = self.step >= cfg.steps, False
        with StopRequest("saving last.pt and model.pt", enabled=not self.dist.active) as stop:
            while not done:
                written = self._one_step(bar, started, last_model)
                if written is not None:  # a model_every model was written now
                    last_model = written
                done = self.step >= cfg.steps or self.timed_out
                if stop.asked and not done:
                    if bar is not None:
                        bar.close()  # the lines below start on a line of their own
                    self.interrupted = True  # in the model's record: it did not reach its steps
                    self.save_checkpoint(kept=False)
                    self.save_model()
                    write_json(self.out / "record.json", self.record())  # not the previous segment's
                    print(f"saved step {self.step}: {self.out / 'last.pt'} (resume with --resume) and "
                          f"{self.out / 'model.pt'}", file=sys.stderr, flush=True)
                    raise KeyboardInterrupt
        if bar is not None:
            bar.close()
        if self.val_psnr is None and self.dist.main:
            self.validate()
        model_path = None
        if self.dist.main:
            model_path = self.save_model()
            write_json(self.out / "record.json", self.record())
        if self.dist.active:
            dist.barrier()
        return {"steps": self.step, "steps_this_run": self.step - first_step, "final_losses": self.last, "val_psnr": self.val_psnr, "run_dir": str(self.out),
                "model": str(model_path) if model_path else None}

    def _one_step(self, bar, started: float, last_model: float) -> Optional[float]:
        """One training step with its logging, validation, samples and files; the time of a ``model_every`` model
        written now, else None. Sets :attr:`timed_out` when the time box is spent."""
        cfg = self.cfg
        written = None
        losses = self.train_step()
        self.last = {k: round(v, 6) for k, v in losses.items()}
        if "d_real" in losses:  # without the R1 term, which would inflate it on every lazy_reg-th step
            self.recent_d_loss.append(losses["d_real"] + losses["d_fake"])
        if not all(math.isfinite(v) for v in losses.values()):
            raise UserError(f"training diverged at step {self.step} (losses {self.last}); lower the learning rates "
                            f"or lmbda, or resume from an earlier checkpoint.")
        now = _clock()
        # every rank decides from rank 0's clock, so that DDP processes stop at the same step
        self.timed_out = bool(cfg.minutes) and self._agree(now - started >= 60 * cfg.minutes)
        done = self.step >= cfg.steps or self.timed_out
        if not done and cfg.model_every and now - last_model >= cfg.model_every and self.dist.main:
            self.save_model()
            written = now
        if self.step in cfg.model_at_steps and self.dist.main:
            self.save_model(snapshot_name(self.step))
        validated = False
        if self.dist.main and (done or (cfg.val_every and self.step % cfg.val_every == 0)):
            validated = self.validate() is not None
        if self.dist.main and (done or (cfg.sample_every and self.step % cfg.sample_every == 0)):
            self.write_samples()
        if done or (cfg.log_every and self.step % cfg.log_every == 0) or validated:
            self.log_row(losses, validated)
        if done or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
            self.save_checkpoint()
        if bar is not None:
            shown = {k: f"{v:.4g}" for k, v in losses.items() if k in ("g_loss", "fidelity", "d_loss")}
            if self.val_psnr is not None:
                shown["val"] = f"{self.val_psnr:.2f}dB"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
        return written


def _average_gradients(module: nn.Module) -> None:
    """All-reduce mean of a module's gradients (modules trained outside DDP wrappers)."""
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


# ------------------------------------------------------------------------------------------------ entry point


def residual_in_band(real: torch.Tensor, fake: torch.Tensor, sigma_y: torch.Tensor, below: float,
                     above: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m r_real, m r_fake)`` with ``m = [2 above <= sigma_y < 2 below]`` per sample (sigma_y in [-1, 1] units,
    ``below`` and ``above`` in [0, 1] ones; ``below`` 0: no upper end); unchanged when both are 0."""
    if not below and not above:
        return real, fake
    keep = sigma_y >= 2 * above
    if below:
        keep = keep & (sigma_y < 2 * below)
    keep = keep.to(real.dtype).view(-1, *([1] * (real.dim() - 1)))
    return real * keep, fake * keep


def renoise_both(real: torch.Tensor, fake: torch.Tensor, sigma_y: Optional[torch.Tensor],
                 fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(real + f sigma_y e1, fake + f sigma_y e2)`` with fresh unit noise e1, e2 per sample; unchanged when f = 0."""
    if not fraction:
        return real, fake
    std = fraction * sigma_y.view(-1, *([1] * (real.dim() - 1)))
    return real + std * torch.randn_like(real), fake + std * torch.randn_like(fake)


def snapshot_name(step: int) -> str:
    """File name of the model written at ``step`` (``train.model_at_steps``)."""
    return f"model_step{step:07d}.pt"


#: What a run writes into its folder; a new run refuses a folder holding any of them (unless overwrite).
RUN_FILES = ("config.json", "record.json", "log.csv", "model.pt", "last.pt", "checkpoints", "samples")


def train(data: str | Path, out: str | Path, *, process: ProcessConfig | dict | None = None,
          train: TrainConfig | dict | None = None, size: Optional[str] = None, model: Optional[dict] = None,
          val: Optional[str | Path] = None, resume: bool = False, init_from: Optional[str | Path] = None,
          device: str | torch.device = "cpu", command: str = "", progress: bool = True,
          code_operator: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """Train an RGM generator on a folder of images; write ``out`` (checkpoints, log.csv, samples, model.pt).

    :param data: folder of training images.
    :param out: run folder.
    :param process: forward process (:class:`ProcessConfig` or dict).
    :param train: training arguments (:class:`TrainConfig` or dict).
    :param size: generator size (``pnprgm.rgm.unet.SIZES``); None: ``small`` for a new run, the model's own with
        ``resume`` or ``init_from`` (where a size that differs from it is an error).
    :param model: generator config overrides (with ``resume``, each must equal the checkpoint's).
    :param val: folder of validation images (default: a held-out fraction of ``data``).
    :param resume: continue from ``out/last.pt`` (the checkpoint's configuration is used; a given process, model,
        size or train setting that differs from it is an error, except the train fields in ``RESUMABLE_CHANGES``).
    :param overwrite: start a new run in ``out`` although it holds files of the names a run writes (another run's,
        or the user's); default: refuse before any work.
    :param init_from: start the generator from this model (a shipped name, a model.pt or a checkpoint) and keep
        its architecture: fine-tuning. The discriminator and the optimisers start afresh.
    :param device: torch device (under torchrun, CUDA ranks use their local GPU).
    :param command: command line to record.
    :param progress: progress bar.
    :param code_operator: the ``module:callable`` or ``file.py:callable`` operator the user typed (``--operator``):
        the only code an operator process may import. A process operator naming code that comes from a checkpoint
        or a config file is refused unless it equals this one.
    :returns: summary (steps, final losses, validation PSNR, paths).
    """
    process_given, given_train = process, _given_fields(train, TrainConfig)
    process = process if isinstance(process, ProcessConfig) else build_strict(ProcessConfig, process or {}, what="process")
    train_cfg = train if isinstance(train, TrainConfig) else build_strict(TrainConfig, train or {}, what="train")
    io.check_outdir_name(out, "--out", "runs/my-run")
    dist_info = init_distributed(device)
    out = Path(out)
    if init_from is not None and resume:
        raise UserError("--init-from starts a new run and --resume continues one; give only one of them.")
    if overwrite and resume:
        raise UserError("--overwrite starts a new run and --resume continues the one in --out; give only one of them.")
    if size is not None:
        SIZES.get(size)  # an unknown size is named before any work
    if init_from is not None:  # before the advice to pass --overwrite, which would then be refused
        replaced = [out / "last.pt", out / "model.pt", *(out / snapshot_name(n) for n in train_cfg.model_at_steps),
                    *(path for folder, pattern in REPLACED_FILES.values() for _, path in ckpt.run_files(out / folder, pattern))]
        model_file.refuse_replacing_initial([init_from], replaced)
    content = None
    if resume:
        if not (out / "last.pt").exists() and (out / "config.json").exists():
            raise UserError(f"{out} holds a run stopped before its first checkpoint (config.json but no last.pt): "
                            f"there is nothing to resume; start it again with --overwrite.")
        content = ckpt.load_checkpoint(out / "last.pt", map_location="cpu")
        saved = content["config"]
        process = _resumed_process(saved["process"], process_given)
        check_operator_files(saved.get("operator_files"), process, when="the run resumes with the file it began with")
        train_cfg = _merge_resumed_train(saved["train"], train_cfg, given_train)
        _refuse_model_changes(saved["model"], model or {}, size, "the checkpoint's generator", compare_overrides=True)
        _refuse_val_change(saved.get("data", {}), data, val, train_cfg.val_fraction)
        model = dict(saved["model"])
        size = None  # every field comes from the saved model config
        model.pop("arch", None)
    elif (out / "last.pt").exists() and not overwrite:
        raise UserError(f"{out} already holds a run (last.pt); add --resume to continue it, --overwrite to start a new "
                        f"run in its place, or choose another --out.")
    else:
        refuse_taken(out, RUN_FILES + tuple(snapshot_name(n) for n in train_cfg.model_at_steps), overwrite=overwrite)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (it is created).")
    if dist_info.main:  # one probe: another rank's probe would remove the folder under this one's feet
        check_writable(out / "config.json", option="--out")  # before the data are decoded, not at the first write
    initial, converted = None, False
    if init_from is not None:
        initial = model_file.read_initial_weights(init_from)
        if initial.arch != "unet":  # pnprgm train builds RGM's UNet generator; the others have their own trainers
            other = {"drunet": "a DRUNet (a plain denoiser of the GPU recipe): fine-tune it with pnprgm "
                               f"train-denoisers --init-from {init_from}"}.get(
                initial.arch, f"a {initial.arch} generator, which pnprgm train cannot fine-tune")
            raise UserError(f"--init-from {init_from} is {other}; pnprgm train starts from its own UNet generators "
                            f"(pnprgm models lists the unet-* ones).")
        resolved = resolve_process(process)
        trained = (initial.process.get("name"), initial.config.get("T"))
        if initial.config.get("conditioning") == "time" and trained != (resolved.name, resolved.T):
            # a time-conditioned generator models one process with its number of levels (rgm-sr: sr, T=7)
            raise UserError(f"--init-from {init_from} was trained on the {trained[0]} process with T={trained[1]} and "
                            f"this run's is {resolved.name} with T={resolved.T}; add --forward {trained[0]} --T "
                            f"{trained[1]} to fine-tune it.")
        wanted = resolve_model(None, {}, resolved, int(initial.config["channels"])).conditioning
        if initial.config.get("conditioning") != wanted:
            raise UserError(f"--init-from {init_from} is a {initial.config.get('conditioning')}-conditioned model "
                            f"(process {initial.process.get('name', '?')}) and this run's process needs {wanted}; "
                            f"fine-tune it with the process it was trained for.")
        types = field_types(GeneratorConfig)
        typed = {k: coerce(v, types[k], name=f"model.{k}") if k in types else v for k, v in (model or {}).items()}
        added = {k: v for k, v in typed.items() if k in ADDED_INPUTS and v and not initial.config.get(k)}
        plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731 (stored configs hold lists)
        clashing = sorted(k for k, v in typed.items() if k not in added and plain(initial.config.get(k, False)) != plain(v))
        if clashing:
            hint = "" if set(clashing) & set(ADDED_INPUTS) else " (model.noise_input=true may be added)"
            raise UserError(f"the architecture comes from --init-from {init_from}; remove the model settings "
                            f"{', '.join('model.' + k for k in clashing)}{hint}.")
        _refuse_model_changes(initial.config, model or {}, size, f"--init-from {init_from}", compare_overrides=False)
        model, size = {**initial.config, **added}, None
        if train_cfg.channels is None:  # fine-tuning a gray model on colour photos converts them, as its own run did
            train_cfg = dataclasses.replace(train_cfg, channels=int(initial.config["channels"]))
            converted = train_cfg.channels == 1
    elif size is None:
        size = "small"
    prepared = prepare(data, process=process, train=train_cfg, size=size, model=model, val=val,
                       device=dist_info.device, code_operator=code_operator)
    if converted and detect_channels(prepared.train_set.files) == 3:
        warnings.warn(f"--init-from {init_from} is a gray model: the colour photos of {data} are converted to gray "
                      f"(BT.601 luma) for it.", stacklevel=2)
    trainer = Trainer(prepared, out, dist_info, command=command, progress=progress)
    if overwrite and not resume and dist_info.main:
        # the replaced run's resume point goes once the new run's data, settings and networks are known good: a new
        # run killed before its first checkpoint must not leave --resume continuing the old one under the new
        # config.json. Its models, checkpoints and samples each go when the new run writes its first of that kind
        # (so that a new run that fails early leaves the old model; checkpoints of both would mix, and
        # keep_checkpoints would prune the new ones as the oldest).
        (out / "last.pt").unlink(missing_ok=True)
        trainer.replaced_pending = set(REPLACED_FILES)
    if content is not None:
        saved_files = [(f["name"], f["sha256"]) for f in content["config"]["data"]["files"]]
        now = [(f["name"], f["sha256"]) for f in prepared.train_set.record(prepared.data_root)]
        if saved_files != now:
            raise UserError(f"the training images in {data} differ from those of the checkpoint; resume with the "
                            f"same data folder (a run started before 2026-12-06 with a --seed other than 0 held out "
                            f"other photos, since the held-out 10 % now ignores the seed: start a new run).")
        trainer.load(content)
        if trainer.step >= train_cfg.steps:
            warnings.warn(f"the checkpoint is already at step {trainer.step} >= steps {train_cfg.steps}", stacklevel=2)
    elif initial is not None:
        trainer.start_from(initial)
    summary = trainer.run()
    # only a finished run gets here: a failure may be this rank's alone (only rank 0 writes), and destroying the
    # group while other ranks wait in a collective can hang NCCL before the error is shown, so after an error the
    # process exit cleans up
    leave_distributed(dist_info)  # the run's group goes with it: torch warns at exit about one left standing
    return summary


def _given_fields(config: Any, cls: type) -> set[str]:
    """The fields a caller set: a mapping's keys, or a config instance's fields that differ from the defaults."""
    if config is None:
        return set()
    if isinstance(config, cls):
        defaults = cls()
        return {f.name for f in dataclasses.fields(cls) if getattr(config, f.name) != getattr(defaults, f.name)}
    return set(config)


def _resumed_process(saved: dict, given: dict | ProcessConfig | None) -> ProcessConfig:
    """The checkpoint's process; a given setting (``--noise``, ``--operator``, ``--forward``...) must agree with it."""
    saved_cfg = build_strict(ProcessConfig, saved, what="process")
    fields = _given_fields(given, ProcessConfig)
    if fields:
        values = to_dict(given) if isinstance(given, ProcessConfig) else dict(given)
        # another process or operator is named before the merged settings are resolved (which would object to
        # their mixture in other words)
        changed = sorted(k for k in ("name", "operator") if k in fields and values[k] != getattr(saved_cfg, k))
        noise = sorted(k for k in ("noise_min", "noise_max") if k in fields and values[k] is not None)
        if not changed and noise and saved_cfg.name in ("ddpm", "sr"):
            raise UserError(f"the run's {saved_cfg.name} process takes its noise from RGM's schedule; resume without "
                            f"--noise.")
        if not changed:
            merged = resolve_process(build_strict(ProcessConfig, {**saved, **{k: values[k] for k in fields}}, what="process"))
            resolved = resolve_process(saved_cfg)
            changed = sorted(k for k in fields if not _same(getattr(merged, k), getattr(resolved, k)))
        if changed:
            raise UserError(f"cannot change the forward process when resuming (the checkpoint has "
                            f"{', '.join(f'process.{k}={getattr(saved_cfg, k)!r}' for k in changed)}); resume with the "
                            f"run's own settings, or start a new run in another --out.")
    return saved_cfg


def _same(a: Any, b: Any) -> bool:
    """Equal, numbers to float rounding (``--noise 2.55/255`` is the 0.01 a run recorded)."""
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _refuse_model_changes(source: dict, overrides: dict, size: Optional[str], owner: str, *,
                          compare_overrides: bool) -> None:
    """A resumed or fine-tuned generator keeps its architecture: a ``--size`` or model setting that differs from
    ``source`` (a model config) is an error, not ignored. ``compare_overrides`` False: only ``size`` is compared
    (``--init-from`` checks its model settings itself, since some inputs may be added)."""
    types = field_types(GeneratorConfig)
    plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731 (stored configs hold lists)
    if size is not None:  # a size's field that a model setting overrides is that setting's to agree on
        differing = sorted(k for k, v in SIZES.get(size).items() if k not in overrides and plain(source.get(k)) != plain(v))
        if differing:
            raise UserError(f"the architecture comes from {owner}, which is not the {size!r} size ("
                            f"{', '.join(f'{k}={source.get(k)!r}' for k in differing)}); remove --size.")
    if not compare_overrides:
        return
    if set(overrides) - set(types):
        build_strict(GeneratorConfig, dict(overrides), what="model")  # names the unknown keys, as a new run does
    for key, value in overrides.items():
        typed = coerce(value, types[key], name=f"model.{key}")
        if plain(source.get(key)) != plain(typed):
            raise UserError(f"cannot change model.{key} when resuming (the checkpoint has {source.get(key)!r}); remove it.")


def _refuse_val_change(saved_data: dict, data: str | Path, val: Optional[str | Path], val_fraction: float) -> None:
    """A resumed run validates on the photos it began with: ``--val`` changes the split of ``--data``."""
    saved_val, saved_root = saved_data.get("val_root"), saved_data.get("root")
    if saved_val is None or saved_root is None:
        return
    # recorded since 2026-12-07; before, a --val folder shows as a val_root other than the data root
    had_val = saved_data.get("val_given", Path(saved_val).resolve() != Path(saved_root).resolve())
    if val is None and had_val:
        raise UserError(f"the run validated on {saved_val}; resume with --val {saved_val}.")
    if val is not None and not had_val:
        raise UserError(f"the run held out {val_fraction:.0%} of {saved_root} for validation; resume without --val.")
    if val is not None and Path(val).resolve() != Path(saved_val).resolve():
        raise UserError(f"the run validated on {saved_val}, not {val}; resume with --val {saved_val}.")


#: What an earlier run wrote, by kind: each kind goes when the new run writes its first file of that kind (plain
#: files of exactly these names: a user's ``checkpoints/step_best.pt`` stays).
REPLACED_FILES = {
    "model": ("", r"model\.pt|record\.json|model_step\d{7,}\.pt"),
    "checkpoint": ("checkpoints", r"step_\d{7,}\.pt"),
    "samples": ("samples", r"step_\d{7,}\.png"),
}


def remove_replaced_files(out: Path, kind: str) -> None:
    """Delete the files of ``kind`` (:data:`REPLACED_FILES`) an earlier run wrote into ``out``."""
    folder, pattern = REPLACED_FILES[kind]
    for _, path in ckpt.run_files(out / folder, pattern):
        path.unlink()


def remove_resume_files(out: Path) -> list[Path]:
    """Delete from a finished run's folder what only resuming or watching it needs (``last.pt``, ``config.json``,
    ``checkpoints/step_NNNNNNN.pt``, ``samples/step_NNNNNNN.png``), and those two folders where that empties them:
    a lent GPU machine returns 8 files of 16 MiB at most. A user's own files (``checkpoints/step_best.pt``) stay."""
    out = Path(out)
    removed = [path for _, path in ckpt.run_files(out, r"last\.pt|config\.json")]
    for kind in ("checkpoint", "samples"):
        folder, pattern = REPLACED_FILES[kind]
        removed += [path for _, path in ckpt.run_files(out / folder, pattern)]
    for path in removed:
        path.unlink()
    for kind in ("checkpoint", "samples"):
        folder = out / REPLACED_FILES[kind][0]
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _merge_resumed_train(saved: dict, given: TrainConfig, given_fields: set[str]) -> TrainConfig:
    """The checkpoint's train config, with the few fields that may change on resume taken from ``given``; another
    given field that differs from the checkpoint's is an error."""
    saved_cfg = build_strict(TrainConfig, {**LEGACY_TRAIN, **saved}, what="train")
    defaults = TrainConfig()
    explicit = bool(given_fields)
    saved_cfg = dataclasses.replace(saved_cfg, **{n: getattr(given if explicit else defaults, n) for n in PER_PROCESS})
    if not explicit:
        return saved_cfg
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name in given_fields and f.name not in PER_PROCESS and getattr(given, f.name) != getattr(saved_cfg, f.name)]
    fixed = [name for name in changed if name not in RESUMABLE_CHANGES]
    if fixed:
        raise UserError(f"cannot change {', '.join(fixed)} when resuming (the checkpoint has "
                        f"{', '.join(f'{n}={getattr(saved_cfg, n)!r}' for n in fixed)}); only {', '.join(RESUMABLE_CHANGES)} may change.")
    return dataclasses.replace(saved_cfg, **{n: getattr(given, n) for n in changed})
