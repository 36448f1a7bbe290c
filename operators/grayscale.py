"""Grayscale (colorization) operators: a weighted channel sum of an RGB image.

deepinv's ``Decolorize`` has the right forward map (``srf='flat'`` is RGM's channel mean) but its ``prox_l2``
treats the 3 -> 1 channel map as if V were square and drops the part of z orthogonal to the weights (checked:
the prox optimality gradient is O(1)), so the closed forms live here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from pnprgm.operators.base import DiagonalGram, register_variant
from pnprgm.errors import UserError


@dataclass(frozen=True)
class GrayParams:
    """No parameters."""


class Gray(DiagonalGram):
    """``y = sum_c w_c x_c`` for an RGB image; ``A A^T = ||w||^2``."""

    VARIANT: ClassVar[str]
    weights: ClassVar[tuple[float, float, float]]

    def __init__(self, params: GrayParams, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
        c, h, w = in_shape
        if c != 3:
            raise UserError(f"{self.VARIANT} needs a 3-channel (RGB) image, got {c} channel(s); use another operator for gray images.")
        super().__init__(self.VARIANT, params, in_shape, (1, h, w), device=device)
        self.register_buffer("srf", torch.tensor(self.weights, dtype=dtype, device=device).view(1, 3, 1, 1))

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        return (x * self.srf.to(x)).sum(dim=1, keepdim=True)

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        return y * self.srf.to(y)

    def gram_diagonal(self, y):
        return (self.srf.to(y) ** 2).sum()

    def initial_estimate(self, y):
        """The gray image replicated on the three channels (consistent: the weights sum to 1)."""
        self._check(y, self.out_shape, "initial_estimate")
        return y.repeat(1, 3, 1, 1)


@register_variant("gray:flat", GrayParams, "channel mean (RGM's colorization operator)", default=True)
class FlatGray(Gray):
    VARIANT = "gray:flat"
    weights = (1 / 3, 1 / 3, 1 / 3)


@register_variant("gray:rec601", GrayParams, "luma with ITU-R BT.601 weights 0.299, 0.587, 0.114")
class Rec601Gray(Gray):
    VARIANT = "gray:rec601"
    weights = (0.299, 0.587, 0.114)
