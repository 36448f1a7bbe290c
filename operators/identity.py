"""The identity operator: denoising (the measurement is the noisy image itself)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pnprgm.operators.base import DiagonalGram, register_variant


@dataclass(frozen=True)
class IdentityParams:
    """No parameters."""


@register_variant("identity", IdentityParams, "no degradation besides noise (denoising)", default=True)
class Identity(DiagonalGram):
    """``y = x``."""

    def __init__(self, params: IdentityParams, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
        super().__init__("identity", params, in_shape, in_shape, device=device)

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        return x

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        return y

    def gram_diagonal(self, y):
        return torch.ones((), dtype=y.dtype, device=y.device)

    def initial_estimate(self, y):
        return y.clone()
