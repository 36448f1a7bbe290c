"""``run_benchmark``: every (image, task, method) of a :class:`BenchmarkConfig`, scored and written as it goes.

The JSON output is rewritten atomically after every record, so a crash or Ctrl-C halfway keeps everything
computed so far; ``resume=True`` reuses the records of an earlier JSON made with the same settings.
A method that fails on one image, or an unreadable image, is named in ``skipped`` and the run goes on.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import torch

from pnprgm import figures, io
from pnprgm.benchmark import datasets, methods, tasks
from pnprgm.config import FrozenDict, build_strict, check_seed, to_dict
from pnprgm.errors import UserError, differ, first_line

DEFAULT_TASKS: tuple[str, ...] = tuple(tasks.registry.names())
DEFAULT_METHODS: tuple[str, ...] = tuple(methods.registry.names())
#: Keys of every record; each requested metric adds its own (between ``method`` and ``seconds``).
RECORD_KEYS: tuple[str, ...] = ("image", "task", "method", "seconds", "seed")
#: Skipped entries of these kinds are failures (the CLI exits non-zero); "unavailable" and "note" are not.
FAILURE_KINDS = frozenset({"unreadable", "unusable", "failed"})
_TUPLE_FIELDS = ("images", "tasks", "methods", "metrics", "models")


def _default_metrics() -> tuple[str, ...]:
    """The metrics registry's default set, read when a config is made (so a metric registered later counts)."""
    from pnprgm.metrics import default_metrics

    return default_metrics()


