"""Training images from a folder: decoded once into memory (uint8; float16 for a set holding a 16-bit image), random
crops and horizontal flips,
a deterministic sharded sampler whose position is part of the checkpoint.

Randomness of crops and flips comes from torch's global generator, which the loop seeds per step and rank.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from pnprgm.config import MAX_SEED
from pnprgm.errors import UserError
from pnprgm.io import (GRAY_MODES, READ_SUFFIXES, centre_crop, image_bits, image_subfolders, list_images, read_image,
                       sha256_file, some_names)


@dataclass
class ImageSet:
    """Decoded images ((C, H, W); uint8, or float16 in [0, 1] when a source has more than 8 bits: :func:`to_unit`
    reads either) with their files and sha256 digests."""

    files: list[Path]
    images: list[torch.Tensor]
    sha256: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def record(self, root: Optional[Path] = None) -> list[dict]:
        """``[{"name", "sha256", "size": [H, W]}]`` for the run's records."""
        out = []
        for path, image, digest in zip(self.files, self.images, self.sha256):
            name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
            out.append({"name": name, "sha256": digest, "size": [int(image.shape[1]), int(image.shape[2])]})
        return out


def scan_folder(folder: str | Path, what: str = "training") -> list[Path]:
    """Image files of a folder (sorted); a missing or image-less folder is a :class:`UserError`.

    :param what: whose folder it is, for the messages (``training``: --data, ``validation``: --val)."""
    folder = Path(folder)
    option = "--val" if what == "validation" else "--data"
    if folder.is_file():
        raise UserError(f"{option} {folder} is a file; give the folder that holds the {what} images.")
    if not folder.is_dir():
        raise UserError(f"{option} folder {folder} does not exist; give a folder of {what} images.")
    files = list_images([folder])
    nested = image_subfolders(folder)
    if not files:
        raise UserError(f"{option} folder {folder} has no images ({', '.join(READ_SUFFIXES)})"
                        + (f"; only its subfolders do {some_names(nested)}, "
                           f"which are not searched: give one of them, or move the images up." if nested else
                           "; add some or fix the path."))
    if nested:
        warnings.warn(f"{folder}: the images in its subfolders {some_names(nested)} are not used, only the "
                      f"{len(files)} beside them.",
                      stacklevel=2)
    return files


