"""Benchmark reports: the markdown table (mean +/- std per task and method) and the figure grid (PNG).

Both are built from the results JSON document (``BenchmarkResults.data``), so a markdown report can be
rebuilt from a JSON file alone; the figure also needs the images kept in memory by the run.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from pnprgm import figures, io

#: First line of every markdown report; marks a file as one this tool may replace.
MARKDOWN_TITLE = "# pnprgm benchmark"
#: Stamped into every figure (PNG "Software" text, JPEG comment); marks a file as one this tool may replace.
FIGURE_STAMP = "pnprgm benchmark"
#: Keys every results JSON holds.
RESULTS_KEYS = frozenset({"protocol", "versions", "config", "records"})
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: What a results JSON of the first format (no ``config.metrics``) computed.
FIRST_FORMAT_METRICS = ("psnr", "ssim", "lpips")


@dataclass(frozen=True)
class Column:
    """One metric column of the report."""

    name: str
    title: str
    label: str
    digits: int
    higher_is_better: Optional[bool]  # None: unknown direction, nothing is marked best
    unit: str = ""


def columns(data: Mapping[str, Any]) -> list[Column]:
    """The metric columns of a results document: every metric the run asked for, in its order.

    Described by the metrics registry, else by the document's own ``metrics`` section (a metric this version of
    pnprgm does not know), else by its name alone.
    """
    from pnprgm.metrics import METRICS

    names = list(data.get("config", {}).get("metrics") or FIRST_FORMAT_METRICS)
    described = data.get("metrics") or {}
    result = []
    for name in names:
        if name in METRICS:
            metric = METRICS.get(name)
            result.append(Column(name, metric.title, metric.label, metric.digits, metric.higher_is_better, metric.unit))
        else:
            info = described.get(name) or {}
            result.append(Column(name, info.get("title", name), info.get("label", name), int(info.get("digits", 3)),
                                 info.get("higher_is_better"), info.get("unit", "")))
    return result


# -- statistics -------------------------------------------------------------------------------------------

def summarise(records: Iterable[Mapping[str, Any]], metrics: Iterable[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, method) -> {metric: (mean, std, n) or None, "seconds": mean, "n": images}; std is the sample std
    over images (NaN for a single image: no spread to show)."""
    metrics = list(metrics)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["task"], record["method"]), []).append(record)
    summary = {}
    for key, items in groups.items():
        entry: dict[str, Any] = {"n": len(items), "seconds": float(np.mean([r["seconds"] for r in items]))}
        for metric in metrics:
            values = [float(r[metric]) for r in items if r.get(metric) is not None]  # "inf": an exact restoration
            entry[metric] = _stats(values) if values else None
        summary[key] = entry
    return summary


def _stats(values: list[float]) -> tuple[float, float, int]:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():  # an infinite PSNR makes the mean infinite; its spread has no number
        return float(array.mean()), float("nan"), int(array.size)
    std = float(array.std(ddof=1)) if array.size > 1 else float("nan")  # one image has no spread to show
    return float(array.mean()), std, int(array.size)


def format_value(value: float | str, digits: int) -> str:
    """A metric value as the report shows it (an infinite one, the PSNR of an exact restoration, as ∞)."""
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    return f"{number:.{digits}f}"


def _default_names(info: Mapping[str, Any]) -> str:
    """`` (drunet-denoiser-color, drunet-denoiser-gray)``: the shipped models behind ``default`` in a method's record,
    named where today's default files are those the record hashed (an older results JSON keeps its hashes only)."""
    if info.get("denoiser") != "default" or info.get("user_models"):
        return ""
    from pnprgm.rgm import models

    hashed = info.get("models") or {}
    names = []
    for key in sorted(k for k in hashed if k.isdigit()):
        try:
            entry = models.default_model(int(key))
        except Exception:  # a damaged install: the record's hashes are what it has
            return ""
        names.append(f"`{entry.name}`" if entry.sha256 == hashed[key] else f"sha256 {hashed[key][:12]}")
    return f" ({', '.join(names)})" if names else ""


def _mean_and_std(stats: tuple[float, float, int], digits: int) -> str:
    mean, std, _ = stats
    return format_value(mean, digits) if not math.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def best_methods(summary: Mapping[tuple[str, str], Mapping[str, Any]], task: str, metric: str, digits: int,
                 higher_is_better: Optional[bool] = None) -> set[str]:
    """Methods whose mean ``metric`` on ``task`` is the best at the displayed precision (ties all win).

    :param higher_is_better: the metric's direction (default: the metrics registry's; unknown: no method wins).
    """
    if higher_is_better is None:
        from pnprgm.metrics import METRICS

        if metric not in METRICS:
            return set()
        higher_is_better = METRICS.get(metric).higher_is_better
    values = {method: round(entry[metric][0], digits) for (t, method), entry in summary.items()
              if t == task and entry.get(metric) is not None}
    if not values:
        return set()
    target = max(values.values()) if higher_is_better else min(values.values())
    return {method for method, value in values.items() if value == target}


