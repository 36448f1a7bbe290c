"""Does a model trained with a prior beat the MSE model inside PnP on photos no model saw? (issue 17's bar)

PnP-DRS (the presets, no grain) for 4x super-resolution and deblurring on the colour photos of the held-out 10 % of
the training set (``pnprgm.training.data.held_out_files``, seed 0), less any photo that trained a compared model or
one it was fine-tuned from (``unseen_held_out_files``: the folder grew since the first UNets, whose split differed),
256x256 centre crops, with each model given to ``--model``, beside the MSE UNet that a
prior-trained model starts from (``unet-denoiser-color``) and the presets' own denoisers. Metrics: PSNR, SSIM,
LPIPS-alex and LPIPS-VGG; LPIPS-VGG is the judge, since no model here was trained with it (the ``unet-lpips`` family,
the sr preset's model, was fine-tuned with LPIPS-alex). The bar (issue 17): better LPIPS than the MSE model at a PSNR
cost of at most 0.5 dB, on both tasks; and a model given with ``--start MODEL=START`` must also have a better
LPIPS-VGG than START, its untrained start (the model it was fine-tuned from, with the inputs the run added, after
one step at a zero learning rate): an added noise input's first faint grain passed the bar alone (2026-12-06e), so
only a gain over the start is the prior's. Writes ``benchmarks/prior_vs_mse.{json,md}``; the per-model benchmark JSONs
go to ``--work`` (reused by a rerun).

    python benchmarks/prior_vs_mse.py --model rgm-kld-denoiser-color --out benchmarks/prior_vs_mse_DATE
    python benchmarks/prior_vs_mse.py --model runs/rgm-kld-color/model.pt --limit 6 --out /tmp/check
"""
from __future__ import annotations

