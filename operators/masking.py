"""Inpainting operators: ``y = m * x`` for a binary pixel mask m (1: observed, 0: missing), shared by all channels.

The measurement keeps the image size, with missing pixels set to 0. This is deepinv's ``Inpainting`` map; the
class derives from :class:`DiagonalGram` so the closed forms (``A A^T = diag(m)``) are shared with the block mean
and grayscale operators, and the mask is stored as an array in records (never re-derived).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from pnprgm.operators.base import DiagonalGram, param, register_variant, require_array, required
from pnprgm.operators.kernels import load_mask
from pnprgm.errors import UserError


class Mask(DiagonalGram):
    """Pixel mask shared by all channels; subclasses draw the mask from their parameters."""

    VARIANT: ClassVar[str]
    #: what to change when the mask hides every pixel
    EMPTY_HINT: ClassVar[str] = "lower the missing fraction."

    def __init__(self, params, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
        _, h, w = in_shape
        super().__init__(self.VARIANT, params, in_shape, in_shape, device=device)
        if arrays is None:
            mask = np.asarray(self.draw(params, h, w), dtype=bool)
        else:
            mask = require_array(arrays, "mask", (h, w), self.VARIANT) != 0
        if not mask.any():
            raise UserError(f"{self.VARIANT} observes no pixel of the {h}x{w} image; {self.EMPTY_HINT}")
        self.register_buffer("mask", torch.as_tensor(mask).to(device=device, dtype=dtype)[None, None])

    def draw(self, params, height: int, width: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def arrays(self):
        return {"mask": self.mask[0, 0].detach().cpu().numpy().astype(np.uint8)}

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        return x * self.mask.to(x)

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        return y * self.mask.to(y)

    def gram_diagonal(self, y):
        return self.mask.to(y)

    def initial_estimate(self, y):
        """Observed pixels kept, holes filled from their surroundings (push-pull normalised averaging)."""
        self._check(y, self.out_shape, "initial_estimate")
        mask = self.mask.to(y)
        return torch.where(mask > 0, y, _push_pull(y * mask, mask))


def _push_pull(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill where ``weights`` is 0 with the weighted mean of coarser scales (bilinear back to full size)."""
    height, width = values.shape[-2:]
    filled = values / weights.clamp_min(1e-12)
    if bool((weights > 0).all()) or (height == 1 and width == 1):
        return filled
    coarse = _push_pull(F.avg_pool2d(values, 2, ceil_mode=True), F.avg_pool2d(weights, 2, ceil_mode=True))
    up = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return torch.where(weights > 0, filled, up)


@dataclass(frozen=True)
class RandomMaskParams:
    rate: float = param(0.5, "fraction of pixels missing (0 <= rate < 1)")
    seed: int = param(0, "random seed of the mask")

    def __post_init__(self):
        if not 0 <= self.rate < 1:
            raise UserError(f"mask:random rate is the missing fraction and must be in [0, 1), got {self.rate}.")


@register_variant("mask:random", RandomMaskParams, "random missing pixels", default=True)
class RandomMask(Mask):
    VARIANT = "mask:random"

    def draw(self, params: RandomMaskParams, height, width):
        return np.random.default_rng(params.seed).random((height, width)) >= params.rate


@dataclass(frozen=True)
class BoxMaskParams:
    size: float = param(0.3, "side of the missing box as a fraction of the image's height and width")
    cy: float = param(0.5, "vertical position of the box centre (fraction of the height)")
    cx: float = param(0.5, "horizontal position of the box centre (fraction of the width)")

    def __post_init__(self):
        if not 0 < self.size < 1:
            raise UserError(f"mask:box size must be in (0, 1), got {self.size}.")
        if not (0 <= self.cy <= 1 and 0 <= self.cx <= 1):
            raise UserError(f"mask:box centre (cy, cx) must lie in [0, 1], got ({self.cy}, {self.cx}).")


@register_variant("mask:box", BoxMaskParams, "one missing rectangle (box inpainting)")
class BoxMask(Mask):
    VARIANT = "mask:box"
    EMPTY_HINT = "choose a smaller box (or a larger image)."

    def draw(self, params: BoxMaskParams, height, width):
        mask = np.ones((height, width), dtype=bool)
        box_h, box_w = max(1, round(params.size * height)), max(1, round(params.size * width))
        top = min(max(0, round(params.cy * height - box_h / 2)), height - box_h)
        left = min(max(0, round(params.cx * width - box_w / 2)), width - box_w)
        mask[top : top + box_h, left : left + box_w] = False
        return mask


@dataclass(frozen=True)
class StrokeMaskParams:
    count: int = param(5, "number of strokes")
    width: float = param(0.05, "stroke thickness as a fraction of the image's smaller side (at least 1 pixel)")
    seed: int = param(0, "random seed of the strokes")

    def __post_init__(self):
        if not 1 <= self.count <= 1000:  # each stroke is drawn in Python; a million took minutes on a 48 px image
            raise UserError(f"mask:strokes count must be between 1 and 1000, got {self.count}.")
        if not 0 < self.width < 1:
            raise UserError(f"mask:strokes width must be in (0, 1), got {self.width}.")


@register_variant("mask:strokes", StrokeMaskParams, "random free-form brush strokes missing (scribble inpainting)")
class StrokeMask(Mask):
    VARIANT = "mask:strokes"
    EMPTY_HINT = "use fewer or thinner strokes (or a larger image)."

    def draw(self, params: StrokeMaskParams, height, width):
        rng = np.random.default_rng(params.seed)
        side = min(height, width)
        radius = max(0.75, params.width * side / 2)
        rows, cols = np.mgrid[0:height, 0:width]
        mask = np.ones((height, width), dtype=bool)
        for _ in range(params.count):
            point = rng.random(2) * (height, width)
            angle = rng.random() * 2 * np.pi
            for _ in range(int(rng.integers(3, 7))):
                angle += rng.normal(0, 0.8)
                length = side * (0.1 + 0.25 * rng.random())
                end = point + length * np.array([np.sin(angle), np.cos(angle)])
                end = np.clip(end, 0, (height - 1, width - 1))
                for t in np.linspace(0, 1, max(2, int(np.ceil(np.linalg.norm(end - point))) + 1)):
                    centre = point + t * (end - point)
                    top, bottom = int(max(0, centre[0] - radius - 1)), int(min(height, centre[0] + radius + 2))
                    left, right = int(max(0, centre[1] - radius - 1)), int(min(width, centre[1] + radius + 2))
                    window = (rows[top:bottom, left:right] - centre[0]) ** 2 + (cols[top:bottom, left:right] - centre[1]) ** 2
                    mask[top:bottom, left:right] &= window > radius**2
                point = end
        return mask


@dataclass(frozen=True)
class FileMaskParams:
    file: Path = required("mask image or .npy array of the image's H x W; values > 0.5 (white) are observed")


@register_variant("mask:file", FileMaskParams, "mask read from an image or .npy file (white = observed)")
class FileMask(Mask):
    VARIANT = "mask:file"
    EMPTY_HINT = "the file is all black (0 = missing); white marks the observed pixels."

    def draw(self, params: FileMaskParams, height, width):
        return load_mask(params.file, (height, width))
