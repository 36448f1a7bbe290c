"""Where a denoiser keeps the noise: its residual and its detail per noise level, on photos no model was trained on.

For each noise std s, one call D(y, s) on y = x + s n (colour photos of the held-out 10 % of the training set that
none of the models, nor one they were fine-tuned from, trained on: ``pnprgm.training.data.unseen_held_out_files``;
128x128 centre crops, one fixed noise draw per photo and level):

- PSNR of D(y) to the clean x;
- residual ratio ``||y - D(y)||^2 / (N s^2)``: 1 for y's own noise removed exactly, and for a posterior sample (x and
  a draw from p(x | y) are exchangeable); below 1 for the MMSE denoiser, which keeps what it cannot tell from noise.
  A prior-trained model that moves towards y (the ratio falls) keeps more of y's noise;
- detail ratio ``std(highpass D(y)) / std(highpass x)`` (the discriminator's 3x3 binomial high-pass): below 1 is
  smoother than the photo, above 1 has more fine structure than it (texture or leftover noise).

    python benchmarks/residual_by_noise.py --model unet-denoiser-color --model runs/x/model.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LEVELS = ("2/255", "5/255", "10/255", "25/255", "50/255")


def parse_args(argv=None) -> argparse.Namespace:
    from pnprgm.cli.options import OnceParser, noise_level_argument

    parser = OnceParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="colour model (shipped name or model file); repeatable")
    parser.add_argument("--train", default=str(REPO.parent / "shared" / "data" / "train"),
                        help="training photo folder whose held-out 10 %% is used (default ../shared/data/train)")
    parser.add_argument("--noise", action="append", default=None, type=noise_level_argument,
                        help=f"noise std, repeatable (default {', '.join(LEVELS)})")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N held-out colour photos")
    parser.add_argument("--crop", type=int, default=128, help="centre crop side (default 128)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", default=None, help="output stem for .md and .json (default: print only)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    return parser.parse_args(argv)


def heldout_colour(train: Path, crop: int, limit: int | None, models: list[str]) -> list[tuple[str, torch.Tensor]]:
    """The held-out colour photos (centre crops) that none of ``models`` trained on; the others are named on stderr."""
    from pnprgm.benchmark.datasets import as_gray_or_rgb, centre_crop
    from pnprgm.errors import UserError
    from pnprgm.io import read_image
    from pnprgm.training.data import unseen_held_out_files

    photos = []
    held, left_out, unknown = unseen_held_out_files(train, models)
    if left_out:
        print(f"left out {len(left_out)} held-out photos that a model (or its start) trained on: "
              f"{', '.join(left_out)}", file=sys.stderr)
    if unknown:
        print(f"lineage not followed (photos not checked): {', '.join(unknown)}", file=sys.stderr)
    for path in held:
        image = as_gray_or_rgb(read_image(path))  # the benchmark runner's rule: equal channels are a gray photo
        if image.shape[0] == 3 and min(image.shape[1:]) >= crop:
            photos.append((path.name, centre_crop(image, crop)))
    if not photos:
        raise UserError(f"the held-out 10 % of {train} has no colour photo of at least {crop}x{crop} that the models "
                        f"never saw.")
    return photos[:limit]


def measure(model: str, photos: list[tuple[str, torch.Tensor]], levels: list[float]) -> list[dict]:
    """One row per level: mean PSNR, residual ratio and detail ratio over the photos."""
    from pnprgm.denoisers.rgm import load_denoiser
    from pnprgm.metrics.fidelity import psnr
    from pnprgm.training.priors import high_pass

    denoiser = load_denoiser(model, channels=3)
    rows = []
    for level_index, sigma in enumerate(levels):
        values = {"psnr": [], "residual_ratio": [], "detail_ratio": []}
        for photo_index, (_, clean) in enumerate(photos):
            rng = torch.Generator().manual_seed(1000 * level_index + photo_index)
            clean = clean[None]
            noisy = clean + sigma * torch.randn(clean.shape, generator=rng)
            with torch.no_grad():
                out = denoiser(noisy, sigma)
            values["psnr"].append(float(psnr(out.clamp(0, 1), clean)))
            values["residual_ratio"].append(float((noisy - out).pow(2).mean()) / sigma ** 2)
            values["detail_ratio"].append(float(high_pass(out).std() / high_pass(clean).std()))
        rows.append({"noise": sigma, **{k: sum(v) / len(v) for k, v in values.items()}})
    return rows


def table(results: dict[str, list[dict]], photos: int, crop: int) -> str:
    lines = ["# Residual and detail of each denoiser by noise level (held-out photos)", "",
             f"`benchmarks/residual_by_noise.py` (protocol in its docstring): {photos} held-out colour photos, "
             f"{crop}x{crop} centre crops, one call each. Cells: PSNR dB / residual ratio / detail ratio.", "",
             "| model | " + " | ".join(f"{round(r['noise'] * 255, 1):g}/255" for r in next(iter(results.values()))) + " |",
             "|---|" + "---|" * len(next(iter(results.values())))]
    for model, rows in results.items():
        cells = [f"{r['psnr']:.2f} / {r['residual_ratio']:.3f} / {r['detail_ratio']:.3f}" for r in rows]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from pnprgm.cli.options import claim_outputs, noise_level_argument, stem_files
    from pnprgm.errors import UserError, first_line
    from pnprgm.io import write_bytes, write_json

    args = parse_args(argv)
    try:
        if args.out:
            claim_outputs(stem_files(args.out, ".md", ".json"), overwrite=args.overwrite)
        levels = args.noise or [noise_level_argument(text) for text in LEVELS]
        if 0 in levels:  # the residual ratio divides by it
            raise UserError("--noise 0 has no residual to measure; give stds above 0, e.g. 2/255.")
        if args.threads:
            torch.set_num_threads(args.threads)
        photos = heldout_colour(Path(args.train), args.crop, args.limit, list(args.model))
        results = {model: measure(model, photos, levels) for model in args.model}
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
    text = table(results, len(photos), args.crop)
    print(text)
    if args.out:
        md, json_path = stem_files(args.out, ".md", ".json")
        write_bytes(md, text.encode())
        write_json(json_path, {"photos": [name for name, _ in photos], "crop": args.crop, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
