"""Does a model trained with a prior beat the MSE model inside PnP on photos no model saw? (issue 17's bar)

PnP-DRS (the presets, no grain) for 4x super-resolution and deblurring on the colour photos of the held-out 10 % of
the training set (``pnprgm.training.data.split_validation``, seed 0: the photos the shipped models validated on and
never trained on), 256x256 centre crops, with each model given to ``--model``, beside the MSE UNet that a
prior-trained model starts from (``unet-denoiser-color``) and the presets' own denoisers. Metrics: PSNR, SSIM,
LPIPS-alex and LPIPS-VGG; LPIPS-VGG is the judge, since no model here was trained with it (the ``unet-lpips`` family,
the sr preset's model, was fine-tuned with LPIPS-alex). The bar (issue 17): better LPIPS than the MSE model at a PSNR
cost of at most 0.5 dB, on both tasks. Writes ``benchmarks/prior_vs_mse.{json,md}``; the per-model benchmark JSONs
go to ``--work`` (reused by a rerun).

    python benchmarks/prior_vs_mse.py --model rgm-kld-denoiser-color
    python benchmarks/prior_vs_mse.py --model runs/rgm-kld-color/model.pt --limit 6 --out /tmp/check
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout: the project's packages sit beside benchmarks/
    sys.path.insert(0, str(HERE.parent))

TASKS, METHOD = ("sr", "deblur"), "pnp-drs"
METRICS = ("psnr", "ssim", "lpips", "lpips_vgg")
#: the reference every other row is compared with: the MSE UNet the RGM runs start from
MSE_MODEL = "unet-denoiser-color"
PRESETS = "presets"  # the row of the presets' own denoisers (no --model)
MAX_PSNR_COST = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="model to judge (shipped name or model file); repeatable")
    parser.add_argument("--train", default=str(HERE.parent.parent / "shared" / "data" / "train"),
                        help="training photo folder whose held-out 10 %% is used (default ../shared/data/train)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N held-out colour photos")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "prior_vs_mse"),
                        help="folder for the per-model benchmark JSONs (default runs/prior_vs_mse)")
    parser.add_argument("--out", default=str(HERE / "prior_vs_mse"), help="output stem (default benchmarks/prior_vs_mse)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def heldout_colour(train: Path, folder: Path) -> list[str]:
    """Link the held-out photos into ``folder``; the names of the colour ones (gray photos would run the gray
    default for every row)."""
    from pnprgm.benchmark import datasets
    from pnprgm.training.data import scan_folder, split_validation

    _, held = split_validation(scan_folder(train), 0.1, 0)
    for path in held:
        (folder / path.name).symlink_to(path.resolve())
    return [image.name for image in datasets.folder_set(folder).images if image.load().shape[0] == 3]


def measure(args: argparse.Namespace) -> dict:
    import re

    import torch

    from pnprgm.benchmark import report
    from pnprgm.benchmark.runner import build_config, run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = [PRESETS, MSE_MODEL] + [m for m in args.model if m != MSE_MODEL]
    results, resolved = {}, {}
    # one fixed folder of links, so that a rerun's --resume sees the same settings and reuses the records
    folder = work / "heldout"
    if folder.is_dir():
        for link in folder.iterdir():
            link.unlink()
    folder.mkdir(exist_ok=True)
    names = heldout_colour(Path(args.train), folder)[:args.limit]
    for row in rows:
        config = build_config({"data": str(folder), "images": tuple(names), "tasks": TASKS, "methods": (METHOD,),
                               "crop": args.crop, "metrics": METRICS, "figure_images": 0,
                               "models": () if row == PRESETS else (row,)})
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", row).strip("_")
        json_path = work / f"{slug}.json"
        done = run_benchmark(config, json_path=json_path, resume=json_path.is_file(), progress=not args.quiet)
        summary = report.summarise(done.records, METRICS)
        results[row] = {task: {**{m: summary[(task, METHOD)][m][0] for m in METRICS},
                               "seconds": summary[(task, METHOD)]["seconds"], "n": summary[(task, METHOD)]["n"]}
                        for task in TASKS if (task, METHOD) in summary}
        resolved[row] = done.data["config"]["resolved"]["methods"][METHOD]
    verdicts = {}
    for row in rows[2:]:
        verdicts[row] = {}
        for task in TASKS:
            mine, mse = results[row].get(task), results[MSE_MODEL].get(task)
            if mine is None or mse is None:
                continue
            cost = mse["psnr"] - mine["psnr"]
            verdicts[row][task] = {"psnr_cost": cost, "lpips_vgg_gain": mse["lpips_vgg"] - mine["lpips_vgg"],
                                   "lpips_gain": mse["lpips"] - mine["lpips"],
                                   "passes": cost <= MAX_PSNR_COST and mine["lpips_vgg"] < mse["lpips_vgg"]}
    return {"tasks": TASKS, "method": METHOD, "crop": args.crop, "photos": names, "rows": rows, "results": results, "resolved": resolved,
            "verdicts": verdicts, "threads": torch.get_num_threads(), "platform": platform.platform(),
            "command": "python benchmarks/prior_vs_mse.py " + " ".join(sys.argv[1:])}


def write(found: dict, stem: Path) -> None:
    from pnprgm import io

    io.write_json(stem.with_suffix(".json"), found)
    lines = [
        "# Prior-trained models against the MSE model inside PnP (held-out photos)",
        "",
        f"`{found['method']}` with the presets (no grain), {found['crop']}x{found['crop']} centre crops of the "
        f"{len(found['photos'])} held-out colour photos; mean over photos. LPIPS-VGG judges (no model was trained "
        f"with it). Command: `{found['command']}`.",
        "",
        "| task | model | PSNR | SSIM | LPIPS-alex | LPIPS-VGG | s / photo |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in found["tasks"]:
        for row in found["rows"]:
            r = found["results"][row].get(task)
            if r is not None:
                name = "presets' denoisers" if row == PRESETS else f"`{row}`"
                lines.append(f"| {task} | {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['lpips']:.3f} | "
                             f"{r['lpips_vgg']:.3f} | {r['seconds']:.1f} |")
    lines += ["", f"Bar: LPIPS-VGG below `{MSE_MODEL}`'s at a PSNR cost of at most {MAX_PSNR_COST} dB.", ""]
    for row, tasks in found["verdicts"].items():
        for task, v in tasks.items():
            lines.append(f"- `{row}`, {task}: PSNR cost {v['psnr_cost']:+.2f} dB, LPIPS-VGG gain {v['lpips_vgg_gain']:+.3f}, "
                         f"LPIPS-alex gain {v['lpips_gain']:+.3f}: {'passes' if v['passes'] else 'fails'}")
    io.write_bytes(stem.with_suffix(".md"), ("\n".join(lines) + "\n").encode())


def main(argv=None) -> None:
    args = parse_args(argv)
    write(measure(args), Path(args.out))


if __name__ == "__main__":
    main()
