"""Where does a prior-trained model's gain or loss inside PnP come from: the high or the low noise levels?

``benchmarks/prior_vs_mse.py`` (same photos, presets and metrics) with each ``--model`` called only on one side of a
noise std S, and the MSE UNet it starts from (``unet-denoiser-color``) on the other: ``--side high`` uses the model
for the solver's calls at sigma >= S, ``--side low`` for sigma < S (both given: a row for each). The presets' DRS schedules run sigma from 49/255
down to about the measurement noise, so a row equal to the MSE model's means that side holds none of the model's
effect. A diagnostic: rows are shown, never judged (a split model is no model anyone trained). Writes
``--out``.{json,md}; the per-row benchmark JSONs go to ``--work`` as for prior_vs_mse.

    python benchmarks/noise_split.py --model runs/rgm/model.pt --at 10/255 --side high --side low --out /tmp/split
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout: the project's packages sit beside benchmarks/
    sys.path.insert(0, str(HERE.parent))

if str(HERE) not in sys.path:  # its sibling prior_vs_mse.py, also when loaded by runpy (the tests)
    sys.path.insert(0, str(HERE))
import prior_vs_mse  # noqa: E402


def split_denoiser(model, mse, at: float, side: str):
    """``D(x, sigma) = model(x, sigma)`` where sigma is on ``side`` of ``at``, else ``mse(x, sigma)``, per sample."""
    import torch
    from deepinv.models import Denoiser

    class SplitDenoiser(Denoiser):
        def __init__(self):
            super().__init__()
            self.model, self.mse = model, mse

        def reseed(self, seed: int) -> None:
            for part in (self.model, self.mse):
                if hasattr(part, "reseed"):
                    part.reseed(seed)

        def forward(self, x, sigma, *args, **kwargs):
            sigmas = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
            mine = sigmas >= at if side == "high" else sigmas < at
            if bool(mine.all()) or not bool(mine.any()):
                return (self.model if bool(mine.all()) else self.mse)(x, sigma, *args, **kwargs)
            both = self.model(x, sigma, *args, **kwargs), self.mse(x, sigma, *args, **kwargs)
            return torch.where(mine.view(-1, 1, 1, 1), *both)

    return SplitDenoiser()


def main(argv=None) -> int:
    from pnprgm.cli.options import OnceParser, claim_outputs, noise_level_argument, stem_files
    from pnprgm.errors import UserError, first_line
    import pnprgm.denoisers.rgm as rgm
    from pnprgm.io import sha256_bytes

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OnceParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="colour model file or shipped name; repeatable")
    parser.add_argument("--at", type=noise_level_argument, required=True, help="the noise std S that splits, e.g. 10/255")
    parser.add_argument("--side", choices=("high", "low"), action="append",
                        help="where the model is called: sigma >= S (high, the default) or sigma < S (low); "
                             "repeatable, a row for each")
    parser.add_argument("--train", default=str(HERE.parent.parent / "shared" / "data" / "train"),
                        help="training photo folder whose held-out 10 %% is used (default ../shared/data/train)")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N held-out colour photos")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "prior_vs_mse"),
                        help="cache folder shared with prior_vs_mse.py (default runs/prior_vs_mse)")
    parser.add_argument("--out", required=True, help="output stem")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    load = rgm.load_denoiser
    try:
        claim_outputs(stem_files(args.out, ".json", ".md"), overwrite=args.overwrite)
        # each split row is a link this script makes, so that the benchmark caches it under its own name and the
        # loader below knows it; the link's target is the model file
        links = Path(args.work) / "split"
        split_of: dict[str, tuple[str, str]] = {}  # link -> (model, side)
        for model, side in ((m, side) for m in dict.fromkeys(args.model) for side in dict.fromkeys(args.side or ["high"])):
            source = rgm.models.resolve(model, 3)
            if source.official_config is not None:
                raise UserError(f"--model {model}: an official checkpoint has time levels, not a noise std to split at; "
                                f"give one of our model files or a shipped name.")
            # readable, and a hash of the file, the split and the MSE model so that no two splits share a cache file
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).stem)
            key = json.dumps([str(source.path.resolve()), repr(args.at), side, prior_vs_mse.MSE_MODEL])
            link = links / f"{stem}_{side}_{args.at * 255:.4g}of255_{sha256_bytes(key.encode())[:8]}.pt"
            links.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                if not link.is_symlink():
                    raise UserError(f"{link} is not a link this script made; give another --work.")
                link.unlink()
            link.symlink_to(source.path.resolve())
            split_of[str(link)] = (model, side)

        def load_split(source, **kwargs):
            mine = load(source, **kwargs)
            if str(source) not in split_of:
                return mine
            return split_denoiser(mine, load(prior_vs_mse.MSE_MODEL, **kwargs), args.at, split_of[str(source)][1])

        rgm.load_denoiser = load_split  # what pnprgm.denoisers.build calls for a model file
        inner = [arg for link in split_of for arg in ("--model", link)]
        inner += ["--train", args.train, "--crop", str(args.crop), "--work", args.work, "--out", args.out]
        inner += ["-q"] if args.quiet else []
        inner += ["--limit", str(args.limit)] if args.limit else []
        inner += ["--threads", str(args.threads)] if args.threads else []
        inner_args = prior_vs_mse.parse_args(inner)
        found = prior_vs_mse.measure(inner_args, inner)
        found["judged"], found["unjudged_reason"] = False, "a split model is no model anyone trained"
        for verdicts in found["verdicts"].values():
            verdicts["passes_all"] = False
        found["split"] = {"at": args.at, "rows": {link: {"model": model, "side": side}
                                                  for link, (model, side) in split_of.items()}}
        at = f"{args.at * 255:.3g}/255"
        found["note"] = (f"Split rows (links in `{links}`): the model for the solver's calls on one side of {at}, "
                         f"`{prior_vs_mse.MSE_MODEL}` for the others; " + "; ".join(
                             f"`{Path(link).name}`: `{model}` at sigma {'>=' if side == 'high' else '<'} {at}"
                             for link, (model, side) in split_of.items()) + ".")
        found["command"] = "python benchmarks/noise_split.py " + " ".join(argv)
        prior_vs_mse.write(found, Path(args.out))
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
    finally:
        rgm.load_denoiser = load
    return 0


if __name__ == "__main__":
    sys.exit(main())