# -- markdown ---------------------------------------------------------------------------------------------

def markdown(data: Mapping[str, Any]) -> str:
    """The markdown report of a results document."""
    config = data["config"]
    resolved = config["resolved"]
    records = data["records"]
    metric_columns = columns(data)
    summary = summarise(records, [column.name for column in metric_columns])
    task_names = list(config["tasks"])
    method_names = [m for m in config["methods"] if resolved["methods"].get(m, {}).get("available", True)]
    images = resolved["images"]
    lines = [MARKDOWN_TITLE, ""]
    if data.get("status") != "complete":
        lines += [f"> **Partial results** (status: {data.get('status')}): {len(records)} records so far.", ""]
    crop = f"centre crops of at most {config['crop']} px" if config["crop"] else "whole images"
    lines += [
        f"{len(images)} images from `{resolved['data']}` ({crop}), seed {config['seed']}, device {resolved['device']}. "
        "Mean ± std (sample std over images); the best method of each task is in **bold** "
        f"({_directions(metric_columns)}). Seconds: wall time of the method alone per image "
        "(model loading and metrics excluded).",
        "",
        f"## {_titled(metric_columns[0])} overview",
        "",
    ]
    lines += overview(data)
    lines += ["", "## Results per task", ""]
    for task in task_names:
        info = resolved["tasks"][task]
        lines += [f"### {task}: `{info['spec']}`, noise σ = {info['noise']:.4g}", ""]
        lines += ["| method | " + " | ".join(column.label for column in metric_columns) + " | seconds | images |",
                  "|---|" + "---:|" * (len(metric_columns) + 2)]
        for method in method_names:
            entry = summary.get((task, method))
            if entry is None:
                continue
            cells = []
            for column in metric_columns:
                stats, digits = entry[column.name], column.digits
                if stats is None:
                    cells.append("–")
                    continue
                text = _mean_and_std(stats, digits)
                best = best_methods(summary, task, column.name, digits, column.higher_is_better)
                cells.append(f"**{text}**" if method in best else text)
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {entry['seconds']:.3g} | {entry['n']} |")
        lines.append("")
    lines += ["## Methods", ""]
    for method in config["methods"]:
        info = resolved["methods"][method]
        denoiser = f"`{info['denoiser']}`{_default_names(info)}"
        if info.get("user_models"):  # --model in place of the shipped default
            denoiser = " and ".join(f"`{source}` ({io.channel_kind(c)}, --model)"
                                    for c, source in sorted(info["user_models"].items()))
        what = f"denoiser {denoiser} in `{info['solver']}`, {info['preset']} preset" if info["kind"] == "pnp" else info["preset"]
        if info["kind"] == "pnp" and not info.get("user_models"):  # a task's preset may run another model
            replaced = [f"{task} `{(info.get('presets') or {}).get(task, {}).get('denoiser')}`"
                        for task in config["tasks"] if (info.get("presets") or {}).get(task, {}).get("denoiser")]
            what += f"; the presets of these tasks run another model: {', '.join(replaced)}" if replaced else ""
        state = "" if info["available"] else f" — **unavailable**: {info['unavailable_reason']}"
        note = f" ({info['note']})" if info.get("note") else ""
        lines.append(f"- `{method}`: {what}{note}{state}")
    if config.get("overrides"):
        lines.append(f"- solver overrides for every PnP method: `{json.dumps(config['overrides'])}`")
    lines += ["", "## Images", "", "`#`: the image's place in the selection, from 0 (skipped images keep theirs); each measurement's "
              "seed derives from it, the run seed and the task.", "", "| # | image | size | origin | sha256 |",
              "|---:|---|---|---|---|"]
    for image in images:
        digest = (image.get("sha256") or "")[:12]
        size = "x".join(map(str, image["shape"]))
        lines.append(f"| {image['index']} | {_cell(image['name'])} | {size} | {_cell(image['origin'])} | {digest} |")
    skipped = data.get("skipped") or []
    if skipped:
        lines += ["", "## Skipped", ""]
        for entry in skipped:
            where = ", ".join(f"{key} {entry[key]}" for key in ("image", "task", "method") if key in entry)
            lines.append(f"- {entry['kind']}{': ' + where if where else ''}: {entry['reason']}")
    if data.get("metrics"):  # written since metrics come from the registry
        lines += ["", "## Metrics", ""]
        lines += [f"- `{name}` ({info.get('title', name)}): {info.get('summary', '')}" for name, info in data["metrics"].items()]
    lines += ["", "## Metric protocol", "", "```json", json.dumps(data["protocol"], indent=2), "```", ""]
    if data.get("command"):
        lines += ["## Command", "", "```sh", data["command"], "```", ""]
    else:  # run from Python: the settings, which a suite file can hold as they are
        settings = {key: value for key, value in config.items() if key != "resolved"}
        lines += ["## Settings", "", "Run through `pnprgm.benchmark.run_benchmark` with these settings (a suite file "
                  "holds the same keys):", "", "```json", json.dumps(settings, indent=2), "```", ""]
    lines += ["## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in data["versions"].items()]
    return "\n".join(lines) + "\n"


def _cell(text: Any) -> str:
    """``text`` inside a markdown table cell: a ``|`` or a line break in a file name must not split the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def overview(data: Mapping[str, Any]) -> list[str]:
    """Markdown table of the headline metric's mean (the run's first metric, e.g. PSNR) per method (rows) and task
    (columns), the best of each task in bold."""
    config = data["config"]
    resolved = config["resolved"]
    headline = columns(data)[0]
    summary = summarise(data["records"], [headline.name])
    task_names = list(config["tasks"])
    method_names = [m for m in config["methods"] if resolved["methods"].get(m, {}).get("available", True)]
    lines = ["| method | " + " | ".join(task_names) + " |", "|---|" + "---:|" * len(task_names)]
    for method in method_names:
        cells = []
        for task in task_names:
            entry = summary.get((task, method))
            if entry is None or entry[headline.name] is None:
                cells.append("–")
                continue
            text = format_value(entry[headline.name][0], headline.digits)
            best = best_methods(summary, task, headline.name, headline.digits, headline.higher_is_better)
            cells.append(f"**{text}**" if method in best else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _titled(column: Column) -> str:
    """``PSNR (dB)``: a column's title with its unit."""
    return f"{column.title} ({column.unit})" if column.unit else column.title


