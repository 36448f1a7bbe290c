"""How much spread across seeds can a latent buy inside PnP, and at what PSNR cost? (issue 17's two halves)

No trained model: the MSE UNet (``unet-denoiser-color``) with white noise of std ``amp * sigma`` added to its output,
a fresh draw per call from the run's seed, either at every call or only at calls whose noise std ``sigma`` is at
least ``--above``. That is the crudest sampler a latent could make; a learned one adds structure instead of white
noise, but its spread and PSNR cost scale alike. Tasks as the benchmarks (presets' DRS, measurement noise 0.01):
sr4, Gaussian deblurring (sigma 1.6) and inpainting (half the pixels, random). Reported per setting: the PSNR of
one sample on each task, and for inpainting the mean per-pixel std across seeds at the missing and at the observed
pixels (``sample_spread.spread``). Public colour photos, centre crops.

    python benchmarks/latent_budget.py --threads 2 --overwrite  # replaces benchmarks/latent_budget.{json,md}
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout: the project's packages sit beside benchmarks/
    sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:  # its sibling sample_spread.py (the spread measure), also when loaded by runpy
    sys.path.insert(0, str(HERE))
import sample_spread  # noqa: E402

TASKS = (("sr", "sr4"), ("deblur", "blur:gaussian,sigma=1.6"), ("inpaint", "mask:random,rate=0.5,seed=0"))
NOISE = sample_spread.NOISE
#: (amp, above): no noise; white noise of 0.1-0.3 sigma at every call; 0.3 sigma only at 10/255 and above
SETTINGS = ((0.0, 0.0), (0.1, 0.0), (0.2, 0.0), (0.3, 0.0), (0.3, 10 / 255))


def perturbed(base, amp: float, above: float):
    """``base`` whose output gets ``amp * sigma`` white noise at calls with ``sigma >= above``."""
    import deepinv
    import torch

    class Perturbed(deepinv.models.Denoiser):
        def __init__(self):
            super().__init__()
            self.generator = torch.Generator().manual_seed(0)

        def reseed(self, seed: int) -> None:  # restore_samples restarts each sample from its seed
            self.generator = torch.Generator().manual_seed(seed)

        def forward(self, x, sigma):
            out = base(x, sigma)
            level = float(sigma.flatten()[0]) if torch.is_tensor(sigma) else float(sigma)
            if amp and level >= above:
                out = out + amp * level * torch.randn(out.shape, generator=self.generator).to(out)
            return out

    return Perturbed()


def measure(args: argparse.Namespace) -> dict:
    import torch

    from pnprgm.denoisers import build
    from pnprgm.metrics import psnr
    from pnprgm.restoration import restore_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    base = build("unet-denoiser-color", channels=3, device=torch.device("cpu"), seed=0)
    photos = sample_spread.colour_photos(args.limit)
    rows = []
    for amp, above in SETTINGS:
        row = {"amp": amp, "above": above}
        for task, spec in TASKS:
            samples = args.samples if task == "inpaint" else 1
            found = []
            for index, photo in enumerate(photos):
                truth, physics, y = sample_spread.problem(photo, index, spec, args.crop)
                result = restore_samples(y[0], physics, samples=samples, denoiser=perturbed(base, amp, above),
                                         solver="drs", noise_sigma=NOISE)
                entry = {"psnr": float(psnr(result.images[0][None], truth[None]))}
                if task == "inpaint":
                    entry.update(sample_spread.spread(result, physics, truth))
                found.append(entry)
            row[task] = {key: sum(e[key] for e in found) / len(found) for key in found[0]}
        rows.append(row)
        print(row, flush=True)
    return {"photos": [p.name for p in photos], "crop": args.crop, "samples": args.samples, "noise": NOISE,
            "rows": rows, "threads": torch.get_num_threads(), "platform": platform.platform(),
            "command": "python benchmarks/latent_budget.py " + " ".join(sys.argv[1:])}


def write(report: dict, stem: Path) -> None:
    from pnprgm import io
    from pnprgm.cli.options import stem_files

    json_path, md = stem_files(stem, ".json", ".md")
    io.write_json(json_path, report)
    base = report["rows"][0]
    lines = [
        "# What a latent's spread costs inside PnP (white noise of amp x sigma on the MSE UNet's output)",
        "",
        f"Public colour photos {', '.join(report['photos'])}, {report['crop']}x{report['crop']} centre crops, presets' "
        f"DRS, measurement noise {report['noise']}; PSNR of one sample (dB, change against no noise in brackets); "
        f"inpainting std across {report['samples']} seeds at the missing / observed pixels. Command: "
        f"`{report['command']}`.",
        "",
        "| added noise | sr4 PSNR | deblur PSNR | inpaint PSNR | inpaint std missing / observed |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        where = "none" if not row["amp"] else (f"{row['amp']:g} sigma at every call" if not row["above"] else
                                              f"{row['amp']:g} sigma at sigma >= {row['above'] * 255:.0f}/255")
        cells = [f"{row[t]['psnr']:.2f} ({row[t]['psnr'] - base[t]['psnr']:+.2f})" for t, _ in TASKS]
        lines.append(f"| {where} | {' | '.join(cells)} | {row['inpaint']['std_missing']:.4f} / "
                     f"{row['inpaint']['std_observed']:.4f} |")
    io.write_bytes(md, ("\n".join(lines) + "\n").encode())


def main(argv=None) -> int:
    from pnprgm.cli.options import OnceParser, claim_outputs, script_main, stem_files

    parser = OnceParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="inpainting restorations per photo (default 4)")
    parser.add_argument("--crop", type=int, default=128, help="centre crop side (default 128)")
    parser.add_argument("--limit", type=int, default=4, help="colour photos used (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", default=str(HERE / "latent_budget"), help="output stem (default benchmarks/latent_budget)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    args = parser.parse_args(argv)
    json_path, md = stem_files(args.out, ".json", ".md")

    def run() -> None:
        claim_outputs([json_path, md], overwrite=args.overwrite)
        write(measure(args), Path(args.out))
        print(md.read_text())

    return script_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
