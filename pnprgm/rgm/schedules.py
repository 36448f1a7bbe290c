"""RGM's forward-process schedules (the official ``ddpm`` VP discretisation).

``x_k = a_k x0 + s_k eps`` for k = 0..T, with ``t_k = eps_t + (1 - eps_t) k / T``,
``abar(t) = exp(-t^2 (beta_max - beta_min) / 2 - t beta_min)``, ``beta_k = 1 - abar(t_k) / abar(t_{k-1})``,
``a_k = prod_{i<=k} sqrt(1 - beta_i)`` and ``s_k = sqrt(1 - a_k^2)``.
Arrays are computed stepwise in float32 exactly as the official code does, so they match its saved values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DDPMSchedule:
    """Discrete VP schedule with ``T`` steps (official defaults beta_min 0.1, beta_max 20, eps_t 1e-3).

    :param T: number of steps.
    :param beta_min: VP beta at t = 0.
    :param beta_max: VP beta at t = 1.
    :param eps_t: smallest continuous time.
    """

    T: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    eps_t: float = 1e-3

    def __post_init__(self) -> None:
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")

    def continuous_times(self) -> np.ndarray:
        """``t_k`` for k = 0..T in float64."""
        return np.linspace(0.0, 1.0, self.T + 1, dtype=np.float64) * (1.0 - self.eps_t) + self.eps_t

    def alpha_bar_vp(self, t: np.ndarray) -> np.ndarray:
        """Squared signal coefficient of the continuous VP SDE at time ``t``."""
        return np.exp(-0.5 * t**2 * (self.beta_max - self.beta_min) - t * self.beta_min)

    def betas(self) -> torch.Tensor:
        """float32 ``beta_k`` (index 0 is the official dummy 1e-8)."""
        abar = self.alpha_bar_vp(self.continuous_times())
        betas = 1.0 - abar[1:] / abar[:-1]
        return torch.from_numpy(np.concatenate([[1e-8], betas])).float()

    def signal(self) -> torch.Tensor:
        """float32 ``a_k`` (``a_s_cum``), length T + 1, ``a_0 = 1``."""
        a_s = torch.sqrt(1.0 - self.betas())
        return torch.cumprod(a_s, dim=0)

    def noise(self) -> torch.Tensor:
        """float32 ``s_k`` (``sigmas_cum``), length T + 1, ``s_0 = 0``."""
        return torch.sqrt(1.0 - self.signal() ** 2)