@dataclass(frozen=True)
class BenchmarkConfig:
    """What a benchmark runs (written, resolved, into its JSON).

    :param data: ``public``, a deepinv set (set14, cbsd68, kodak24, urban100) or a folder of images.
    :param images: names of the images to use, in order (None: the whole set).
    :param tasks: task names (``pnprgm.benchmark.tasks.registry``, the presets' tasks; an old name is today's, with a
        notice).
    :param methods: method names (``pnprgm.benchmark.methods.registry``; an old name is today's, with a notice).
    :param noise: measurement noise std for every task (None: each task's default).
    :param seed: run seed; each measurement's seed is derived from it, the image index and the task.
    :param crop: centre crop side in pixels (0: whole images), trimmed to a multiple of 8.
    :param limit: use only the first ``limit`` usable images (unreadable or too small ones are skipped and named).
    :param device: torch device of the methods.
    :param metrics: metric names (``pnprgm.metrics.METRICS``, e.g. psnr, ssim, lpips, lpips_vgg; default: those the
        registry marks ``default``); each record holds these, in this order, and the report shows a column for each.
        The first is the headline: the report's overview table and the figure's captions show it.
    :param protocol: :class:`pnprgm.metrics.MetricProtocol` fields differing from the default.
    :param overrides: solver parameters applied to every PnP method on top of its preset (e.g. iterations).
    :param figure_images: images per task shown in the figure.
    :param models: models (shipped names or model files) that the methods of the default denoiser (``pnp-*``,
        ``rgm-stochastic-drs``) use instead of the shipped defaults, at most one per channel count (a gray model for
        gray images, a colour one for colour).
    """

    data: str = "public"
    images: Optional[tuple[str, ...]] = None
    tasks: tuple[str, ...] = DEFAULT_TASKS
    methods: tuple[str, ...] = DEFAULT_METHODS
    noise: Optional[float] = None
    seed: int = 0
    crop: int = 256
    limit: Optional[int] = None
    device: str = "cpu"
    metrics: tuple[str, ...] = field(default_factory=_default_metrics)
    protocol: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    figure_images: int = 2
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from pnprgm.metrics import METRICS

        for name in ("protocol", "overrides"):  # a frozen config: its mappings too
            object.__setattr__(self, name, FrozenDict(getattr(self, name)))
        # an old task or method name runs, and keys its records, as today's
        object.__setattr__(self, "tasks", tuple(tasks.registry.canonical(name) for name in self.tasks))
        object.__setattr__(self, "methods", tuple(methods.registry.canonical(name) for name in self.methods))
        for label, names, registry in (("--task", self.tasks, tasks.registry), ("--method", self.methods, methods.registry),
                                       ("--metrics", self.metrics, METRICS)):
            if not names:
                raise UserError(f"{label} is empty; choose from: {', '.join(registry.names())}.")
            for name in names:
                if name not in registry:
                    raise UserError(f"{label}: {registry.unknown_message(name)}")
            if len(set(names)) != len(names):
                raise UserError(f"{label} names a choice twice ({', '.join(names)}); list each once.")
        if self.images is not None and not self.images:  # [] would run every image
            raise UserError("--images is empty; name the images to use, or leave it out for the whole set.")
        if self.images is not None and len(set(self.images)) != len(self.images):  # counted twice in the means
            raise UserError(f"--images names an image twice ({', '.join(self.images)}); list each once.")
        if not str(self.data).strip():  # "" would be the current folder
            raise UserError("--data is empty; give public, a data set name or a folder of images.")
        if self.noise is not None and not (0 <= self.noise <= 1):
            raise UserError(f"--noise must be in [0, 1] units (e.g. 0.01 or 0.098 for 25/255); got {self.noise}.")
        if self.crop < 0 or 0 < self.crop < datasets.ALIGN:
            raise UserError(f"--crop must be 0 (whole images) or at least {datasets.ALIGN} pixels; got {self.crop}.")
        check_seed(self.seed, "--seed")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1; got {self.limit}.")
        if self.figure_images < 0:
            raise UserError(f"figure_images must be >= 0; got {self.figure_images}.")
        if not isinstance(self.protocol, Mapping) or not isinstance(self.overrides, Mapping):
            raise UserError("protocol and overrides must be mappings of name: value.")
        self.metric_protocol()  # unknown protocol keys fail now, not after the first image

    def chosen_models(self) -> dict[int, str]:
        """``--model`` by channel count; two models for the same channel count are an error."""
        from pnprgm.rgm import models

        chosen: dict[int, str] = {}
        for source in self.models:
            channels = models.source_info(source)[0]
            if channels in chosen:
                raise UserError(f"--model {chosen[channels]} and --model {source} both take {channels}-channel images; "
                                f"give one model per channel count (one gray, one colour).")
            chosen[channels] = source
        return chosen

    def task_noise(self, task: str) -> float:
        """Measurement noise of ``task`` in this run."""
        return float(self.noise) if self.noise is not None else tasks.registry.get(task).noise

    def metric_protocol(self):
        from pnprgm.metrics import MetricProtocol

        return build_strict(MetricProtocol, dict(self.protocol), what="metric protocol")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def build_config(values: Mapping[str, Any] | None = None) -> BenchmarkConfig:
    """A :class:`BenchmarkConfig` from a dict (a suite file, CLI options): comma strings become name lists,
    unknown keys are errors listing the valid ones."""
    values = dict(values or {})
    for key in _TUPLE_FIELDS:
        # at commas only, and stripped: config.coerce's list reading also splits at ':', which a model's path may
        # hold (a Windows drive, C:/models/m.pt)
        if isinstance(values.get(key), str):
            values[key] = tuple(part.strip() for part in values[key].split(",") if part.strip())
    return build_strict(BenchmarkConfig, values, what="benchmark config")


