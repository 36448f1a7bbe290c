"""Choose preset values: a small grid of solver parameters per task, scored on a few public photos.

The presets in ``pnprgm/presets.py`` were chosen with this script (its output is ``benchmarks/tuning.md``):
per task, every candidate below runs through the benchmark runner on the tuning images, and the table shows
the mean PSNR and LPIPS per method and candidate. Tuning touches only these preset values, never a model.

    python benchmarks/tune_presets.py --task sr --method pnp-drs,nlm-hqs --out benchmarks/tuning.md
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from pnprgm.benchmark import tasks
from pnprgm.benchmark.runner import build_config, run_benchmark

#: Candidate overrides per benchmark task (each merged over the task's preset).
CANDIDATES: dict[str, list[dict]] = {
    "sr": [{}, {"lam": 0.1}, {"lam": 0.5}, {"iterations": 12}, {"sigma_start": 25 / 255}],
    "deblur": [{}, {"lam": 0.1}, {"lam": 0.5}, {"iterations": 16}, {"sigma_start": 25 / 255}],
    "inpaint": [{}, {"sigma_start": 49 / 255}, {"sigma_start": 80 / 255}, {"sigma_start": 49 / 255, "lam": 0.1},
                {"iterations": 12, "sigma_start": 49 / 255}],
    "colorize": [{}, {"lam": 0.1}, {"lam": 0.5}, {"sigma_start": 80 / 255}, {"sigma_start": 160 / 255},
                 {"sigma_start": 200 / 255}, {"iterations": 40}],
    "denoise": [{}, {"symmetry": "none"}, {"symmetry": "random"}],
}
#: Asked for with --candidates symmetry: the preset's symmetry against none, on every task.
SYMMETRY_CANDIDATES = [{}, {"symmetry": "none"}]
TUNING_IMAGES = ("astronaut", "coffee", "camera")


def main() -> int:
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sr,deblur,inpaint,colorize",
                        help=f"comma-separated benchmark tasks: {', '.join(tasks.registry.names())} (old names: "
                             f"{', '.join(f'{old} for {new}' for old, new in tasks.registry.aliases().items())})")
    parser.add_argument("--method", default="pnp-drs,pnp-hqs,tv-admm,nlm-hqs", help="comma-separated methods")
    parser.add_argument("--images", default=",".join(TUNING_IMAGES), help="comma-separated public images")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/tuning.md", help="markdown table (appended)")
    parser.add_argument("--candidates", choices=["grid", "symmetry"], default="grid",
                        help="grid: CANDIDATES per task; symmetry: the preset against symmetry none")
    args = parser.parse_args()
    from pnprgm.cli.options import script_main

    return script_main(lambda: run(parser, args))


#: The header of this script's tables: an existing --out holds one (a file it appended to) or is refused.
TABLE_HEADER = "| method | override | PSNR | LPIPS | s/image |"


def run(parser, args) -> None:
    from pnprgm import io
    from pnprgm.errors import UserError

    out = Path(args.out)
    if out.is_symlink() or out.is_dir() or (out.exists() and TABLE_HEADER not in out.read_text(errors="replace")):
        raise UserError(f"--out {out} is not a table this script appended to (a link, a folder, or a file without its "
                        f"tables); give another --out.")
    io.check_writable(out, option="--out")
    chosen = [tasks.registry.canonical(name.strip()) for name in args.task.split(",") if name.strip()]
    for name in chosen:
        if name not in CANDIDATES:
            parser.error(tasks.registry.unknown_message(name))
    torch.set_num_threads(args.threads)
    lines = []
    for task in chosen:
        lines += [f"\n### {task} (images {args.images}, crop {args.crop})\n", TABLE_HEADER,
                  "|---|---|---|---|---|"]
        for overrides in CANDIDATES[task] if args.candidates == "grid" else SYMMETRY_CANDIDATES:
            config = build_config({"images": args.images.split(","), "tasks": [task], "methods": args.method.split(","),
                                   "crop": args.crop, "metrics": ["psnr", "lpips"], "overrides": overrides})
            start = time.time()
            results = run_benchmark(config, progress=False)
            for method in config.methods:
                records = [r for r in results.records if r["method"] == method]
                if not records:
                    continue
                psnr = statistics.mean(float(r["psnr"]) for r in records)  # "inf" for an exact restoration
                lpips = statistics.mean(r["lpips"] for r in records)
                seconds = statistics.mean(r["seconds"] for r in records)
                lines.append(f"| {method} | {json.dumps(overrides)} | {psnr:.2f} | {lpips:.4f} | {seconds:.1f} |")
                print(lines[-1], flush=True)
            print(f"# {task} {overrides}: {time.time() - start:.0f} s", flush=True)
    before = out.read_text() if out.exists() else ""  # appended in one atomic write: a failure leaves the old table
    io.write_bytes(out, (before + "\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
