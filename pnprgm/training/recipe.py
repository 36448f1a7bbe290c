"""Time-boxed training of the default denoisers (colour and gray DRUNet) on one GPU: the GPU recipe.

One process trains both models, interleaving their steps (``gray_share`` of the steps go to the gray model), so
that a run stopped at any moment has improved both. Per step: a batch of random crops (worker processes), a noise
std per crop drawn uniformly in ``[noise_min, noise_max]``, ``y = x + sigma n``, loss ``mean |D(y, sigma) - x|``
(L1, as DRUNet), Adam with a linear warm-up and a cosine decay over the *time* budget, an EMA of the weights.
bf16 autocast where the hardware has bf16 (CUDA, CPUs with AVX512-BF16 or AMX), channels-last, cuDNN autotuning on
CUDA. Every ``save_every`` seconds and at the end each model's EMA weights are written (float16 storage, the
``pnprgm-rgm-model`` format) over the previous file, with the validation PSNR at 15, 25 and 50 /255 in their records, so a killed run still leaves the latest models.

The training photos come from a pack folder (``scripts/pack_gpu.sh``): ``train/`` and ``val/`` images and a
``manifest.json`` that names the source photos with their sha256; the records carry that list.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from pnprgm.config import check_seed, hashed_seed, to_dict
from pnprgm.device import PRECISIONS, resolve_precision
from pnprgm.errors import UserError, first_line
from pnprgm import io
from pnprgm.io import check_writable, read_json, refuse_taken, sha256_file
from pnprgm.metrics.fidelity import psnr
from pnprgm.rgm.drunet import DRUNET_SIZES, DRUNetConfig, DRUNetGenerator
from pnprgm.rgm.model_file import InitialWeights, read_initial_weights, refuse_replacing_initial
from pnprgm.training.interrupt import StopRequest, ignore_interrupts_in_worker
from pnprgm.training.data import HELD_OUT_FRACTION, HELD_OUT_SEED, convert_channels, load_images, scan_folder, split_validation, \
    to_unit

#: Validation noise levels (/255), the issue's quality bar.
VAL_LEVELS = (15, 25, 50)
#: What a run writes into its folder.
OUTPUT_FILES = ("drunet-denoiser-color.pt", "drunet-denoiser-gray.pt", "recipe_log.jsonl")
#: Held-out share of a plain photo folder and its seed (the rule of ``pnprgm train`` and ``scripts/pack_gpu.sh``).
VAL_FRACTION, VAL_SEED = HELD_OUT_FRACTION, HELD_OUT_SEED


@dataclass(frozen=True)
class RecipeConfig:
    """Settings of a time-boxed denoiser training run.

    :param minutes: training time (the run stops itself after it; saving and validation come on top).
    :param size: DRUNet size (:data:`pnprgm.rgm.drunet.DRUNET_SIZES`).
    :param batch_size: crops per step.
    :param crop: crop size in pixels.
    :param noise_min: smallest training noise std (/255 units divided by 255: [0, 1] units).
    :param noise_max: largest training noise std ([0, 1] units).
    :param lr: peak Adam learning rate.
    :param lr_final: learning rate at the end of the time budget (cosine).
    :param warmup_steps: linear warm-up steps.
    :param ema_decay: EMA decay (ramped as ``min(decay, (1 + k) / (10 + k))``).
    :param gray_share: fraction of the steps that train the gray model (0: colour only, 1: gray only).
    :param save_every: seconds between model files.
    :param report_every: seconds between throughput lines.
    :param workers: data-loading worker processes (0: in the main process; None: :func:`default_workers`).
    :param val_crop: validation centre-crop size.
    :param val_images: validation images used.
    :param seed: seed of the weights, crops and noise.
    :param residual: residual learning (the network predicts the noise); measured on the CPU with a 1 M-parameter
        DRUNet, 400 steps of batch 8: 28.3 dB at sigma 25 against 25.0 dB without (peak lr 2e-4), and 29.9 / 31.1
        dB with residual learning at lr 5e-4 / 1e-3.
    :param jpeg_share: fraction of the training crops re-encoded as JPEG before the noise is added, so that the
        clean image may carry JPEG's 8x8 blocks and chroma smearing as most users' photos do. Measured on 12
        held-out photos at 15/255 with the GPU-trained default: its margin over BM3D fell from +0.33 dB on the
        photos as stored to +0.12 dB once they were saved at JPEG quality 75.
    :param jpeg_quality: (lowest, highest) JPEG quality, drawn uniformly per re-encoded crop (4:2:0 chroma, as
        cameras and Pillow save by default).
    :param precision: the training forward pass: ``bf16`` (autocast; the loss, the weights and validation stay
        float32), ``float32``, or ``auto``: bf16 where the hardware computes it natively
        (:func:`pnprgm.device.native_bf16`), else float32. Measured on 1 core of an AMD EPYC with AVX512-BF16, one step of the
        default size at batch 8 x 128^2: 4.7 s in float32, 4.3 s with channels-last, 2.2 s with bf16 as well.
    :param clip_grad: gradient-norm clip (guards against a rare spike; 0 disables; at initialisation the norm is
        about 1 for the default size and the L1 loss).
    """

    minutes: float = 8.0
    size: str = "default"
    batch_size: int = 64
    crop: int = 128
    noise_min: float = 0.0
    noise_max: float = 55 / 255
    lr: float = 4e-4
    lr_final: float = 1e-6
    warmup_steps: int = 200
    ema_decay: float = 0.999
    gray_share: float = 0.4
    save_every: float = 60.0
    report_every: float = 30.0
    workers: Optional[int] = None
    val_crop: int = 256
    val_images: int = 12
    seed: int = 0
    clip_grad: float = 5.0
    residual: bool = True
    jpeg_share: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    precision: str = "auto"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise UserError(f"--minutes must be a positive number; got {self.minutes}.")
        if self.size not in DRUNET_SIZES:
            raise UserError(f"unknown DRUNet size {self.size!r}; choose one of {', '.join(DRUNET_SIZES)}.")
        if self.batch_size < 1 or self.crop < 32 or self.crop % 8:
            raise UserError("batch size must be >= 1 and the crop a multiple of 8 of at least 32.")
        if not 0 <= self.noise_min <= self.noise_max <= 1 or self.noise_max == 0:
            raise UserError(f"--noise must be a range 0 <= MIN <= MAX <= 1 with MAX > 0 (a denoiser trained at noise 0 "
                            f"learns nothing); got {self.noise_min}:{self.noise_max}.")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.lr_final) and 0 <= self.lr_final):
            raise UserError(f"--lr must be a learning rate > 0 (and lr_final >= 0); got {self.lr}.")
        if not 0 <= self.gray_share <= 1:
            raise UserError(f"gray_share must be in [0, 1]; got {self.gray_share}.")
        if not (math.isfinite(self.save_every) and self.save_every > 0):
            raise UserError(f"--save-every must be a number of seconds > 0; got {self.save_every}.")
        if self.report_every <= 0 or (self.workers is not None and self.workers < 0):
            raise UserError("report_every must be > 0 and --workers >= 0.")
        check_seed(self.seed, "--seed")
        if not 0 <= self.jpeg_share <= 1:
            raise UserError(f"--jpeg-share must be in [0, 1]; got {self.jpeg_share}.")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise UserError(f"--jpeg-quality must be MIN:MAX with 1 <= MIN <= MAX <= 100; got {low}:{high}.")


def jpeg_round_trip(patch: torch.Tensor, quality: int) -> torch.Tensor:
    """A (C, H, W) image (uint8, or floating point in [0, 1]) saved as JPEG at ``quality`` (Pillow's default 4:2:0
    chroma for colour) and decoded again, in the same dtype."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(io.image_to_uint(to_unit(patch))).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    decoded = np.array(Image.open(buffer))
    decoded = torch.from_numpy(decoded.reshape(decoded.shape[0], decoded.shape[1], -1)).permute(2, 0, 1).contiguous()
    return decoded if patch.dtype == torch.uint8 else to_unit(decoded).to(patch.dtype)


