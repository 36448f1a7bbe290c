"""Image quality metrics: PSNR, SSIM and LPIPS under one explicit :class:`MetricProtocol`.

Every metric takes (B, C, H, W) tensors in [0, 1] and returns a (B,) tensor; ``METRICS`` registers them so
that the benchmark, the CLI and the tests iterate one list.

>>> from pnprgm.metrics import METRICS, MetricProtocol, evaluate
>>> scores = evaluate(x, y, MetricProtocol(channel="y", crop=4))   # {"psnr": (B,), "ssim": (B,), "lpips": (B,)}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from pnprgm.metrics.fidelity import psnr, rgb_to_y, ssim
from pnprgm.metrics.lpips_weights import ensure_lpips_weights
from pnprgm.metrics.perceptual import lpips
from pnprgm.metrics.protocol import DEFAULT_PROTOCOL, MetricProtocol
from pnprgm.registry import Registry

__all__ = [
    "METRICS", "Metric", "MetricProtocol", "DEFAULT_PROTOCOL", "evaluate", "psnr", "ssim", "lpips", "rgb_to_y",
    "ensure_lpips_weights",
]


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(x, y, protocol, device=...) -> (B,)`` plus how to read its values.

    :param fn: the metric function.
    :param higher_is_better: direction of improvement (PSNR, SSIM up; LPIPS down).
    :param identical: its value for identical images (a property the tests check).
    :param unit: for table headers.
    """

    fn: Callable[..., torch.Tensor]
    higher_is_better: bool
    identical: float
    unit: str = ""

    def __call__(self, x: torch.Tensor, y: torch.Tensor, protocol: MetricProtocol = DEFAULT_PROTOCOL, *,
                 device: str | torch.device | None = None) -> torch.Tensor:
        return self.fn(x, y, protocol, device=device)


METRICS: Registry[Metric] = Registry("metric")
METRICS.add("psnr", Metric(psnr, higher_is_better=True, identical=float("inf"), unit="dB"),
            "peak signal-to-noise ratio, data range 1 (dB, higher is better)")
METRICS.add("ssim", Metric(ssim, higher_is_better=True, identical=1.0),
            "structural similarity, 11x11 Gaussian window sigma 1.5 (higher is better)")
METRICS.add("lpips", Metric(lpips, higher_is_better=False, identical=0.0),
            "LPIPS v0.1 with ImageNet AlexNet, inputs scaled to [-1, 1] (lower is better)")


def evaluate(
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: MetricProtocol = DEFAULT_PROTOCOL,
    *,
    names: Iterable[str] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Every registered metric (or those in ``names``) of estimate ``x`` against reference ``y``: name -> (B,)."""
    chosen = list(names) if names is not None else METRICS.names()
    return {name: METRICS.get(name)(x, y, protocol, device=device) for name in chosen}
