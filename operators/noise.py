"""Additive white Gaussian measurement noise, deterministic from a seed."""
from __future__ import annotations

import math

import torch

from pnprgm.operators.base import Operator
from pnprgm.config import check_seed
from pnprgm.errors import UserError


def measure(op: Operator, x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``y = A x + sigma * n``, n ~ N(0, I) drawn on the CPU from ``torch.Generator().manual_seed(seed)``.

    Drawing on the CPU makes the noise identical on every device.

    :param x: image batch (B, C, H, W) in [0, 1], or one image (C, H, W) (then y has no batch axis either).
    :param sigma: noise standard deviation in [0, 1] units (0: noiseless).
    """
    if not isinstance(x, torch.Tensor):
        raise UserError(f"x must be a torch.Tensor (B, C, H, W) in [0, 1], not {type(x).__name__}; convert it with "
                        f"torch.as_tensor(x).")
    if x.dim() == 3:  # one image, as restore() takes it
        return measure(op, x[None], sigma, seed)[0]
    if x.dim() != 4:
        raise UserError(f"x must be an image (C, H, W) or a batch (B, C, H, W); got shape {tuple(x.shape)}.")
    sigma = float(sigma)
    if not 0 <= sigma < math.inf:
        raise UserError(f"noise sigma must be a finite number >= 0 (in [0, 1] units, e.g. 0.05 or 5/255), got {sigma}.")
    seed = check_seed(seed, "the noise seed")
    clean = op.A(x)
    if not bool(torch.isfinite(clean).all()):  # a damaged operator must not write NaN as a black measurement
        raise UserError(f"{getattr(op, 'spec', 'the operator')} gives NaN or infinite values on this image; check its "
                        f"parameters (a kernel or mask file's values).")
    if sigma == 0:
        return clean
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    return clean + sigma * noise.to(clean.device)