def split_validation(files: Sequence[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Hold out ``round(fraction * n)`` (at least 1 when fraction > 0 and n >= 2) files, chosen by ``seed``."""
    files = sorted(files)
    if fraction <= 0 or len(files) < 2:
        return list(files), []
    count = min(len(files) - 1, max(1, round(fraction * len(files))))
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def detect_channels(files: Sequence[Path]) -> int:
    """1 if every image is stored as grayscale, else 3 (reads headers; a file Pillow cannot open, such as a float colour
    TIFF, is decoded)."""
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as image:
                if image.mode not in GRAY_MODES:
                    return 3
        except Exception:  # e.g. a float colour TIFF, which only read_image (tifffile) opens
            if read_image(path).shape[0] == 3:
                return 3
    return 1


#: The split of the shipped models' runs and of the benchmarks' held-out photos (TrainConfig's defaults).
HELD_OUT_FRACTION, HELD_OUT_SEED = 0.1, 0


def held_out_files(folder: str | Path) -> list[Path]:
    """The images of ``folder`` that the default split holds out (10 %, seed 0): photos the runs on this folder as it
    is today never trained on (a model trained when the folder was smaller held out others: see
    :func:`unseen_held_out_files`)."""
    return split_validation(scan_folder(folder), HELD_OUT_FRACTION, HELD_OUT_SEED)[1]


def unseen_held_out_files(folder: str | Path, models: Sequence[str], channels: int = 3) \
        -> tuple[list[Path], dict[str, list[str]], list[str]]:
    """:func:`held_out_files` less the photos that trained any of ``models`` or a model it was fine-tuned from
    (:func:`pnprgm.rgm.models.training_photos`, by sha256): ``(kept, {left-out name: models that saw it}, lineage
    steps that could not be followed)``. The folder grew since the first shipped models, and its split changed."""
    from pnprgm import io
    from pnprgm.rgm.models import training_photos

    seen_by: dict[str, list[str]] = {}
    unknown: list[str] = []
    for model in dict.fromkeys(models):
        photos, lost = training_photos(model, channels)
        unknown += [step for step in lost if step not in unknown]
        for digest in photos:
            seen_by.setdefault(digest, []).append(model)
    kept, left_out = [], {}
    for path in held_out_files(folder):
        saw = seen_by.get(io.sha256_file(path))
        if saw:
            left_out[path.name] = saw
        else:
            kept.append(path)
    return kept, left_out, unknown


def load_images(files: Sequence[Path], channels: int, min_size: int, *, what: str = "training",
                downscale: int = 1) -> ImageSet:
    """Decode every image to ``channels`` channels, shrunk by ``downscale`` (mean of each block, the last partial
    rows and columns dropped); an unreadable image or one smaller than ``min_size`` (after the shrink) is a
    :class:`UserError` naming it."""
    images, digests = [], []
    least = max(min_size, 1)  # a shrink may leave nothing of a small image
    # 8-bit sources are stored as uint8 (a quarter of float32); a 16-bit one would lose its low bits there (a dark
    # scientific image using values 0-2000 of 65535 became 9 gray levels), so such a set is stored as float16
    wide = any(image_bits(path) > 8 for path in files)
    store = (lambda im: im.clamp(0, 1).to(torch.float16).contiguous()) if wide else to_uint8
    for path in files:
        image = read_image(path)
        height, width = image.shape[1] // downscale, image.shape[2] // downscale
        if height < least or width < least:
            shrunk = f" ({width}x{height} once shrunk {downscale}x, train.data_downscale)" if downscale > 1 else ""
            fix = "a smaller --crop" if what == "training" else "another image"
            fix += " or a smaller train.data_downscale" if downscale > 1 else ""
            raise UserError(f"{what} image {path} is {image.shape[2]}x{image.shape[1]}{shrunk}, smaller than "
                            f"{'the crop ' if what == 'training' else ''}{least}; remove it or use {fix}.")
        if downscale > 1:  # float32 holds the mean of 8-bit or 16-bit values exactly enough for the stored result
            image = torch.nn.functional.avg_pool2d(image[None].float(), downscale)[0]
        images.append(store(convert_channels(image, channels)))
        digests.append(sha256_file(path))
    return ImageSet(list(files), images, digests)


def convert_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., C, H, W) float image(s) to 1 channel (BT.601 luma) or 3 (gray replicated)."""
    if image.shape[-3] == channels:
        return image
    if channels == 3:
        return image[..., :1, :, :].expand(*image.shape[:-3], 3, -1, -1)
    from pnprgm.operators.grayscale import Rec601Gray

    weights = torch.tensor(Rec601Gray.weights, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image[..., :3, :, :] * weights).sum(-3, keepdim=True)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    return image.clamp(0, 1).mul(255).round().to(torch.uint8).contiguous()


def to_unit(stored: torch.Tensor) -> torch.Tensor:
    """Stored image(s) (:class:`ImageSet`: uint8, or float16 in [0, 1]) as float32 in [0, 1]."""
    return stored.float().div_(255) if stored.dtype == torch.uint8 else stored.float()


class ShardedSampler:
    """Infinite sampler: a seeded permutation per epoch, padded to a multiple of ``world`` and sharded by rank
    (as ``DistributedSampler``); ``state_dict`` holds the epoch and the position inside the shard.

    :param n: number of images.
    :param seed: permutation seed.
    :param rank: this process's rank.
    :param world: number of processes.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.position = 0, 0
        self._shard = self._make_shard()

    def _make_shard(self) -> list[int]:
        generator = torch.Generator().manual_seed((self.seed * 100003 + self.epoch) % MAX_SEED)
        order = torch.randperm(self.n, generator=generator).tolist()
        per_rank = -(-self.n // self.world)
        order = (order * (per_rank * self.world // max(len(order), 1) + 1))[: per_rank * self.world]
        return order[self.rank :: self.world]

    def take(self, count: int) -> list[int]:
        """The next ``count`` indices of this rank's shard (crossing epochs)."""
        out = []
        while len(out) < count:
            if self.position >= len(self._shard):
                self.epoch += 1
                self.position = 0
                self._shard = self._make_shard()
            take = min(count - len(out), len(self._shard) - self.position)
            out += self._shard[self.position : self.position + take]
            self.position += take
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "n": self.n, "seed": self.seed, "world": self.world}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n or int(state["world"]) != self.world:
            raise UserError(f"cannot resume: the checkpoint sampled {state['n']} images over {state['world']} processes, "
                            f"this run has {self.n} over {self.world}; use the same data and process count.")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._shard = self._make_shard()


def random_crops(images: Sequence[torch.Tensor], indices: Sequence[int], crop: int, device: torch.device) -> torch.Tensor:
    """Random ``crop x crop`` patches with random horizontal flips, as float in [0, 1], shape (B, C, crop, crop)."""
    out = []
    for index in indices:
        image = images[index]
        top = int(torch.randint(0, image.shape[1] - crop + 1, (1,)))
        left = int(torch.randint(0, image.shape[2] - crop + 1, (1,)))
        patch = image[:, top : top + crop, left : left + crop]
        if bool(torch.rand(()) < 0.5):
            patch = patch.flip(-1)
        out.append(patch)
    return to_unit(torch.stack(out).to(device=device))


def centre_crops(images: Sequence[torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    """Centre ``size x size`` crops of every image as float in [0, 1]."""
    return to_unit(torch.stack([centre_crop(image, size) for image in images]).to(device=device))
