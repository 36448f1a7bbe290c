"""Image quality metrics: PSNR, SSIM, LPIPS-alex and LPIPS-vgg under one explicit :class:`MetricProtocol`.

Every metric takes (B, C, H, W) tensors in [0, 1] and returns a (B,) tensor; ``METRICS`` registers them so
that the benchmark, the CLI and the tests iterate one list.

>>> from pnprgm.metrics import METRICS, MetricProtocol, evaluate
>>> scores = evaluate(x, y, MetricProtocol(channel="y", crop=4))   # {"psnr": (B,), ..., "lpips_vgg": (B,)}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from pnprgm.metrics.fidelity import psnr, rgb_to_y, ssim
from pnprgm.metrics.lpips_weights import ALEXNET, VGG16, ensure_backbones, ensure_lpips_weights
from pnprgm.metrics.perceptual import lpips, lpips_vgg
from pnprgm.metrics.protocol import DEFAULT_PROTOCOL, MetricProtocol
from pnprgm.registry import Registry

__all__ = [
    "METRICS", "Metric", "MetricProtocol", "DEFAULT_PROTOCOL", "evaluate", "psnr", "ssim", "lpips", "lpips_vgg",
    "rgb_to_y", "ensure_lpips_weights", "ensure_backbones", "prepare_metrics", "default_metrics",
]


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(x, y, protocol, device=...) -> (B,)`` plus how to read its values.

    :param fn: the metric function.
    :param higher_is_better: direction of improvement (PSNR, SSIM up; LPIPS down).
    :param identical: its value for identical images (a property the tests check).
    :param unit: for table headers.
    :param title: its name in reports (e.g. ``LPIPS-VGG``).
    :param digits: decimals shown in report tables.
    :param min_side: smallest image side it accepts, in pixels (after the protocol's border crop).
    :param backbones: LPIPS networks whose ImageNet weights it needs (:mod:`pnprgm.metrics.lpips_weights`),
        fetched before a benchmark starts.
    :param default: computed by a benchmark that does not choose its metrics (:func:`default_metrics`).
    """

    fn: Callable[..., torch.Tensor]
    higher_is_better: bool
    identical: float
    unit: str = ""
    title: str = ""
    digits: int = 3
    min_side: int = 1
    backbones: tuple[str, ...] = ()
    default: bool = True

    @property
    def label(self) -> str:
        """Table header: title, unit and the direction of improvement (``PSNR (dB) ↑``)."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.title}{unit} {'↑' if self.higher_is_better else '↓'}"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, protocol: MetricProtocol = DEFAULT_PROTOCOL, *,
                 device: str | torch.device | None = None) -> torch.Tensor:
        return self.fn(x, y, protocol, device=device)


METRICS: Registry[Metric] = Registry("metric")
METRICS.add("psnr", Metric(psnr, higher_is_better=True, identical=float("inf"), unit="dB", title="PSNR", digits=2),
            "peak signal-to-noise ratio, data range 1 (dB, higher is better)")
METRICS.add("ssim", Metric(ssim, higher_is_better=True, identical=1.0, title="SSIM"),
            "structural similarity, 11x11 Gaussian window sigma 1.5 (higher is better)")
METRICS.add("lpips", Metric(lpips, higher_is_better=False, identical=0.0, title="LPIPS",
                            min_side=ALEXNET.min_side, backbones=(ALEXNET.net,)),
            "LPIPS v0.1 with ImageNet AlexNet, inputs scaled to [-1, 1] (lower is better)")
METRICS.add("lpips_vgg", Metric(lpips_vgg, higher_is_better=False, identical=0.0, title="LPIPS-VGG",
                                min_side=VGG16.min_side, backbones=(VGG16.net,), default=False),
            "LPIPS v0.1 with ImageNet VGG16, inputs scaled to [-1, 1] (lower is better; pnprgm trains with LPIPS-alex only, never with this)")


def default_metrics() -> tuple[str, ...]:
    """The registered metrics marked ``default``, in registration order: what a benchmark computes unless told."""
    return tuple(name for name in METRICS.names() if METRICS.get(name).default)


def prepare_metrics(names: Iterable[str], *, fetch: bool = True) -> None:
    """Make sure every weight that the metrics ``names`` need is in the cache (one download for all), so that a
    missing file stops a run before its first image, with the fix."""
    nets = [net for name in names for net in METRICS.get(name).backbones]
    if nets:
        ensure_backbones(nets, fetch)


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