@dataclass
class FigureRow:
    """One image of one task in the figure: ground truth, displayed measurement, each method's output."""

    image: str
    truth: torch.Tensor
    measurement: torch.Tensor
    outputs: dict[str, Optional[torch.Tensor]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchmarkResults:
    """The JSON document (``data``), the figure content and the files written."""

    data: dict[str, Any]
    figure: dict[str, list[FigureRow]] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.data["records"]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return self.data["skipped"]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [entry for entry in self.skipped if entry.get("kind") in FAILURE_KINDS]

    @property
    def ok(self) -> bool:
        return not self.failures and bool(self.records)


@dataclass
class _Prepared:
    index: int
    source: datasets.ImageSource
    image: torch.Tensor


def _check_settings_of_some_solver(overrides: Mapping[str, Any]) -> None:
    """A :class:`UserError` for a ``--set`` key (with its value) that no solver takes."""
    from pnprgm import solvers
    from pnprgm.restoration import configure

    for key, value in overrides.items():
        refusals = []
        for name in solvers.registry.names():
            try:
                configure(name, {key: value})
                break
            except ValueError as err:  # UserError is one: an unknown key or a bad value for this solver
                refusals.append(first_line(err))
        else:
            raise UserError(f"--set {key}={value} fits no solver ({refusals[0]})")


def _files_read_by_models(sources: tuple[str, ...]) -> list[Path]:
    """The files the ``--model`` strings name (model files, official configs): never replaced by an output."""
    from pnprgm.rgm.models import resolve

    found: list[Path] = []
    for source in sources:
        try:
            model = resolve(source, required=False)
        except UserError:  # a model that does not resolve is refused with its own message later
            continue
        found += model.files_read if model is not None else []
    return found


def _check_models_fit(chosen: Mapping[int, str], channels: set[int], say: Callable[[str], None]) -> None:
    """A ``--model`` that no image of the run takes is an error (the run would measure the shipped default in its
    place, under the user's model's name); images of a channel count without a ``--model`` are named."""
    word = io.channel_kind
    if not channels:  # nothing runs: the skipped images say why
        return
    for count, source in chosen.items():
        if count not in channels:
            other = word(4 - count)
            raise UserError(f"--model {source} takes {word(count)} images, and this run has only {other} images (they "
                            f"would run the shipped default); give a {other} model or {word(count)} images.")
    for count in sorted(channels - set(chosen)) if chosen else ():
        say(f"note: the {word(count)} images run the shipped default {word(count)} model (no {word(count)} --model given)")


def run_benchmark(
    config: BenchmarkConfig,
    *,
    json_path: str | Path | None = None,
    md_path: str | Path | None = None,
    figure_path: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: Optional[str] = None,
    log: Optional[Callable[[str], None]] = None,
    suite: str | Path | None = None,
) -> BenchmarkResults:
    """Run every (image, task, method) of ``config``; write the JSON after each record, then markdown and figure.

    :param config: what to run.
    :param json_path: results JSON (rewritten atomically after each record).
    :param md_path: markdown report (mean +/- std per task and method, protocol, command, versions).
    :param figure_path: PNG grid (ground truth, measurement, each method) for a few images per task.
    :param resume: reuse records of an existing ``json_path`` made with the same settings (except those of the
        figure's images when a figure is written: the picture needs their outputs).
    :param overwrite: replace output files this tool did not write (default: refuse them before any work).
    :param progress: progress bar over the whole run.
    :param command: the command line that started the run, shown in the report (None: the report shows the
        settings instead).
    :param log: receives one line per skipped image or failed method as it happens.
    :param suite: the suite file ``config`` was read from (``--suite``): never replaced by an output.
    :returns: the results (``.data`` is what the JSON holds).
    """
    from tqdm.auto import tqdm

    from pnprgm import operators
    from pnprgm.device import resolve_device
    from pnprgm.metrics import evaluate
    from pnprgm.benchmark import report

    say = log or (lambda line: None)
    report.refuse_reading(json_path, md_path, figure_path, [], suite,  # before the advice to pass --overwrite
                          _files_read_by_models(config.models))
    # a folder's photos are inputs, refused as outputs before all else (a named set may download: after the checks)
    dataset = datasets.resolve(config.data) if config.data not in datasets.registry else None
    if dataset is not None:
        report.refuse_reading(json_path, md_path, figure_path, [s.path for s in dataset.images if s.path is not None])
    if figure_path is not None and io.is_dir(config.data) and Path(figure_path).parent.resolve() == Path(config.data).resolve():
        # an image there is a photo of the set to the next run, which would then refuse to replace it
        raise UserError(f"--figure {figure_path} is inside the --data folder {config.data}, where the next run would "
                        f"read it as a photo; write it elsewhere.")
    report.check_outputs(json_path, md_path, figure_path, overwrite=overwrite)
    device = resolve_device(config.device)
    protocol = config.metric_protocol()
    if dataset is None:
        dataset = datasets.resolve(config.data)
        # a named set's photos are inputs too (--overwrite must not replace a package's astronaut.png)
        report.refuse_reading(json_path, md_path, figure_path, [s.path for s in dataset.images if s.path is not None])
    sources = datasets.select(dataset, config.images)
    from pnprgm.metrics import METRICS, prepare_metrics

    prepare_metrics(config.metrics)  # a missing backbone stops the run now, with the fix, not after the first image
    # the metric needing the largest image (LPIPS-alex: 31 px), after the protocol's border crop
    needs = max(config.metrics, key=lambda name: METRICS.get(name).min_side)
    min_side = METRICS.get(needs).min_side + 2 * protocol.crop
    skipped: list[dict[str, Any]] = [{"kind": "note", "reason": note} for note in dataset.notes]

    runnable: list[str] = []
    method_info: dict[str, dict[str, Any]] = {}
    chosen_models = config.chosen_models()
    active: dict[str, methods.Method] = {}
    for name in config.methods:
        method = active[name] = methods.registry.get(name).with_models(chosen_models)
        method.check_overrides(config.overrides)
    if config.overrides and all(method.describe()["solver"] is None for method in active.values()):
        # checked against every solver (a typo is still an error, a setting of any solver is not), and said once: a
        # suite's settings may meet a --method that takes none of them
        _check_settings_of_some_solver(config.overrides)
        import warnings

        warnings.warn(f"--set {', '.join(config.overrides)} applies to no method of this run ({', '.join(active)} has "
                      f"no solver parameters).", stacklevel=2)
    for name, method in active.items():
        reason = method.unavailable(device)
        method_info[name] = {**method.describe(), "available": reason is None, "unavailable_reason": reason}
        if reason is None:
            runnable.append(name)
        else:
            skipped.append({"method": name, "kind": "unavailable", "reason": reason})
            say(f"method {name} is unavailable: {reason}")

    took_models = [name for name in config.methods if getattr(active[name], "models", ())]
    if took_models and not any(name in runnable for name in took_models):  # the user's model fits no method
        first = method_info[took_models[0]]["unavailable_reason"]
        raise UserError(f"--model {', '.join(config.models)} fits none of the methods that take it "
                        f"({', '.join(took_models)}): {first}.")
    prepared: list[_Prepared] = []
    image_info: list[dict[str, Any]] = []
    for index, source in enumerate(sources):  # index: the place in the selection, which seeds its measurements
        if config.limit is not None and len(prepared) == config.limit:
            break  # --limit counts the images used: an unreadable or too small one does not take a place
        try:
            original = source.load()
            image = datasets.centre_crop(original, config.crop)
        except UserError as err:
            skipped.append({"image": source.name, "kind": "unreadable", "reason": str(err)})
            say(f"skipped image {source.name}: {err}")
            continue
        if min(image.shape[1:]) < min_side:
            # a larger crop helps only where the crop, not the photo, made it small
            fits = min(side - side % datasets.ALIGN for side in original.shape[1:]) >= min_side
            larger = "use a larger --crop, or " if config.crop and fits else ""
            # where the protocol's border trim, not the photo, made it too small, that trim is the fix
            trimmed = protocol.crop and min(image.shape[1:]) >= METRICS.get(needs).min_side
            fix = (f"lower --protocol crop, which trims {protocol.crop} px from each border before scoring" if trimmed
                   else f"{larger}use --metrics without {needs}")
            reason = (f"{image.shape[1]}x{image.shape[2]} px{' before the protocol crop' if protocol.crop else ''}; "
                      f"{METRICS.get(needs).title} needs {min_side} px or more ({fix})")
            skipped.append({"image": source.name, "kind": "unusable", "reason": reason})
            say(f"skipped image {source.name}: {reason}")
            continue
        prepared.append(_Prepared(index, source, image))
        image_info.append({**source.describe(), "index": index, "shape": list(image.shape)})
    jobs = []
    for item in prepared:
        for name in config.tasks:
            if tasks.registry.get(name).applies_to(item.image.shape[0]):
                jobs.append((item, name))
            else:  # named in the report, not dropped silently from a task's mean
                skipped.append({"image": item.source.name, "task": name, "kind": "not-applicable",
                                "reason": f"a gray image; {name} needs a colour ground truth"})
    for name in config.tasks:  # one line per task (a run where nothing applies must not end without a word)
        left_out = [e for e in skipped if e.get("kind") == "not-applicable" and e.get("task") == name]
        if left_out:
            say(f"task {name}: {len(left_out)} gray image(s) skipped ({name} needs a colour ground truth)")
    _check_models_fit(chosen_models, {item.image.shape[0] for item, _ in jobs}, say)

    result = BenchmarkResults(data={
        "protocol": protocol.to_dict(),
        "metrics": describe_metrics(config.metrics),
        "versions": io.versions(),
        "config": {
            **config.to_dict(),
            "resolved": {
                "data": dataset.name,
                "tasks": {name: {"spec": tasks.registry.get(name).spec, "noise": config.task_noise(name),
                                 "colour_only": tasks.registry.get(name).colour_only} for name in config.tasks},
                "methods": method_info,
                "images": image_info,
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
            },
        },
        "command": command,
        "status": "running",
        "records": [],
        "skipped": skipped,
    })
    data = result.data
    reusable = _reusable_records(json_path, data, config.metrics) if resume and json_path else {}
    if json_path and not overwrite:
        planned = {(item.source.name, name, method) for item, name in jobs for method in runnable}
        _refuse_dropping_records(json_path, data, planned)

    def save() -> None:
        if json_path is not None:
            io.write_json(json_path, data)

    shown: dict[str, list[str]] = {name: [] for name in config.tasks}
    started = time.perf_counter()
    save()
    bar = tqdm(total=len(jobs) * len(runnable), desc="benchmark", unit="run", disable=not progress)
    from pnprgm.training.interrupt import terminate_as_interrupt

    with terminate_as_interrupt():  # a `kill` saves the partial results as Ctrl-C does
        try:
            for item, task_name in jobs:
                task = tasks.registry.get(task_name)
                sigma = config.task_noise(task_name)
                seed = tasks.measurement_seed(config.seed, item.index, task_name)
                truth = item.image[None].to(device)
                try:
                    physics = operators.build(task.spec, tuple(item.image.shape), device=device)
                    y = operators.measure(physics, truth, sigma, seed=seed)
                except Exception as err:  # one bad (image, task) pair must not end the run
                    _skip(data, say, kind="failed", image=item.source.name, task=task_name, reason=first_line(err, named=True))
                    bar.update(len(runnable))
                    save()
                    continue
                row = None
                if len(shown[task_name]) < config.figure_images:
                    shown[task_name].append(item.source.name)
                    row = FigureRow(item.source.name, item.image, figures.display_measurement(y[0].cpu(), item.image.shape))
                    result.figure.setdefault(task_name, []).append(row)
                for method_name in runnable:
                    key = (item.source.name, task_name, method_name, seed)
                    bar.set_postfix_str(f"{item.source.name} {task_name} {method_name}", refresh=False)
                    if key in reusable and (row is None or figure_path is None):  # the figure's images are run again
                        data["records"].append(reusable[key])
                        if row is not None:
                            row.outputs[method_name] = None
                            row.labels[method_name] = _label(reusable[key], config.metrics[0]) + " (resumed)"
                        bar.update(1)
                        continue
                    try:
                        x, seconds = active[method_name].restore(
                            y, physics, noise_sigma=sigma, seed=seed, device=device, overrides=config.overrides)
                        scores = evaluate(x, truth, protocol, names=config.metrics, device=device)
                    except Exception as err:  # a failing method is reported; the others still run
                        _skip(data, say, kind="failed", image=item.source.name, task=task_name, method=method_name,
                              reason=first_line(err, named=True))
                    else:
                        record = {"image": item.source.name, "task": task_name, "method": method_name}
                        for metric in config.metrics:
                            record[metric] = _number(scores[metric][0])
                        record["seconds"] = seconds
                        record["seed"] = seed
                        data["records"].append(record)
                        if row is not None:
                            row.outputs[method_name] = x[0].detach().cpu()
                            row.labels[method_name] = _label(record, config.metrics[0])
                    save()
                    bar.update(1)
            data["status"] = "complete"
        except BaseException:
            data["status"] = "interrupted"
            raise
        finally:
            bar.close()
            data["elapsed_seconds"] = time.perf_counter() - started
            save()
            if json_path is not None:
                result.written.append(Path(json_path))
            if md_path is not None:
                try:
                    result.written.append(report.write_markdown(md_path, data))
                except Exception:
                    if data["status"] == "complete":
                        raise  # after an interruption the JSON is what matters; don't mask the original error
            if figure_path is not None and data["status"] == "complete":
                result.written.append(report.write_figure(figure_path, result.figure, data))
    return result


def describe_metrics(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What each metric of a run is, for the JSON (so that a report can be rebuilt without the registry)."""
    from pnprgm.metrics import METRICS

    described = {}
    for name in names:
        metric = METRICS.get(name)
        described[name] = {"title": metric.title, "label": metric.label, "higher_is_better": metric.higher_is_better,
                           "digits": metric.digits, "unit": metric.unit, "summary": METRICS.summary(name)}
    return described


def _reusable_records(json_path: str | Path, current: dict[str, Any], metrics: Iterable[str]) -> dict[tuple, dict[str, Any]]:
    """Records of an earlier run that this run would reproduce: same settings, same image files, same seeds.

    The earlier run must have computed every metric asked for now; if it did not (e.g. ``lpips_vgg`` added to
    ``--metrics``), its records are run again, since the outputs they were scored on are not kept. Metrics it
    computed beyond those asked for now are dropped from the reused records (rewriting the JSON without them needs
    ``overwrite``: :func:`_refuse_dropping_records`).
    """
    path = Path(json_path)
    if not path.is_file():
        return {}
    from pnprgm.benchmark import report

    try:
        return _matching_records(_with_todays_names(report.load_results(path)), current, metrics, path)
    except UserError:
        raise
    except report.DAMAGE_ERRORS as err:  # a hand-edited or damaged file
        raise report.damaged(f"--resume: {path}", err, "use another --json or drop --resume") from None


def _refuse_dropping_records(json_path: str | Path, current: dict[str, Any], planned: set[tuple[str, str, str]]) -> None:
    """Before the first write: a :class:`UserError` when the results JSON at ``json_path`` holds records this run
    would not write again (other tasks, methods or images; a method unavailable or an image skipped now) or wrote
    with other settings (crop, noise, seed...): rewriting it would lose them. Package versions and the device may
    differ: a rerun refreshes its own numbers."""
    from pnprgm.benchmark import report
    from pnprgm.metrics import METRICS

    path = Path(json_path)
    if not path.is_file():
        return
    try:
        previous = _with_todays_names(report.load_results(path))
        changed = _changed_settings(previous, current, ignore=("versions", "device"))
        records = list(previous["records"])
        dropped = [r for r in records if (r["image"], r["task"], r["method"]) not in planned]
        # the metrics its records hold (a first-format JSON names none in its config)
        lost_metrics = sorted({key for r in records for key, value in r.items() if key in METRICS.names()
                               and value is not None}
                              - set(current["config"]["metrics"]))
    except (UserError, *report.DAMAGE_ERRORS) as err:  # ours (check_outputs vouched), damaged: its records may count
        raise report.damaged(f"--json {path}", err, "give another --json, or --overwrite to replace it") from None
    if records and lost_metrics and not changed and not dropped:
        raise UserError(f"--json {path} holds {', '.join(lost_metrics)} values of {len(records)} records that this run "
                        f"(--metrics {','.join(current['config']['metrics'])}) would not keep: add them to --metrics, "
                        f"give another --json, or --overwrite to replace it.")
    if not records or not (changed or dropped):
        return
    if changed:
        why = f"made with other settings ({differ(changed)})"
    else:
        why = f"{len(dropped)} of them {_why_not_again(dropped[0], current)}"
    raise UserError(f"--json {path} holds {len(records)} records of an earlier run, {why}; rewriting it would lose "
                    f"them: give another --json, or --overwrite to replace it.")


def _why_not_again(record: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Why this run does not write ``record`` again, in a few words."""
    resolved = current["config"]["resolved"]
    method = resolved["methods"].get(record["method"])
    skipped = next((entry for entry in current.get("skipped", []) if entry.get("image") == record["image"]
                    and "method" not in entry and entry.get("task") in (None, record["task"])), None)
    where = f"{record['task']}/{record['method']} on {record['image']}"
    if method is not None and not method.get("available", True):
        return f"for a method unavailable now ({where}: {method.get('unavailable_reason')})"
    if skipped is not None:
        return f"for an image skipped now ({where}: {skipped.get('reason')})"
    notes = [entry["reason"] for entry in current.get("skipped", []) if entry.get("kind") == "note"]
    if notes and record["image"] not in {entry.get("name") for entry in resolved["images"]}:
        return f"for an image this run does not have ({where}; {notes[0]})"
    return f"for tasks, methods or images this run does not run again (e.g. {where})"


def _changed_settings(previous: dict[str, Any], current: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """The settings (:func:`_fingerprint` keys) in which two runs differ, less ``ignore``; the per-task ones compared
    on the tasks both runs have (adding or dropping a task keeps the records of the others reusable)."""
    theirs, ours = _fingerprint(previous), _fingerprint(current)
    for key in ("noise", "specs"):
        common = set(theirs[key]) & set(ours[key])
        theirs[key], ours[key] = ({t: v for t, v in side[key].items() if t in common} for side in (theirs, ours))
    return sorted(key for key in ours if key not in ignore and theirs[key] != ours[key])


def _matching_records(previous: dict[str, Any], current: dict[str, Any], metrics: Iterable[str],
                      path: Path) -> dict[tuple, dict[str, Any]]:
    from pnprgm.benchmark import report

    changed = _changed_settings(previous, current)
    if changed:
        raise UserError(f"--resume: {path} was made with other settings ({differ(changed)}); use another "
                        "--json or drop --resume.")
    metrics = tuple(metrics)
    for record in previous["records"]:  # a value that is not a finite number would poison the report's means
        if record.get("seconds") is None or not _is_number(record.get("seconds")) or any(
                not (_is_number(value) or value in ("inf", "-inf")) for key, value in record.items() if key in metrics):
            raise ValueError(f"record {record.get('image')}/{record.get('task')}/{record.get('method')} has a "
                             "metric or seconds that is not a finite number")
    if not set(metrics) <= set(previous["config"].get("metrics") or report.FIRST_FORMAT_METRICS):
        return {}
    old_images = {entry["name"]: entry.get("sha256") for entry in previous["config"]["resolved"]["images"]}
    new_images = {entry["name"]: entry.get("sha256") for entry in current["config"]["resolved"]["images"]}
    # a method whose model files or presets for the record's task changed since is run again
    old_methods, new_methods = previous["config"]["resolved"]["methods"], current["config"]["resolved"]["methods"]
    specs = {name: task["spec"] for name, task in current["config"]["resolved"]["tasks"].items()}
    return {
        (r["image"], r["task"], r["method"], r["seed"]): _with_metrics(r, metrics) for r in previous.get("records", [])
        if r["image"] in new_images and old_images.get(r["image"]) == new_images[r["image"]] and r["task"] in specs
        and _for_task(old_methods.get(r["method"]), specs[r["task"]]) == _for_task(new_methods.get(r["method"]), specs[r["task"]])
    }


def _is_number(value: Any) -> bool:
    """None (not measured) or a finite int or float (not a bool, a string or NaN)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def _with_todays_names(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with today's task and method names (a JSON written before a rename, e.g. task ``sr4`` for ``sr``,
    method ``rgm-drs`` for ``pnp-drs``): the same seeds (:attr:`tasks.Task.seed_key`) and the same algorithm, so its
    records stay reusable and are not taken for another run's."""
    def today(registry, name: Any) -> Any:
        return registry.canonical(name, notice=False) if isinstance(name, str) else name

    if not isinstance(data, dict):
        return data
    resolved = (data.get("config") or {}).get("resolved") or {}
    for key, registry in (("tasks", tasks.registry), ("methods", methods.registry)):
        if isinstance(resolved.get(key), dict):
            resolved[key] = {today(registry, name): value for name, value in resolved[key].items()}
    for entry in [*data.get("records", []), *data.get("skipped", [])]:
        for key, registry in (("task", tasks.registry), ("method", methods.registry)):
            if key in entry:
                entry[key] = today(registry, entry[key])
    return data


def _with_metrics(record: Mapping[str, Any], metrics: tuple[str, ...]) -> dict[str, Any]:
    """``record`` holding exactly ``metrics`` (in that order, between its method and its seconds)."""
    from pnprgm.metrics import METRICS

    others = set(METRICS.names()) - set(metrics)
    kept = {key: record[key] for key in ("image", "task", "method")}
    kept.update({name: record.get(name) for name in metrics})
    kept.update({key: value for key, value in record.items() if key not in kept and key not in others})
    return kept


def _for_task(described: Optional[Mapping[str, Any]], spec: str) -> Optional[dict[str, Any]]:
    """A method's description with only the preset that applies to the task of ``spec`` (a change to another
    task's preset leaves this task's records valid)."""
    if described is None or "presets" not in described:
        return None if described is None else dict(described)
    from pnprgm import presets

    try:
        task = presets.task_of_spec(spec)
    except UserError:  # an operator without a task: every preset counts
        return dict(described)
    return {**described, "presets": (described["presets"] or {}).get(task)}


def _fingerprint(data: Mapping[str, Any]) -> dict[str, Any]:
    config = data["config"]
    resolved = config["resolved"]
    return {
        "data": _data_identity(config["data"]), "crop": config["crop"], "seed": config["seed"],
        "protocol": data["protocol"], "overrides": config["overrides"], "device": resolved["device"],
        "noise": {name: task["noise"] for name, task in resolved["tasks"].items()},
        "specs": {name: task["spec"] for name, task in resolved["tasks"].items()},
        "versions": data["versions"],
    }


def _data_identity(data: Any) -> Any:
    """``--data`` as the set it names: a folder by its absolute path (imgs, imgs/ and ./imgs are one folder)."""
    if not isinstance(data, str) or data in datasets.registry:
        return data
    return str(Path(data).resolve())


def _skip(data: dict, say: Callable[[str], None], *, kind: str, reason: str, **where: str) -> None:
    data["skipped"].append({**where, "kind": kind, "reason": reason})
    say(f"{kind}: {' '.join(f'{k}={v}' for k, v in where.items())}: {reason}")


def _number(value: torch.Tensor) -> Optional[float | str]:
    """A metric value for the JSON: a float; an infinite one (the PSNR of an exact restoration) as ``"inf"`` or
    ``"-inf"`` (JSON has no infinity, and null would drop the best result from the means); NaN as None."""
    number = float(value)
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return number if math.isfinite(number) else None


def _label(record: Mapping[str, Any], metric: str) -> str:
    """A figure caption: the record's value of ``metric`` as the report shows it (``29.85 dB``)."""
    from pnprgm.metrics import METRICS

    from pnprgm.benchmark.report import format_value

    value = record.get(metric)
    if value is None:
        return ""
    described = METRICS.get(metric)
    return f"{format_value(value, described.digits)} {described.unit}".rstrip()