def crop_seed(seed: int, worker: int) -> int:
    """The seed of data-loading worker ``worker``'s crops: one stream per (run seed, worker), none another's (seeds of
    the form ``seed * 1000 + worker`` gave worker 1 the noise stream's ``seed + 1``)."""
    return hashed_seed(f"recipe/crops/{seed}/{worker}")


def noise_seed(seed: int) -> int:
    """The seed of the training noise of a run seeded ``seed``."""
    return hashed_seed(f"recipe/noise/{seed}")


class RandomCrops(torch.utils.data.IterableDataset):
    """Endless random ``crop`` x ``crop`` crops (in the stored dtype: uint8 or float16) of in-memory images with a
    random dihedral transform (flips and 90-degree rotations), a ``jpeg_share`` of them re-encoded as JPEG at a
    quality drawn from ``jpeg_quality`` (:func:`jpeg_round_trip`); each worker has its own seeded generator."""

    def __init__(self, images: list[torch.Tensor], crop: int, seed: int, jpeg_share: float = 0.0,
                 jpeg_quality: tuple[int, int] = (60, 95)):
        super().__init__()
        self.images, self.crop, self.seed = images, crop, seed
        self.jpeg_share, self.jpeg_quality = jpeg_share, jpeg_quality
        # Sample images in proportion to their area so that every pixel is equally likely to be seen.
        self.weights = torch.tensor([float(im.shape[1] * im.shape[2]) for im in images])

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = torch.Generator().manual_seed(crop_seed(self.seed, worker))
        c = self.crop
        while True:
            index = int(torch.multinomial(self.weights, 1, generator=rng))
            image = self.images[index]
            top = int(torch.randint(0, image.shape[1] - c + 1, (1,), generator=rng))
            left = int(torch.randint(0, image.shape[2] - c + 1, (1,), generator=rng))
            patch = image[:, top:top + c, left:left + c]
            k = int(torch.randint(0, 8, (1,), generator=rng))
            patch = torch.rot90(patch, k % 4, (1, 2))
            if k >= 4:
                patch = patch.flip(2)
            # After the rotation: the JPEG grid (8x8 luma, 16x16 chroma blocks) and the quantisation tables, which
            # are not symmetric, then sit as a camera's do on the photo as seen
            if self.jpeg_share > 0 and float(torch.rand((), generator=rng)) < self.jpeg_share:
                low, high = self.jpeg_quality
                patch = jpeg_round_trip(patch, int(torch.randint(low, high + 1, (1,), generator=rng)))
            yield patch.contiguous()


