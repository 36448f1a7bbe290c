"""Which solver restores blurred photos best, per kind of blur: the deblur presets' DRS, ADMM and HQS.

Colour photos of the held-out 10 % of the training set that the shipped denoiser never trained on
(``pnprgm.training.data.unseen_held_out_files``), 160x160 centre crops, noise std 0.01, one fixed noise draw (seed 0)
per photo and blur; each blur is restored with the ``deblur-drs``, ``deblur-admm`` and ``deblur-hqs`` presets, with
the shipped default denoiser and with total variation. PSNR of the clamped output. This chose the deblurring
default solver (``pnprgm.presets.DEFAULT_SOLVER``): these photos chose no other setting.

    python benchmarks/deblur_solvers.py --threads 1 --out benchmarks/deblur_solvers --overwrite
    python benchmarks/deblur_solvers.py --threads 1 --blur blur:motion,boundary=valid --blur blur:box,boundary=valid \
        --blur blur:gaussian,sigma=1.6,boundary=valid --out benchmarks/deblur_solvers_valid --overwrite
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

BLURS = ("blur:gaussian,sigma=1.6", "blur:gaussian,sigma=3", "blur:motion", "blur:motion,seed=3", "blur:box")
PRESETS = ("deblur-drs", "deblur-admm", "deblur-hqs")
DENOISERS = ("default", "tv")


def parse_args(argv=None) -> argparse.Namespace:
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(REPO.parent / "shared" / "data" / "train"),
                        help="training photo folder whose held-out 10 %% is used (default ../shared/data/train)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N held-out colour photos")
    parser.add_argument("--crop", type=int, default=160, help="centre crop side (default 160)")
    parser.add_argument("--noise", type=float, default=0.01, help="noise std in [0, 1] units (default 0.01)")
    parser.add_argument("--blur", action="append", default=None,
                        help=f"a blur spec, repeatable (default: {', '.join(BLURS)}); ',boundary=valid' measures "
                             f"as a camera does, without a boundary assumption")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", default=None, help="output stem for .md and .json (default: print only)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    return parser.parse_args(argv)


def measure(photos: list[tuple[str, torch.Tensor]], noise: float, blurs=BLURS) -> list[dict]:
    """One row per (photo, blur): PSNR of each preset and denoiser."""
    import pnprgm
    from pnprgm import operators
    from pnprgm.metrics.fidelity import psnr

    rows = []
    for name, clean in photos:
        x = clean[None]
        for spec in blurs:
            physics = operators.build(spec, tuple(clean.shape))
            y = operators.measure(physics, x, noise, seed=0)
            row = {"photo": name, "blur": spec}
            for preset in PRESETS:
                for denoiser in DENOISERS:
                    restored = pnprgm.restore(y, physics, noise_sigma=noise, preset=preset, denoiser=denoiser, seed=0)
                    row[f"{preset}/{denoiser}"] = float(psnr(restored, x))
            rows.append(row)
            print(f"{name} {spec}: " + " ".join(f"{k} {v:.2f}" for k, v in row.items() if "/" in k), file=sys.stderr)
    return rows


def table(rows: list[dict], photos: int, crop: int, noise: float, blurs=BLURS) -> str:
    columns = [f"{preset}/{denoiser}" for denoiser in DENOISERS for preset in PRESETS]
    lines = ["# Deblurring: DRS, ADMM and HQS per kind of blur (held-out photos)", "",
             f"`benchmarks/deblur_solvers.py` (protocol in its docstring): {photos} held-out colour photos, "
             f"{crop}x{crop} centre crops, noise std {noise:g}. Mean PSNR (dB); `default` is the shipped denoiser, "
             f"`tv` total variation; the best of each row in bold.", "",
             "| blur | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for spec in blurs:
        chosen = [row for row in rows if row["blur"] == spec]
        means = [sum(row[c] for row in chosen) / len(chosen) for c in columns]
        best = max(means)
        lines.append(f"| `{spec}` | " + " | ".join(f"**{m:.2f}**" if m == best else f"{m:.2f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from pnprgm.cli.options import claim_outputs, stem_files
    from pnprgm.errors import UserError, first_line
    from pnprgm.io import write_bytes, write_json
    from residual_by_noise import heldout_colour  # the one reader of the unseen held-out photos

    args = parse_args(argv)
    try:
        if args.out:
            claim_outputs(stem_files(args.out, ".md", ".json"), overwrite=args.overwrite)
        if args.threads:
            torch.set_num_threads(args.threads)
        photos = heldout_colour(Path(args.train), args.crop, args.limit, ["default"])
        rows = measure(photos, args.noise, args.blur or BLURS)
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
    text = table(rows, len(photos), args.crop, args.noise, args.blur or BLURS)
    print(text)
    if args.out:
        md, json_path = stem_files(args.out, ".md", ".json")
        write_bytes(md, text.encode())
        write_json(json_path, {"photos": [name for name, _ in photos], "crop": args.crop,
                                        "noise": args.noise, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