import argparse
import os
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
    def at_least_one(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
        return value

    from pnprgm.cli.options import OnceParser, noise_level_argument

    parser = OnceParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="colour model to judge (shipped name or model file); repeatable")
    parser.add_argument("--start", action="append", default=[], metavar="MODEL=START",
                        help="START is MODEL's untrained start (shown as a row); MODEL must also beat it; repeatable")
    parser.add_argument("--train", default=str(HERE.parent.parent / "shared" / "data" / "train"),
                        help="training photo folder whose held-out 10 %% is used (default ../shared/data/train)")
    parser.add_argument("--task", action="append", choices=("sr", "deblur", "denoise", "inpaint"), default=None,
                        help="task to judge, repeatable (default: sr and deblur, the bar's); denoise shows the model "
                             "as a plain denoiser (noise 25/255), apart from the solver")
    parser.add_argument("--noise", type=noise_level_argument, default=None,
                        help="measurement noise std of every task, e.g. 5/255 (default: each task's own; a "
                             "posterior sampler's PSNR cost grows as the noise falls)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="solver parameter for every row, repeatable (e.g. symmetry=none: the denoise preset "
                             "averages 8 flipped calls, which averages a sampler's draws away)")
    parser.add_argument("--limit", type=at_least_one, default=None, help="use only the first N held-out colour photos")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "prior_vs_mse"),
                        help="folder for the per-model benchmark JSONs, a cache reused by a rerun (default runs/prior_vs_mse)")
    parser.add_argument("--out", default=str(HERE / "prior_vs_mse"), help="output stem (default benchmarks/prior_vs_mse)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def verdict(mine: dict, mse: dict, start: dict | None = None) -> dict:
    """The bar for one task: ``psnr_mse - psnr <= MAX_PSNR_COST`` and ``lpips_vgg < lpips_vgg_mse``, and with the
    model's untrained ``start`` also ``lpips_vgg < lpips_vgg_start``."""
    cost = mse["psnr"] - mine["psnr"]
    found = {"psnr_cost": cost, "lpips_vgg_gain": mse["lpips_vgg"] - mine["lpips_vgg"],
             "lpips_gain": mse["lpips"] - mine["lpips"],
             "passes": cost <= MAX_PSNR_COST and mine["lpips_vgg"] < mse["lpips_vgg"]}
    if start is not None:
        found["lpips_vgg_gain_over_start"] = start["lpips_vgg"] - mine["lpips_vgg"]
        found["passes"] = found["passes"] and mine["lpips_vgg"] < start["lpips_vgg"]
    return found


def parse_starts(items: list[str]) -> dict[str, str]:
    """``["MODEL=START", ...]`` -> ``{MODEL: START}``."""
    from pnprgm.errors import UserError

    starts = {}
    for item in items:
        model, sep, start = item.partition("=")
        if not sep or not model or not start or model == start:
            raise UserError(f"--start {item!r}: give MODEL=START, two different models (START: MODEL's untrained "
                            f"start).")
        if model in starts:
            raise UserError(f"--start names {model} twice; give one start per model.")
        starts[model] = start
    return starts


def heldout_colour(train: Path, folder: Path, models: list[str]) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Link the held-out photos that none of ``models`` (nor a model it was fine-tuned from) trained on into ``folder``
    (made afresh: it holds only links this script made); the names of the colour ones (gray photos would run the gray
    default for every row), the left-out photos with the models that saw them, and the lineage steps not followed."""
    from pnprgm.benchmark import datasets
    from pnprgm.errors import UserError
    from pnprgm.training.data import unseen_held_out_files

    if not train.is_dir():
        raise UserError(f"--train {train}: not a folder; give the training photo folder (../shared/data/train).")
    held, left_out, unknown = unseen_held_out_files(train, models)  # before the folder is touched
    if folder.is_dir():
        # this script's links point at photos of --train; anything else there is the user's
        ours = {link for link in folder.iterdir()
                if link.is_symlink() and os.readlink(link) == str((train / link.name).resolve())}
        strangers = [p.name for p in folder.iterdir() if p not in ours]
        if strangers:
            raise UserError(f"{folder} holds files this script did not make ({', '.join(strangers[:3])}); "
                            f"give another --work.")
        for link in ours:
            link.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for path in held:
        (folder / path.name).symlink_to(path.resolve())
    names = [image.name for image in datasets.folder_set(folder).images if image.load().shape[0] == 3] if held else []
    if not names:
        raise UserError(f"the held-out 10 % of {train} has no colour photo that the compared models never saw; add "
                        f"photos to the folder.")
    return names, left_out, unknown


def _run_row(config, json_path: Path, quiet: bool):
    """The benchmark of one row, reusing ``json_path`` when it was made with the same settings (else run afresh)."""
    from pnprgm.benchmark.runner import run_benchmark
    from pnprgm.errors import UserError

    from pnprgm.benchmark.report import is_results_json

    # the work folder is this script's cache of benchmark results: records of photos no longer judged may go
    # (overwrite), and other settings (crop, versions) mean a fresh run; any other file there is the user's
    if json_path.exists() and not is_results_json(json_path):
        raise UserError(f"{json_path} is not a benchmark results file this script wrote; give another --work.")
    if json_path.is_file():
        try:
            return run_benchmark(config, json_path=json_path, resume=True, overwrite=True, progress=not quiet)
        except UserError as err:
            if "--resume" not in str(err):
                raise
    return run_benchmark(config, json_path=json_path, overwrite=True, progress=not quiet)


def measure(args: argparse.Namespace, argv: list[str]) -> dict:
    import json
    import re

    import torch

    from pnprgm import io, presets
    from pnprgm.benchmark import report
    from pnprgm.benchmark import tasks as benchmark_tasks
    from pnprgm.benchmark.runner import build_config
    from pnprgm.cli.options import parse_assignments
    from pnprgm.errors import UserError
    from pnprgm.rgm import models

    if args.threads:
        torch.set_num_threads(args.threads)
    for model in args.model:
        if models.source_info(model)[0] != 3:
            raise UserError(f"--model {model} is a gray model; the held-out photos judged here are colour: give a "
                            f"colour model.")
    work = Path(args.work)
    tasks = tuple(dict.fromkeys(args.task)) if args.task else TASKS
    overrides = parse_assignments(tuple(args.overrides))
    # the bar is sr and deblur together at their own noise and presets: another run is shown, never judged
    judged = args.noise is None and not overrides and set(TASKS) <= set(tasks)
    starts = parse_starts(args.start)
    missing = sorted(set(starts) - set(args.model))
    if missing:
        raise UserError(f"--start names {', '.join(missing)}, which is not a --model; give it with --model too.")
    candidates = [m for m in dict.fromkeys(args.model) if m != MSE_MODEL]
    rows = [PRESETS, MSE_MODEL] + list(dict.fromkeys([*candidates, *(s for s in starts.values() if s != MSE_MODEL)]))
    preset_models = [presets.denoiser_for(presets.resolve(None, solver="drs", spec=benchmark_tasks.registry.get(task).spec),
                                          models.DEFAULT_DENOISER) for task in tasks]
    names, left_out, unknown = heldout_colour(Path(args.train), work / "heldout", [*preset_models, *rows[1:]])
    names = names[:args.limit]
    results, resolved = {}, {}
    for row in rows:
        config = build_config({"data": str(work / "heldout"), "images": tuple(names), "tasks": tasks,
                               "methods": (METHOD,), "crop": args.crop, "metrics": METRICS, "figure_images": 0,
                               "models": () if row == PRESETS else (row,), "noise": args.noise,
                               "overrides": overrides})
        variant = ""
        if args.noise is not None or overrides:  # readable, and a hash so that no two settings share a cache file
            settings = json.dumps([args.noise, sorted(overrides.items())])
            variant = "".join(f"_{key}-{value}" for key, value in sorted(overrides.items())) + \
                "_" + io.sha256_bytes(settings.encode())[:8]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", row + variant).strip("_")
        done = _run_row(config, work / f"{slug}.json", args.quiet)
        summary = report.summarise(done.records, METRICS)
        results[row] = {}
        for task in tasks:
            entry = summary.get((task, METHOD))
            if entry is None or entry["n"] != len(names) or any(entry[m] is None for m in METRICS):
                raise UserError(f"{row}: {task} was not measured on all {len(names)} photos (see "
                                f"{work / (slug + '.json')}, 'skipped'); rows compared on different photos mislead.")
            results[row][task] = {**{m: entry[m][0] for m in METRICS}, "seconds": entry["seconds"], "n": entry["n"]}
        resolved[row] = done.data["config"]["resolved"]["methods"][METHOD]
    verdicts = {row: {task: verdict(results[row][task], results[MSE_MODEL][task],
                                    results[starts[row]][task] if row in starts else None) for task in tasks}
                for row in rows[2:]}
    for row, by_task in verdicts.items():
        by_task["passes_all"] = judged and all(by_task[task]["passes"] for task in TASKS)
    return {"tasks": tasks, "method": METHOD, "crop": args.crop, "noise": args.noise, "overrides": overrides,
            "judged": judged, "photos": names, "left_out": left_out, "lineage_unknown": unknown,
            "rows": rows, "starts": starts, "results": results,
            "resolved": resolved, "verdicts": verdicts, "threads": torch.get_num_threads(),
            "platform": platform.platform(), "command": "python benchmarks/prior_vs_mse.py " + " ".join(argv)}


def _grouped(left_out: dict[str, list[str]]) -> dict[tuple[str, ...], list[str]]:
    """{photo: models that saw it} -> {models: photos}, for a short report."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, saw in left_out.items():
        groups.setdefault(tuple(saw), []).append(name)
    return groups


def write(found: dict, stem: Path) -> None:
    from pnprgm import io
    from pnprgm.cli.options import stem_files

    json_path, md = stem_files(stem, ".json", ".md")
    io.write_json(json_path, found)
    lines = [
        "# Prior-trained models against the MSE model inside PnP (held-out photos)",
        "",
        f"`{found['method']}` with the presets (no grain), "
        + ("" if found.get("noise") is None else f"measurement noise {found['noise'] * 255:.3g}/255 on every task, ")
        + "".join(f"`{key}={value}`, " for key, value in (found.get("overrides") or {}).items())
        + f"{found['crop']}x{found['crop']} centre crops of the "
        f"{len(found['photos'])} held-out colour photos; mean over photos. LPIPS-VGG judges (no model was trained "
        f"with it). Command: `{found['command']}`.",
        "",
        *([found["note"], ""] if found.get("note") else []),
        *([f"Left out: {len(found['left_out'])} held-out photos that a compared model, or one it was fine-tuned from, "
           f"trained on (" + "; ".join(f"{', '.join(names)}: seen by {', '.join(f'`{m}`' for m in saw)}"
                                        for saw, names in _grouped(found["left_out"]).items()) + ").", ""]
          if found.get("left_out") else []),
        *([f"Lineage not followed (their photos could not be checked): {', '.join(found['lineage_unknown'])}.", ""]
          if found.get("lineage_unknown") else []),
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
    lines += ["", f"Bar: LPIPS-VGG below `{MSE_MODEL}`'s at a PSNR cost of at most {MAX_PSNR_COST} dB"
              + (", and below its untrained start's for a model given one (--start)" if found.get("starts") else "")
              + ".", ""]
    for row, tasks in found["verdicts"].items():
        judged = "passes on both tasks" if tasks["passes_all"] else (
            "does not pass" if found["judged"]
            else "not judged (" + (found.get("unjudged_reason")
                                   or f"the bar needs {' and '.join(TASKS)} at their own noise and presets") + ")")
        of = [m for m, start in (found.get("starts") or {}).items() if start == row]
        role = f" (the untrained start of {', '.join(f'`{m}`' for m in of)}: grain alone may pass this)" if of else ""
        lines.append(f"- `{row}`{role}: {judged}")
        for task in found["tasks"]:
            v = tasks[task]
            over_start = (f", over its start `{found['starts'][row]}` {v['lpips_vgg_gain_over_start']:+.4f}"
                          if "lpips_vgg_gain_over_start" in v else "")
            lines.append(f"  - {task}: PSNR cost {v['psnr_cost']:+.2f} dB, LPIPS-VGG gain {v['lpips_vgg_gain']:+.3f}"
                         f"{over_start}, LPIPS-alex gain {v['lpips_gain']:+.3f}: {'passes' if v['passes'] else 'fails'}")
    io.write_bytes(md, ("\n".join(lines) + "\n").encode())


def main(argv=None) -> int:
    from pnprgm.cli.options import claim_outputs, stem_files
    from pnprgm.errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        claim_outputs(stem_files(args.out, ".json", ".md"), overwrite=args.overwrite)
        write(measure(args, argv), Path(args.out))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