class Member:
    """One model being trained (colour or gray): network, EMA, optimiser, counters."""

    def __init__(self, name: str, channels: int, cfg: RecipeConfig, device: torch.device,
                 start: Optional[InitialWeights] = None):
        self.name, self.channels = name, channels
        self.config = DRUNetConfig(channels=channels, residual=cfg.residual, **DRUNET_SIZES[cfg.size])
        self.init_from: Optional[dict[str, Any]] = None
        state = None
        if start is not None:
            from pnprgm.config import build_strict

            if start.arch != "drunet":
                raise UserError(f"--init-from {start.provenance['source']} is not a {channels}-channel DRUNet model file; "
                                f"give one written by this recipe (pnprgm models lists the shipped ones).")
            self.config = build_strict(DRUNetConfig, start.config, what="drunet model")  # the architecture comes with it
            state = start.state_dict
            self.init_from = {key: start.provenance[key] for key in ("source", "sha256", "steps", "steps_total",
                                                                     "init_from", "val_psnr_by_sigma255")}
        self.net = DRUNetGenerator(self.config)
        if state is not None:
            self.net.load_state_dict(state)  # float16 storage loads into the float32 parameters
        # channels-last: cuDNN's fast layout, and 8 % faster on a CPU too (oneDNN)
        self.net = self.net.to(device, memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.net).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.999),
                                    fused=device.type == "cuda")
        self.steps = 0
        self.loss_sum: float | torch.Tensor = 0.0
        self.loss_count = 0
        self.last_l1: Optional[float] = None
        self.val: dict[str, float] = {}

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        decay = min(decay, (1 + self.steps) / (10 + self.steps))
        for ema, live in zip(self.ema.parameters(), self.net.parameters()):
            ema.lerp_(live.detach(), 1 - decay)


