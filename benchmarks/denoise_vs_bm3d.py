"""Denoising quality of the learned denoisers against BM3D on photos no model was trained on.

Sets: the held-out 10 % of the training photos (``pnprgm.training.data.held_out_files``, seed 0: the photos the
GPU recipe validated on, here at full quality, not the packed JPEGs), less those that trained a compared model or one
it was fine-tuned from (``unseen_held_out_files``; the older UNets saw 8 of them), and the public benchmark photos
(``pnprgm.benchmark.datasets.public_set``). 256x256 centre crops; colour photos are denoised by the colour
methods, and the gray set is the public gray photos plus the held-out photos converted to BT.601 luma. Noise
std 15, 25 and 50 /255, one fixed noise draw per (image, level); one call per image, no self-ensemble; PSNR of
the clamped output. BM3D is the ``bm3d`` package (colour profile ``bm3d_rgb`` for colour images).

``heldout-color-jpegQ`` (``--jpeg-quality Q``, default 75, 0 leaves it out) is the held-out colour set with each crop
saved as JPEG at quality Q (4:2:0, as cameras and Pillow save; ``pnprgm.training.recipe.jpeg_round_trip``) before the
noise is added, with the same noise draws: most users' photos are JPEGs, and the public photos are partly decoded
JPEGs (sklearn's ``china``, skimage's ``chelsea``, ``coffee``, ``rocket``).

    python benchmarks/denoise_vs_bm3d.py --json benchmarks/denoise_vs_bm3d.json --md benchmarks/denoise_vs_bm3d.md \
        --resume --overwrite

``--resume`` reuses the records of a previous JSON of this script (same image, level, method and model sha256) and
rewrites it; an existing ``--md`` (or a ``--json`` without ``--resume``) is replaced only with ``--overwrite``. A held-out
photo whose three channels are equal counts as gray (the benchmark runner's rule, ``datasets.as_gray_or_rgb``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pnprgm.benchmark.datasets import as_gray_or_rgb, centre_crop, public_set  # noqa: E402
from pnprgm.io import read_image, read_json, sha256_file, write_bytes, write_json  # noqa: E402
from pnprgm.metrics.fidelity import psnr  # noqa: E402
from pnprgm.training.data import convert_channels, held_out_files, unseen_held_out_files  # noqa: E402

LEVELS = (15, 25, 50)


def images(train_folder: Path, crop: int, model_files: list[str], jpeg_quality: int = 0) -> dict[str, list[tuple[str, torch.Tensor, int]]]:
    """``{"heldout-color": [...], "heldout-gray": [...], "public-color": [...], "public-gray": [...]}`` (and
    ``heldout-color-jpegQ`` for ``jpeg_quality`` Q > 0) of
    ``(name, image, noise index)``; a held-out photo that trained one of ``model_files`` (or its start) is left out,
    the others keep the noise index of their place among all held-out photos, so their noise draws do not move."""
    from pnprgm.training.recipe import jpeg_round_trip

    jpeg_set = f"heldout-color-jpeg{jpeg_quality}"
    names = ("heldout-color", "heldout-gray") + ((jpeg_set,) if jpeg_quality else ()) + ("public-color", "public-gray")
    sets: dict[str, list[tuple[str, torch.Tensor, int]]] = {k: [] for k in names}
    unseen, left_out, unknown = unseen_held_out_files(train_folder, model_files)
    if left_out or unknown:
        print(f"left out {len(left_out)} held-out photos a compared model or its start trained on"
              + (f"; lineage not followed: {', '.join(unknown)}" if unknown else ""), flush=True)
    kept = {path.name for path in unseen}
    colour_index = 0
    for index, path in enumerate(held_out_files(train_folder)):
        image = centre_crop(read_image(path), crop)
        if path.name in kept:
            # a photo whose channels are equal is gray (the benchmark runner's rule): in the gray set only
            if as_gray_or_rgb(image).shape[0] == 3:
                sets["heldout-color"].append((path.stem, image[:3], colour_index))
                if jpeg_quality:
                    sets[jpeg_set].append((path.stem, jpeg_round_trip(image[:3], jpeg_quality),
                                           colour_index))
            sets["heldout-gray"].append((path.stem, convert_channels(image, 1), index))
        colour_index += image.shape[0] == 3  # counted as before that rule: the other photos keep their noise draws
    public = public_set()
    for note in public.notes:  # a table made without the bench extra has fewer public photos: say so
        print(f"note: {note}", file=sys.stderr, flush=True)
    for source in public.images:
        image = centre_crop(source.load(), crop)
        chosen = sets["public-color" if image.shape[0] == 3 else "public-gray"]
        chosen.append((source.name, image, len(chosen)))
    return sets


def methods(models: dict[str, str]) -> dict[str, dict]:
    """name -> {"build": channels -> denoiser, "files": {channels: path}}."""
    from pnprgm.denoisers.classical import BM3DDenoiser
    from pnprgm.denoisers.rgm import load_denoiser
    from pnprgm.rgm.models import model_path

    found = {"bm3d": {"build": lambda channels: BM3DDenoiser(), "files": {}}}
    for name, spec in models.items():
        color, _, gray = spec.partition(",")
        files = {3: str(model_path(color)), 1: str(model_path(gray or color))}
        found[name] = {"build": (lambda files: lambda channels: load_denoiser(files[channels]))(files), "files": files}
    return found


def main() -> int:
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-folder", default=str(REPO.parent / "shared" / "data" / "train"))
    parser.add_argument("--model", action="append", default=[], metavar="NAME=COLOR[,GRAY]",
                        help="a learned method: shipped names or model files (colour, then gray)")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "denoise_vs_bm3d.json"))
    parser.add_argument("--md", default=str(REPO / "benchmarks" / "denoise_vs_bm3d.md"))
    parser.add_argument("--jpeg-quality", type=int, default=75, choices=range(0, 101), metavar="Q",
                        help="quality of the held-out JPEG set (0: no such set)")
    parser.add_argument("--resume", action="store_true", help="reuse the records of --json (written by this script)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json and --md files")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from pnprgm.cli.options import script_main

    return script_main(lambda: run(args))


def _previous_records(path: Path) -> list[dict]:
    """The records of an earlier --json of this script (--resume); anything else is a :class:`UserError`."""
    from pnprgm.errors import UserError

    try:
        content = read_json(path)
    except (OSError, ValueError):
        content = None
    records = content.get("records") if isinstance(content, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"set", "image", "level", "method"} <= set(r)
                                                for r in records):
        raise UserError(f"--resume: {path} is not a results file of this script (no list of records); give its "
                        f"--json, or leave --resume out.")
    return records


def run(args: argparse.Namespace) -> int:
    from pnprgm import io
    from pnprgm.cli.options import claim_outputs
    from pnprgm.errors import UserError

    torch.set_num_threads(args.threads)
    resumed = args.resume and Path(args.json).is_file()
    previous_records = _previous_records(Path(args.json)) if resumed else []
    bad = [item for item in args.model if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        raise UserError(f"--model {bad[0]}: give NAME=COLOR[,GRAY], e.g. --model \"mine=runs/a/c.pt,runs/a/g.pt\".")
    models = dict(item.split("=", 1) for item in args.model) or {
        "drunet (new default)": "drunet-denoiser-color,drunet-denoiser-gray",
        "unet-denoiser (previous default)": "unet-denoiser-color,unet-denoiser-gray"}
    found = methods(models)
    model_files = [f for spec in found.values() for f in spec["files"].values()]
    io.refuse_inputs([args.json, args.md], model_files, option="--json/--md")  # --resume or --overwrite: never these
    # --resume continues its own --json (checked above); anything else there, and the --md, need --overwrite
    claim_outputs([args.md] if resumed else [args.json, args.md], overwrite=args.overwrite, option="--json/--md")
    if Path(args.json).resolve() == Path(args.md).resolve():
        raise UserError("--json and --md name the same file; give each its own name.")
    sets = images(Path(args.train_folder), args.crop, sorted({f for spec in found.values() for f in spec["files"].values()}),
                  args.jpeg_quality)
    previous = {(r["set"], r["image"], r["level"], r["method"], r.get("sha256")): r for r in previous_records}
    records = []
    total = sum(len(v) for v in sets.values()) * len(LEVELS) * len(found)
    done = 0
    for set_name, items in sets.items():
        channels = 1 if set_name.endswith("gray") else 3
        for method, spec in found.items():
            digest = sha256_file(spec["files"][channels]) if spec["files"] else None
            denoiser = None
            for name, clean, index in items:
                for level in LEVELS:
                    done += 1
                    key = (set_name, name, level, method, digest)
                    if key in previous:
                        records.append(previous[key])
                        continue
                    denoiser = denoiser or spec["build"](channels)
                    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1000 * level + index))
                    noisy = (clean + level / 255 * noise)[None]
                    started = time.perf_counter()
                    with torch.no_grad():
                        out = denoiser(noisy, level / 255).clamp(0, 1)
                    seconds = time.perf_counter() - started
                    records.append({"set": set_name, "image": name, "level": level, "method": method, "sha256": digest,
                                    "psnr": round(float(psnr(out, clean[None])), 4), "seconds": round(seconds, 3)})
                    print(f"[{done}/{total}] {set_name} {name} {level} {method}: {records[-1]['psnr']:.2f} dB "
                          f"{seconds:.2f} s", flush=True)
                write_json(args.json, {"crop": args.crop, "levels": LEVELS, "models": {m: s["files"] for m, s in found.items()},
                                       "torch_threads": args.threads, "records": records})
    write_bytes(args.md, table(records, list(found), sets, args.threads).encode())
    print(Path(args.md).read_text())
    return 0


def table(records: list[dict], method_names: list[str], sets: dict, threads: int) -> str:
    lines = ["# Denoising: learned denoisers vs BM3D on photos no model was trained on", "",
             "Generated by `python benchmarks/denoise_vs_bm3d.py` (see its docstring for the protocol). Mean PSNR (dB) "
             f"over each set, 256x256 centre crops, one call per image, no self-ensemble; seconds per image on this "
             f"machine's CPU ({threads} torch thread(s); timings vary with what else runs), in brackets.", ""]
    for set_name, items in sets.items():
        lines += [f"## {set_name} ({len(items)} photos)", "",
                  "| method | " + " | ".join(f"sigma {lv}" for lv in LEVELS) + " |", "|---|" + "---|" * len(LEVELS)]
        for method in method_names:
            cells = []
            for level in LEVELS:
                rows = [r for r in records if r["set"] == set_name and r["method"] == method and r["level"] == level]
                if rows:
                    mean = sum(r["psnr"] for r in rows) / len(rows)
                    secs = sum(r["seconds"] for r in rows) / len(rows)
                    cells.append(f"{mean:.2f} ({secs:.2f} s)")
                else:
                    cells.append("-")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
