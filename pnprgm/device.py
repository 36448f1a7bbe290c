"""Device selection: explicit, with a CPU fallback that says so."""
from __future__ import annotations

import warnings

import torch

from pnprgm.errors import UserError


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA request falls back to CPU with a warning."""
    if isinstance(name, torch.device):
        return name
    name = (name or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("CUDA is not available here; running on the CPU instead", stacklevel=2)
        return torch.device("cpu")
    return device
