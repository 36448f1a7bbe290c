"""Speed of one restoration (issue 3): a 256x256 colour image, SR x4, default preset, default denoiser.

Reports the seconds per image and, per iteration, the solver's own overhead (iteration time minus the time
inside the denoiser, both from the solver trace's ``seconds`` and ``denoiser_seconds``) next to the denoiser's
forward time; the target is an overhead under 10 % of an iteration. Writes ``benchmarks/speed.md`` and
``benchmarks/speed.json`` (an existing one only with ``--overwrite``).

    python benchmarks/speed.py --overwrite           # the sr preset's denoiser (unet-lpips), DRS
    python benchmarks/speed.py --denoiser nlm --solver hqs --repeats 5 --json /tmp/s.json --md /tmp/s.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout: the project's packages sit beside benchmarks/
    sys.path.insert(0, str(HERE.parent))
TARGET = 0.10  # solver overhead as a fraction of one iteration
SPEC = "sr4"  # the operator: 4x super-resolution by 4x4 block means (task sr)


def parse_args(argv=None) -> argparse.Namespace:
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(description=__doc__.splitlines()[0])
    parser.add_argument("--denoiser", default="default",
                        help="denoiser name or model file (default: the shipped default, or the preset's model)")
    parser.add_argument("--solver", default="drs", help="drs, admm or hqs (default: drs)")
    parser.add_argument("--image", default="astronaut", help="public benchmark image (default: astronaut)")
    parser.add_argument("--size", type=int, default=256, help="centre crop side (default: 256)")
    parser.add_argument("--noise", type=float, default=0.01, help="measurement noise std (default: 0.01)")
    parser.add_argument("--iters", type=int, default=None, help="override the preset's iterations")
    parser.add_argument("--repeats", type=int, default=3, help="timed restorations (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=str(HERE / "speed.json"), help="output JSON (default: benchmarks/speed.json)")
    parser.add_argument("--md", default=str(HERE / "speed.md"), help="output markdown (default: benchmarks/speed.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json and --md files")
    return parser.parse_args(argv)


def measure_speed(args: argparse.Namespace) -> dict:
    """Run the timed restorations and return the report as a dict."""
    import torch

    from pnprgm import io, operators, presets
    from pnprgm.benchmark import datasets
    from pnprgm.device import resolve_device
    from pnprgm.errors import UserError
    from pnprgm.metrics import psnr
    from pnprgm.restoration import prepare_restoration, restore

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    public = {image.name: image for image in datasets.public_set().images}
    if args.image not in public:
        raise UserError(f"--image {args.image!r} is not a public image; choose from {', '.join(public)}.")
    truth = datasets.centre_crop(public[args.image].load(), args.size)
    if truth.shape[0] != 3:
        raise UserError(f"--image {args.image} is gray; the speed benchmark uses a colour image.")
    physics = operators.build(SPEC, tuple(truth.shape), device=device)
    y = operators.measure(physics, truth[None].to(device), args.noise, seed=0)
    # restore's own choice of denoiser (a preset may name its shipped model when the default is asked for), built once
    plan = prepare_restoration(y, physics, denoiser=args.denoiser, solver=args.solver, noise_sigma=args.noise,
                               device=device, seed=0)
    args.denoiser, model = plan.denoiser_name, plan.model
    overrides = {"iterations": args.iters} if args.iters else {}

    restore(y, physics, denoiser=model, solver=args.solver, noise_sigma=args.noise, device=device, iterations=1)  # warm-up
    runs = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        x, result, settings = restore(y, physics, denoiser=model, solver=args.solver, noise_sigma=args.noise,
                                      device=device, seed=0, return_trace=True, **overrides)
        _sync(device)
        wall = time.perf_counter() - start
        iteration = [r.seconds for r in result.trace]
        inside = [r.denoiser_seconds for r in result.trace]
        runs.append({
            "seconds": wall,
            "iterations": len(result.trace),
            "iteration_seconds": statistics.mean(iteration),
            "denoiser_seconds": statistics.mean(inside),
            "overhead_seconds": statistics.mean(a - b for a, b in zip(iteration, inside)),
            "outside_loop_seconds": wall - sum(iteration),
        })

    # The denoiser's own forward time on the same image, outside any solver.
    noisy = truth[None].to(device) + 0.05 * torch.randn(truth[None].shape, generator=torch.Generator().manual_seed(1)).to(device)
    forwards = []
    with torch.no_grad():
        for _ in range(max(3, args.repeats)):
            start = time.perf_counter()
            model(noisy, 0.05)
            _sync(device)
            forwards.append(time.perf_counter() - start)

    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    fraction = median["overhead_seconds"] / median["iteration_seconds"]
    baseline = physics.initial_estimate(y).clamp(0, 1)
    return {
        "task": presets.task_of_spec(SPEC), "operator": SPEC, "image": f"{args.image} centre crop {truth.shape[1]}x{truth.shape[2]} (colour)",
        "denoiser": args.denoiser, "solver": args.solver, "preset": settings.preset, "params": settings.params,
        "noise": args.noise, "device": str(device), "torch_threads": torch.get_num_threads(),
        "cpu": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        "seconds_per_image": median["seconds"],
        "per_iteration": {
            "iteration_seconds": median["iteration_seconds"],
            "denoiser_seconds": median["denoiser_seconds"],
            "overhead_seconds": median["overhead_seconds"],
            "overhead_fraction": fraction,
        },
        "denoiser_forward_seconds": statistics.median(forwards),
        "denoiser_forward_shape": list(truth.shape),
        "target_overhead_fraction": TARGET,
        "meets_target": fraction < TARGET,
        "psnr": float(psnr(x.cpu(), truth[None])[0]),
        "baseline_psnr": float(psnr(baseline.cpu(), truth[None])[0]),
        "runs": runs,
        "versions": io.versions(),
        "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
    }


def _forward_size(report: dict) -> str:
    """The image the denoiser's forward was timed on (reports before it was recorded: 256x256 colour)."""
    channels, height, width = report.get("denoiser_forward_shape") or (3, 256, 256)
    return f"{height}x{width} {'colour' if channels == 3 else 'gray'}"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def markdown(report: dict) -> str:
    it = report["per_iteration"]
    verdict = "meets" if report["meets_target"] else "misses"
    lines = [
        "# Restoration speed",
        "",
        f"SR x4 of {report['image']}, noise {report['noise']}, denoiser `{report['denoiser']}` in `{report['solver']}` "
        f"(preset `{report['preset']}`, {report['runs'][0]['iterations']} iterations), device {report['device']}, "
        f"{report['torch_threads']} torch thread(s), {report['cpu']['cpu_count']} CPU(s). Median of {len(report['runs'])} runs "
        "after one warm-up; denoiser construction excluded.",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| seconds per image | {report['seconds_per_image']:.3f} |",
        f"| seconds per iteration | {it['iteration_seconds']:.4f} |",
        f"| denoiser time per iteration (inside the solver) | {it['denoiser_seconds']:.4f} |",
        f"| solver overhead per iteration | {it['overhead_seconds']:.4f} |",
        f"| overhead / iteration | {100 * it['overhead_fraction']:.2f} % (target < {100 * report['target_overhead_fraction']:.0f} %: {verdict}) |",
        f"| denoiser forward alone ({_forward_size(report)}) | {report['denoiser_forward_seconds']:.4f} |",
        f"| PSNR restored / baseline (dB) | {report['psnr']:.2f} / {report['baseline_psnr']:.2f} |",
        "",
        "Overhead per iteration = the iteration's wall time minus the time spent inside the denoiser "
        "(the solver trace's `seconds - denoiser_seconds`): the data step, the updates and the bookkeeping.",
        "",
        "Command:",
        "",
        "```sh",
        report["command"],
        "```",
        "",
        "| package | version |",
        "|---|---|",
        *[f"| {name} | {version} |" for name, version in report["versions"].items()],
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from pnprgm import io
    from pnprgm.cli.options import claim_outputs, script_main

    args = parse_args(argv)

    def run() -> None:
        claim_outputs([args.json, args.md], overwrite=args.overwrite, option="--json/--md")
        report = measure_speed(args)
        io.write_json(args.json, report)
        text = markdown(report)
        io.write_bytes(args.md, text.encode())
        print(text)

    return script_main(run)


if __name__ == "__main__":
    sys.exit(main())