def read_initial_models(sources: Sequence[str]) -> dict[int, InitialWeights]:
    """``{channels: weights}`` of the ``--init-from`` models (shipped names or files), each file read once."""
    chosen: dict[int, InitialWeights] = {}
    for source in sources:
        model = read_initial_weights(source)
        if model.channels not in (1, 3):
            raise UserError(f"--init-from takes colour (3) and gray (1) models; {source} has {model.channels} channels.")
        if model.channels in chosen:
            raise UserError(f"--init-from: two {model.channels}-channel models ({chosen[model.channels].provenance['source']}, "
                            f"{source}); give one of each.")
        chosen[model.channels] = model
    return chosen


def _lr_factor(cfg: RecipeConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    floor = cfg.lr_final / cfg.lr
    return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def read_manifest(pack: Path) -> dict[str, Any]:
    """The pack's ``manifest.json`` (``{"pack": {...}, "train": [entry, ...], "val": [...]}``, each entry naming a
    source photo and its sha256), {} when there is none. Another file of that name is an error in a pack (``train/``
    and ``val/``) and ignored, with a warning, beside a plain folder of photos (it is not the pack script's)."""
    path = pack / "manifest.json"
    if not path.is_file():
        return {}
    try:
        content = read_json(path)
    except (OSError, ValueError) as err:
        content, why = None, first_line(err, 80)
    else:
        why = "not a pack manifest: {\"pack\": ..., \"train\": [...], \"val\": [...]}"
    entries_fit = lambda key: isinstance(content.get(key, []), list) and all(  # noqa: E731
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("sha256"), str)
        for e in content.get(key, []))
    if isinstance(content, dict) and isinstance(content.get("pack"), dict) and entries_fit("train") and entries_fit("val"):
        return content
    if (pack / "train").is_dir() and (pack / "val").is_dir():
        raise UserError(f"{path} is not a readable pack manifest ({why}); rebuild the pack with scripts/pack_gpu.sh.")
    warnings.warn(f"{path} is not a pack manifest ({why}): ignored; the records list the photos themselves.",
                  stacklevel=2)
    return {}


def default_workers() -> int:
    """Data-loading workers when none are given: min(8, cores - 2), at least 1 (enough to keep one GPU fed, and
    two cores left to the training process)."""
    return max(1, min(8, (os.cpu_count() or 2) - 2))


