"""Does ``--samples`` map uncertainty? Spread of restorations across seeds, where the data is silent vs observed.

Inpainting (half the pixels observed, noise 0.01) of the public colour photos (centre crops): for each method,
``N`` restorations with seeds 0..N-1 (:func:`pnprgm.restoration.restore_samples`, the code behind ``restore
--samples``); reported: the mean per-pixel std across seeds at the missing pixels and at the observed ones, their
ratio, and the PSNR of the mean and of one sample. A posterior sampler spreads where the data is silent (ratio
well above 1) and its single samples lose PSNR against the mean; a point estimate with a little noise in it has a
tiny spread everywhere. Writes ``benchmarks/sample_spread.{json,md}`` and a figure (measurement, mean, std map)
of the first photo, ``benchmarks/sample_spread.png``.

    python benchmarks/sample_spread.py --overwrite                       # the methods below, 8 samples
    python benchmarks/sample_spread.py --method default:drs --samples 4 --limit 1 --out /tmp/spread
    python benchmarks/sample_spread.py --method M:drs,START:drs,unet-denoiser-color:drs \\
        --reference unet-denoiser-color:drs --start M:drs=START:drs --out benchmarks/sample_spread_DATE  # issue 17
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout: the project's packages sit beside benchmarks/
    sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:  # its sibling prior_vs_mse.py (parse_starts), also when loaded by runpy
    sys.path.insert(0, str(HERE))

#: denoiser:solver pairs measured by default: the shipped default in the DPIR-schedule DRS (spread from the random
#: turns only), the same DRUNet in RGM's relaxed stochastic DRS (spread from its re-noising), and the UNet that has
#: a latent z (spread from z and the turns).
METHODS = ("default:drs", "default:rgm-drs", "unet-denoiser-color:drs")
SPEC, NOISE = "mask:random,rate=0.5,seed=0", 0.01


def parse_args(argv=None) -> argparse.Namespace:
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default=",".join(METHODS), help="comma-separated DENOISER:SOLVER pairs")
    parser.add_argument("--samples", type=int, default=8, help="restorations per photo (default 8)")
    parser.add_argument("--crop", type=int, default=128, help="centre crop side (default 128)")
    parser.add_argument("--limit", type=int, default=3, help="colour photos used (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", default=str(HERE / "sample_spread"), help="output stem (default benchmarks/sample_spread)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    parser.add_argument("--reference", default=None, metavar="METHOD",
                        help="the method a candidate must out-spread (issue 17: the MSE UNet, unet-denoiser-color:drs); "
                             "with it every other method gets a verdict")
    parser.add_argument("--start", action="append", default=[], metavar="METHOD=START",
                        help="START is METHOD's untrained start (same solver); METHOD must out-spread it too; repeatable")
    args = parser.parse_args(argv)
    methods = args.method.split(",")
    from prior_vs_mse import parse_starts  # the one reader of MODEL=START pairs
    from pnprgm.errors import UserError

    try:
        args.starts = parse_starts(args.start)
    except UserError as err:
        parser.error(str(err))
    unknown = [m for m in ([args.reference] if args.reference else []) + [*args.starts, *args.starts.values()]
               if m not in methods]
    if unknown or (args.starts and not args.reference):
        parser.error(f"--reference and --start name methods of --method (not: {', '.join(unknown)})" if unknown
                     else "--start needs --reference (the model both are compared with)")
    return args


def verdicts(rows: list[dict], reference: str, starts: dict[str, str]) -> dict[str, dict]:
    """The bar's spread half (issue 17) for every row but ``reference`` and the starts: ``std_missing`` above the
    reference's and above the row's untrained start's (``starts``); the observed pixels are reported, not judged."""
    by_method = {row["method"]: row for row in rows}
    found = {}
    for method, row in by_method.items():
        if method == reference or method in starts.values():
            continue
        compared = {"reference": by_method[reference]["std_missing"]}
        if method in starts:
            compared["start"] = by_method[starts[method]]["std_missing"]
        found[method] = {"std_missing": row["std_missing"], "above": compared,
                         "passes": all(row["std_missing"] > value for value in compared.values())}
    return found


def colour_photos(limit: int) -> list:
    """The first ``limit`` colour photos of the public set."""
    from pnprgm.benchmark import datasets

    return [p for p in datasets.public_set().images if datasets.as_gray_or_rgb(p.load()).shape[0] == 3][:limit]


def problem(photo, index: int, spec: str, crop: int):
    """``(truth, physics, y)``: the photo's centre crop, the operator of ``spec`` and its measurement with noise
    ``NOISE`` drawn from seed ``index`` (the photo's place), the same for every method compared."""
    import torch

    from pnprgm import operators
    from pnprgm.benchmark import datasets

    truth = datasets.centre_crop(datasets.as_gray_or_rgb(photo.load()), crop)
    physics = operators.build(spec, tuple(truth.shape))
    y = physics.A(truth[None])
    return truth, physics, y + NOISE * torch.randn(y.shape, generator=torch.Generator().manual_seed(index))