def _directions(metric_columns: list[Column]) -> str:
    """``PSNR and SSIM: higher is better; LPIPS: lower is better`` for the columns shown."""
    parts = []
    for flag, words in ((True, "higher is better"), (False, "lower is better")):
        titles = [column.title for column in metric_columns if column.higher_is_better is flag]
        if titles:
            listed = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
            parts.append(f"{listed}: {words}")
    return "; ".join(parts) or "no metric with a known direction"


def write_markdown(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Atomically write :func:`markdown` of ``data``."""
    return _write_text(path, markdown(data))


def _write_text(path: str | Path, text: str) -> Path:
    # a photo name that is not UTF-8 (bytes Python keeps as surrogates) is written escaped (b\udcff.png)
    return io.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="backslashreplace"))


# -- figure -----------------------------------------------------------------------------------------------

def write_figure(path: str | Path, figure: Mapping[str, list], data: Mapping[str, Any]) -> Path:
    """A grid per task: ground truth, measurement and each method's output (its headline metric below) for a few
    images (:mod:`pnprgm.figures`: PNG, or JPEG for a .jpg/.jpeg path)."""
    config = data["config"]
    resolved = config["resolved"]
    methods = [m for m in config["methods"] if resolved["methods"].get(m, {}).get("available", True)]
    sections = []
    for task in config["tasks"]:
        rows = figure.get(task, [])
        info = resolved["tasks"][task]
        title = f"{task}: {info['spec']}, noise {info['noise']:.4g}" + ("" if rows else " (no image)")
        cells = [[(row.truth, row.image), (row.measurement, ""),
                  *[(row.outputs.get(method), row.labels.get(method, "failed")) for method in methods]]
                 for row in rows]
        sections.append(figures.Section(title, ["ground truth", "measurement", *methods], cells))
    return figures.write(path, sections, stamp=FIGURE_STAMP)


def check_outputs(json_path: str | Path | None = None, md_path: str | Path | None = None,
                  figure_path: str | Path | None = None, *, overwrite: bool = False) -> None:
    """Before any work: a :class:`UserError` when an output cannot be written, two outputs share a path, the figure
    is not named .png/.jpg, or an output path holds a file this tool did not write (unless ``overwrite``)."""
    from pnprgm.errors import UserError

    given = []
    for flag, p in (("--json", json_path), ("--md", md_path), ("--figure", figure_path)):
        if p is None:
            continue
        if not str(p).strip() or Path(p).is_dir():  # "" is the current folder: the write would fail after the run
            raise UserError(f"{flag} {str(p)!r} is {'a folder' if str(p).strip() else 'empty'}; give a file name "
                            f"(e.g. {flag} results{ {'--json': '.json', '--md': '.md', '--figure': '.png'}[flag]}).")
        given.append((flag, Path(p)))
    for i, (flag, path) in enumerate(given):
        for other_flag, other in given[:i]:
            if path.resolve() == other.resolve():
                raise UserError(f"{other_flag} and {flag} name the same file {path}; give each its own name.")
    if figure_path is not None and Path(figure_path).suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"--figure writes PNG or JPEG; name it .png or .jpg (got {figure_path}).")
    owners = {"--json": is_results_json, "--md": _is_report, "--figure": _is_figure}
    for flag, path in given:
        io.refuse_foreign(path, owned=owners[flag], tool="pnprgm benchmark", overwrite=overwrite)
        io.check_writable(path)


def refuse_reading(json_path: str | Path | None, md_path: str | Path | None, figure_path: str | Path | None,
                   photos: list[Path], suite: str | Path | None = None, models: list[Path] = ()) -> None:
    """A :class:`UserError` when an output would replace one of the data set's ``photos``, the ``suite`` file the
    run was read from or one of the ``models`` files (a --model file, an official config), even with ``--overwrite``
    (which is for this tool's own earlier outputs and foreign files elsewhere, never its inputs)."""
    from pnprgm.errors import UserError

    read = {Path(p).resolve(): "a photo of the data set this run reads" for p in photos}
    read.update({Path(p).resolve(): "a --model file this run reads" for p in models})
    if suite is not None:
        read[Path(suite).resolve()] = "the --suite file this run reads"
    for flag, path in (("--json", json_path), ("--md", md_path), ("--figure", figure_path)):
        if path is not None and Path(path).resolve() in read:
            raise UserError(f"{flag} {path} is {read[Path(path).resolve()]}; give the output another name.")


def is_results_json(path: Path) -> bool:
    data = io.read_json_object(path)
    return data is not None and RESULTS_KEYS <= set(data)


def _is_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n") == MARKDOWN_TITLE
    except (OSError, UnicodeDecodeError):
        return False


def _is_figure(path: Path) -> bool:
    return figures.stamp_of(path) == FIGURE_STAMP


#: What reading a hand-edited or damaged results JSON raises (a key missing, a value of the wrong type).
DAMAGE_ERRORS = (TypeError, KeyError, AttributeError, ValueError, IndexError)


def damaged(path: str | Path, err: BaseException, fix: str):
    """The one-line :class:`UserError` for a results JSON that parsed but does not hold what the benchmark wrote."""
    from pnprgm.errors import UserError

    return UserError(f"{path} is not a pnprgm benchmark results JSON as written ({type(err).__name__}: "
                     f"{str(err)[:80]}); {fix}.")


def rebuild_markdown(json_path: str | Path, md_path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the markdown report of a results JSON (``pnprgm benchmark --from-json``); a damaged JSON, or ``md_path``
    naming the JSON itself or a file the benchmark did not write, is refused before anything is written."""
    from pnprgm.errors import UserError

    if Path(json_path).resolve() == Path(md_path).resolve():
        raise UserError(f"--from-json and --md name the same file {md_path}; give the report its own name.")
    check_outputs(md_path=md_path, overwrite=overwrite)
    data = load_results(json_path)
    try:
        text = markdown(data)
    except UserError:
        raise
    except DAMAGE_ERRORS as err:
        raise damaged(json_path, err, "rebuild it with pnprgm benchmark --json") from None
    return _write_text(md_path, text)


def load_results(path: str | Path) -> dict[str, Any]:
    """A results JSON written by :func:`pnprgm.benchmark.run_benchmark`."""
    from pnprgm.errors import UserError, first_line

    try:
        data = io.read_json(path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read results {path}: {first_line(err)}; give a JSON written by pnprgm benchmark.") from None
    if (not isinstance(data, dict) or not RESULTS_KEYS <= set(data) or not isinstance(data["records"], list)
            or not all(isinstance(r, dict) for r in data["records"]) or not isinstance(data["config"], dict)):
        raise UserError(f"{path} is not a pnprgm benchmark results JSON (needs protocol, versions, config, records).")
    return data