def train_denoisers(pack: str | Path, out: str | Path, cfg: RecipeConfig, *, device: str | torch.device = "cuda",
                    init_from: Sequence[str] = (), command: str = "", overwrite: bool = False,
                    echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the colour and gray denoisers on a pack folder for ``cfg.minutes``; write model files into ``out``.

    :param pack: folder with ``train/`` (and optionally ``val/``) images and ``manifest.json``.
    :param out: output folder (created); holds ``drunet-denoiser-color.pt``, ``drunet-denoiser-gray.pt`` and
        ``recipe_log.jsonl`` and nothing else.
    :param cfg: settings.
    :param device: torch device.
    :param init_from: models (shipped names or files, at most one colour and one gray) to continue training from,
        matched by their channels: architecture and weights are kept, the optimiser and schedule start afresh; the
        record keeps the lineage.
    :param command: the command line, for the records.
    :param overwrite: start although ``out`` already holds files of the names the run writes (default: refuse before
        any work, so a run never replaces models of an earlier one, or a user's files).
    :param echo: where progress lines go.
    :returns: summary (steps, validation PSNRs, files).
    """
    from pnprgm.device import resolve_device

    io.check_outdir_name(out, "--out", "runs/denoisers")
    device = resolve_device(device)
    pack, out = Path(pack), Path(out)
    refuse_replacing_initial(init_from, [out / name for name in OUTPUT_FILES])  # before the advice to pass --overwrite
    refuse_taken(out, OUTPUT_FILES, overwrite=overwrite)
    check_writable(out / OUTPUT_FILES[0], option="--out")  # before the photos are decoded, not at the first model
    if (pack / "train").is_dir() and (pack / "val").is_dir():
        train_files = scan_folder(pack / "train")
        val_files = scan_folder(pack / "val")[: cfg.val_images]
        split_rule, held = None, []
    else:
        # A plain photo folder (or a pack without val/, said in a warning): hold out the same 10 % as `pnprgm train`
        # and the pack script, so that a model trained here never sees the validation photos it is judged on.
        if (pack / "train").is_dir():
            warnings.warn(f"{pack} has train/ but no val/: 10 % of train/ are held out for validation instead.",
                          stacklevel=2)
        train_files, held = split_validation(scan_folder(pack / "train" if (pack / "train").is_dir() else pack),
                                             VAL_FRACTION, VAL_SEED)
        val_files = held[: cfg.val_images]
        split_rule = f"pnprgm.training.data.split_validation(fraction={VAL_FRACTION}, seed={VAL_SEED})"
    manifest = read_manifest(pack)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cores = os.cpu_count() or 1
    if cfg.workers is None:
        cfg = dataclasses.replace(cfg, workers=default_workers())
    elif cfg.workers > cores:  # each is a process with torch loaded: 100000 of them took all memory and the machine
        raise UserError(f"--workers {cfg.workers} is more than this machine's {cores} CPU cores; give at most "
                        f"{cores} (the default, min(8, cores - 2), keeps a GPU fed).")
    starts = read_initial_models(init_from)
    members = []
    if cfg.gray_share < 1:
        members.append(Member("drunet-denoiser-color", 3, cfg, device, starts.get(3)))
    if cfg.gray_share > 0:
        members.append(Member("drunet-denoiser-gray", 1, cfg, device, starts.get(1)))
    train_set = load_images(train_files, 3, cfg.crop)  # after the models: a wrong --init-from fails at once
    if cfg.jpeg_share > 0 and train_set.images and train_set.images[0].dtype != torch.uint8:
        raise UserError(f"{pack} holds 16-bit images, which JPEG (8-bit) would posterise; leave out --jpeg-share "
                        f"for them.")
    val_set = load_images(val_files, 3, 1, what="validation") if val_files else None
    out.mkdir(parents=True, exist_ok=True)
    loader = torch.utils.data.DataLoader(
        RandomCrops(train_set.images, cfg.crop, cfg.seed, cfg.jpeg_share, cfg.jpeg_quality),
        batch_size=cfg.batch_size, num_workers=cfg.workers,
        worker_init_fn=ignore_interrupts_in_worker if cfg.workers > 0 else None,
        pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None)
    noise_rng = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed))
    precision = resolve_precision(cfg.precision, device)
    autocast = precision == "bf16"
    params = " + ".join(f"{sum(p.numel() for p in m.net.parameters()) / 1e6:.2f} M" for m in members)
    echo(f"recipe: {len(train_set)} training photos, {len(val_files)} validation, {params} parameters "
         f"({' + '.join(m.name for m in members)}), batch {cfg.batch_size} x {cfg.crop}^2, {cfg.minutes} min on {device}"
         + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "") + f", {precision}")
    log_path = out / "recipe_log.jsonl"
    budget = cfg.minutes * 60
    started = time.perf_counter()
    last_report = last_save = started
    images_since, steps_since = 0, 0
    total_steps = 0
    record_base = {
        "objective": "L1 denoising (supervised; no RGM prior)",
        # The loop's record format: every training file with its sha256 (the source photos when packed).
        "files": [{"name": f["name"], "sha256": f["sha256"]} for f in manifest.get("train", [])]
        or [{"name": p.name, "sha256": h} for p, h in zip(train_set.files, train_set.sha256)],
        "recipe": to_dict(cfg), "command": command,
        "data": {"pack": manifest.get("pack", {}) or {"val_rule": split_rule, "source": str(pack.resolve())},
                 "train_files": manifest.get("train", []),
                 "val_files": manifest.get("val", []) or [{"name": p.name, "sha256": sha256_file(p)} for p in held], "train_images_used": len(train_set),
                 "packed_sha256": [{"name": p.name, "sha256": h} for p, h in zip(train_set.files, train_set.sha256)]},
        "hardware": {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": str(torch.__version__),
                     "precision": precision},
    }
    data_iter = iter(loader)
    with StopRequest("validating and saving the models") as stop:
        try:
            while True:
                now = time.perf_counter()
                elapsed = now - started
                if elapsed >= budget or stop.asked:
                    break
                # Interleave: the gray model takes a step whenever it is behind its share.
                member = members[0]
                if len(members) == 2 and members[1].steps < cfg.gray_share * (members[0].steps + members[1].steps + 1):
                    member = members[1]
                batch = to_unit(next(data_iter).to(device, non_blocking=True))
                if member.channels == 1:
                    batch = convert_channels(batch, 1)
                batch = batch.contiguous(memory_format=torch.channels_last)
                sigma = cfg.noise_min + (cfg.noise_max - cfg.noise_min) * torch.rand(batch.shape[0], device=device,
                                                                                    generator=noise_rng)
                noisy = batch + sigma.view(-1, 1, 1, 1) * torch.randn(batch.shape, device=device, generator=noise_rng)
                for group in member.opt.param_groups:
                    group["lr"] = cfg.lr * _lr_factor(cfg, member.steps, elapsed / budget)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                    estimate = member.net.denoise01(noisy, sigma)
                loss = (estimate.float() - batch).abs().mean()
                member.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(member.net.parameters(), cfg.clip_grad)
                member.opt.step()
                member.steps += 1
                member.update_ema(cfg.ema_decay)
                member.loss_sum = member.loss_sum + loss.detach()  # a device tensor: no synchronisation per step
                member.loss_count += 1
                total_steps += 1
                steps_since += 1
                images_since += batch.shape[0]
                now = time.perf_counter()
                if now - last_report >= cfg.report_every or now - last_save >= cfg.save_every:
                    # Checked here, not per step, so that the GPU never waits for the host: a diverged run stops
                    # before it overwrites the last good model files.
                    _check_finite(members, out)
                if now - last_report >= cfg.report_every:
                    span = now - last_report
                    line = {"elapsed_s": round(now - started, 1), "steps_per_s": round(steps_since / span, 2),
                            "images_per_s": round(images_since / span, 1),
                            **{m.name: {"steps": m.steps, "lr": m.opt.param_groups[0]["lr"],
                                        "l1": round(float(m.loss_sum) / max(m.loss_count, 1), 5)} for m in members}}
                    echo("recipe: " + json.dumps(line))
                    _append(log_path, line)
                    for m in members:
                        m.last_l1 = line[m.name]["l1"]
                        m.loss_sum, m.loss_count = 0.0, 0
                    last_report, steps_since, images_since = now, 0, 0
                if now - last_save >= cfg.save_every:
                    _save_all(members, out, val_set, cfg, device, record_base, now - started, log_path, echo)
                    last_save = time.perf_counter()
        finally:
            del data_iter, loader
    elapsed = time.perf_counter() - started
    _check_finite(members, out)  # the last steps too: the final files must not replace good ones with a NaN model
    files = _save_all(members, out, val_set, cfg, device, record_base, elapsed, log_path, echo, final=True,
                      interrupted=stop.asked)
    if stop.asked:
        echo(f"interrupted: saved {', '.join(str(f) for f in files)}")
        raise KeyboardInterrupt
    return {"steps": {m.name: m.steps for m in members}, "val_psnr": {m.name: m.val for m in members},
            "files": [str(f) for f in files], "seconds": round(elapsed, 1)}


def _check_finite(members: list["Member"], out: Path) -> None:
    """A :class:`UserError` when a model's running loss is NaN or infinite (its weights have diverged)."""
    for m in members:
        if isinstance(m.loss_sum, torch.Tensor) and not torch.isfinite(m.loss_sum):
            raise UserError(f"{m.name}: the loss became non-finite near step {m.steps}; the model files in {out} "
                            f"are from before; rerun with a lower --lr.")


def _append(path: Path, entry: dict) -> None:
    with io.open_for_append(path) as handle:
        handle.write(json.dumps(entry) + "\n")


@torch.no_grad()
def validate(net: DRUNetGenerator, val_set, channels: int, cfg: RecipeConfig, device: torch.device) -> dict[str, float]:
    """Mean PSNR over centre crops of the validation photos at each of :data:`VAL_LEVELS` (fixed noise seed)."""
    if val_set is None:
        return {}
    crops = []
    for image in val_set.images:
        crops.append(to_unit(io.centre_crop(image, min(cfg.val_crop, image.shape[1], image.shape[2]) // 8 * 8)))
    result = {}
    for level in VAL_LEVELS:
        values = []
        rng = torch.Generator().manual_seed(level)
        for crop in crops:
            clean = crop[None].to(device)
            if channels == 1:
                clean = convert_channels(clean, 1)
            noise = torch.randn(clean.shape, generator=rng).to(device)
            sigma = torch.full((1,), level / 255, device=device)
            estimate = net.denoise01(clean + sigma.view(1, 1, 1, 1) * noise, sigma).float()
            values.append(float(psnr(estimate, clean).mean()))  # the default protocol clamps to [0, 1]
        result[str(level)] = round(sum(values) / len(values), 3)
    return result


def _save_all(members: list[Member], out: Path, val_set, cfg: RecipeConfig, device: torch.device,
              record_base: dict, elapsed: float, log_path: Path, echo: Callable[[str], None], *,
              final: bool = False, interrupted: bool = False) -> list[Path]:
    from pnprgm.rgm.model_file import save_model

    files = []
    for m in members:
        m.val = validate(m.ema, val_set, m.channels, cfg, device)
        # float16 storage keeps the file under 16 MiB; it loads back into float32 parameters.
        state = {k: v.detach().to("cpu", torch.float16).contiguous() if v.is_floating_point() else v.detach().cpu()
                 for k, v in m.ema.state_dict().items()}
        before = (m.init_from or {}).get("steps_total") or 0
        record = {**record_base, "steps": m.steps, "steps_total": before + m.steps, "init_from": m.init_from, "train_seconds": round(elapsed, 1),
                  "final": final, "interrupted": interrupted, "val_psnr_by_sigma255": m.val, "val_psnr": m.val.get("25"),
                  "storage": "float16", "channels": m.channels,
                  "final_losses": {"l1": m.last_l1 if m.last_l1 is not None else (
                      round(float(m.loss_sum) / m.loss_count, 5) if m.loss_count else None)}}
        process = {"name": "denoise", "T": 1, "noise_min": cfg.noise_min, "noise_max": cfg.noise_max}
        files.append(save_model(out / f"{m.name}.pt", state, to_dict(m.config), process, record))
    entry = {"elapsed_s": round(elapsed, 1), "saved": [m.name for m in members], "final": final,
             "interrupted": interrupted,
             **{m.name: {"steps": m.steps, "val_psnr": m.val} for m in members}}
    echo("recipe: " + json.dumps(entry))
    _append(log_path, entry)
    sys.stdout.flush()
    return files