def spread(found, physics, truth) -> dict[str, float]:
    """``{"std_missing", "std_observed"}``: the mean per-pixel std across samples (``found.std``, a
    :class:`pnprgm.restoration.SampleSet`) at the pixels the inpainting ``physics`` does not and does observe."""
    observed = physics.mask[0].expand_as(truth).bool()
    return {"std_missing": float(found.std[~observed].mean()), "std_observed": float(found.std[observed].mean())}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from pnprgm.metrics import psnr
    from pnprgm.restoration import restore_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    photos = colour_photos(args.limit)
    rows, figure = [], []
    for method in args.method.split(","):
        denoiser, _, solver = method.partition(":")
        per_photo = []
        for index, photo in enumerate(photos):
            truth, physics, y = problem(photo, index, SPEC, args.crop)
            started = time.perf_counter()
            found = restore_samples(y[0], physics, samples=args.samples, denoiser=denoiser, solver=solver or None,
                                    noise_sigma=NOISE)
            seconds = time.perf_counter() - started
            per_photo.append({
                "photo": photo.name, **spread(found, physics, truth),
                "psnr_mean": float(psnr(found.mean[None], truth[None])),
                "psnr_sample": float(psnr(found.images[0][None], truth[None])),
                "seconds": seconds,
            })
            if index == 0:  # the figure shows the first photo for every method
                figure.append((method, y[0].clamp(0, 1), found.mean, found.std))
            print(f"{method:28s} {photo.name:16s} std missing {per_photo[-1]['std_missing']:.4f} observed "
                  f"{per_photo[-1]['std_observed']:.4f}  PSNR mean {per_photo[-1]['psnr_mean']:.2f} "
                  f"sample {per_photo[-1]['psnr_sample']:.2f}  {seconds:.0f} s", flush=True)
        mean = {key: sum(p[key] for p in per_photo) / len(per_photo) for key in
                ("std_missing", "std_observed", "psnr_mean", "psnr_sample", "seconds")}
        rows.append({"method": method, **mean, "ratio": mean["std_missing"] / max(mean["std_observed"], 1e-12),
                     "photos": per_photo})
    starts = args.starts
    return {"task": {"spec": SPEC, "noise": NOISE, "crop": args.crop, "samples": args.samples,
                     "photos": [p.name for p in photos]},
            "rows": rows, "reference": args.reference, "starts": starts,
            "verdicts": verdicts(rows, args.reference, starts) if args.reference else {}, "threads": torch.get_num_threads(), "platform": platform.platform(),
            "command": "python benchmarks/sample_spread.py " + " ".join(sys.argv[1:]), "figure": figure}


def write(report: dict, stem: Path) -> None:
    from pnprgm import io
    from pnprgm.cli.options import stem_files

    figure = report.pop("figure")
    json_path, md, png = stem_files(stem, ".json", ".md", ".png")
    io.write_json(json_path, report)
    task = report["task"]
    lines = [
        "# Spread of `--samples` restorations (inpainting)",
        "",
        f"`{task['spec']}`, noise {task['noise']}, {task['crop']}x{task['crop']} centre crops of "
        f"{', '.join(task['photos'])}, {task['samples']} seeds each; std: mean per-pixel standard deviation across the "
        f"seeds (in [0, 1] units) at the missing and at the observed pixels. Command: `{report['command']}`.",
        "",
        "| denoiser:solver | std missing | std observed | ratio | PSNR of the mean | PSNR of one sample | s / photo |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| `{row['method']}` | {row['std_missing']:.4f} | {row['std_observed']:.4f} | {row['ratio']:.1f} | "
                     f"{row['psnr_mean']:.2f} | {row['psnr_sample']:.2f} | {row['seconds']:.0f} |")
    if report.get("verdicts"):
        lines += ["", f"Bar (issue 17, its spread half): std at the missing pixels above `{report['reference']}`'s "
                      f"and above the untrained start's, for a method given one (--start)."]
        for method, found in report["verdicts"].items():
            against = ", ".join(f"{found['above'][key]:.4f} ({key if key == 'reference' else 'its start'})"
                                for key in found["above"])
            lines.append(f"- `{method}`: {found['std_missing']:.4f} against {against}: "
                         f"{'passes' if found['passes'] else 'does not pass'}")
    io.write_bytes(md, ("\n".join(lines) + "\n").encode())
    if figure:
        _figure(figure, png)


def _figure(rows, path: Path) -> None:
    """One line per method: measurement, mean, std map (each std map scaled to the largest std of all)."""
    import torch

    from pnprgm import io

    top = max(float(std.max()) for *_, std in rows) or 1.0
    lines = [torch.cat([y, mean, (std / top).clamp(0, 1)], dim=-1) for _, y, mean, std in rows]
    io.write_image(path, torch.cat(lines, dim=-2))


def main(argv=None) -> int:
    from pnprgm.cli.options import claim_outputs, script_main, stem_files

    args = parse_args(argv)

    def run() -> None:
        claim_outputs(stem_files(args.out, ".json", ".md", ".png"), overwrite=args.overwrite)
        write(measure(args), Path(args.out))

    return script_main(run)


if __name__ == "__main__":
    sys.exit(main())
