"""pnprgm benchmark: JSON schema, determinism, reports, bad input, skipped images, partial results, resume.

Tiny crops, fast methods (baseline, tv-admm, nlm-hqs) and two solver iterations keep this fast.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pnprgm import operators
from pnprgm.cli.main import app
from pnprgm import figures, io, presets
from pnprgm.benchmark import build_config, datasets, methods, report, run_benchmark, tasks
from pnprgm.benchmark.runner import RECORD_KEYS, BenchmarkConfig
from pnprgm.errors import UserError
from pnprgm.metrics import DEFAULT_PROTOCOL

FAST = {"crop": 48, "overrides": {"iterations": 2}, "figure_images": 1}


def _config(**values) -> BenchmarkConfig:
    return build_config({**FAST, **values})


def _write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """Two colour crops and one gray crop of public photos (never trained on), as PNG files."""
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    _write_png(folder / "coffee.png", data.coffee()[100:164, 200:264])
    _write_png(folder / "astronaut.png", data.astronaut()[60:124, 180:244])
    _write_png(folder / "camera.png", data.camera()[100:164, 200:264])
    return folder


@pytest.fixture(scope="module")
def public_run(tmp_path_factory):
    """One small run on the public set, twice (for determinism), with every output written."""
    out = tmp_path_factory.mktemp("bench")
    config = _config(data="public", limit=2, tasks=("sr", "colorize", "denoise"), methods=("baseline", "tv-admm"))
    first = run_benchmark(config, json_path=out / "a.json", md_path=out / "a.md", figure_path=out / "a.png", progress=False)
    second = run_benchmark(config, json_path=out / "b.json", progress=False)
    return out, first, second


def test_json_schema(public_run):
    out, first, _ = public_run
    data = json.loads((out / "a.json").read_text())
    assert {"protocol", "versions", "config", "records", "skipped"} <= set(data)
    assert data["protocol"] == DEFAULT_PROTOCOL.to_dict()
    assert data["versions"]["torch"] == torch.__version__.split("+")[0]
    assert data["status"] == "complete"
    assert data["config"]["tasks"] == ["sr", "colorize", "denoise"]
    assert data["config"]["resolved"]["tasks"]["denoise"]["noise"] == pytest.approx(25 / 255)
    assert [image["name"] for image in data["config"]["resolved"]["images"]] == ["astronaut", "chelsea"]
    assert len(data["records"]) == 2 * 3 * 2  # two colour images x three tasks x two methods
    for record in data["records"]:
        assert set(RECORD_KEYS) <= set(record)
        assert np.isfinite([record["psnr"], record["ssim"], record["lpips"], record["seconds"]]).all()
        assert 0 < record["ssim"] <= 1 and 0 <= record["lpips"] < 1
    assert data == first.data  # the returned document is what was written


def test_runs_are_deterministic(public_run):
    _, first, second = public_run
    key = lambda r: (r["image"], r["task"], r["method"], r["seed"], r["psnr"], r["ssim"], r["lpips"])
    assert [key(r) for r in first.records] == [key(r) for r in second.records]


def test_pnp_method_beats_baseline_on_denoising(public_run):
    _, first, _ = public_run
    psnr = {(r["image"], r["method"]): r["psnr"] for r in first.records if r["task"] == "denoise"}
    for image in ("astronaut", "chelsea"):
        assert psnr[image, "tv-admm"] > psnr[image, "baseline"] + 3


def test_markdown_holds_the_table(public_run):
    out, first, _ = public_run
    text = (out / "a.md").read_text()
    assert "| method | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ | seconds | images |" in text
    assert "| method | sr | colorize | denoise |" in text
    for method in ("baseline", "tv-admm"):
        assert f"| {method} |" in text
    assert " ± " in text and "**" in text
    assert "## Metric protocol" in text and '"ssim"' in text
    assert "## Settings" in text and "## Command" not in text  # run from Python: no command line to show
    assert f"| deepinv | {first.data['versions']['deepinv']} |" in text
    assert report.markdown(first.data) == text  # rebuilt from the JSON document alone


def test_a_report_of_a_python_run_holds_settings_that_rebuild_its_config(public_run):
    """The library records a structured config, never flag text: the report's settings block is a suite file
    that builds the same configuration again."""
    _, first, _ = public_run
    assert first.data["command"] is None
    block = report.markdown(first.data).split("## Settings", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    config = _config(data="public", limit=2, tasks=("sr", "colorize", "denoise"), methods=("baseline", "tv-admm"))
    assert build_config(json.loads(block)) == config


def test_cli_renders_the_command_line_of_a_config():
    """cli/ turns a config into ``pnprgm benchmark`` flags; each flag parses back to the config's value."""
    import shlex

    from pnprgm.cli.commands.benchmark import command, command_line

    config = _config(data="public", images=("astronaut", "chelsea"), tasks=("denoise", "sr"), methods=("baseline",),
                     noise=0.02, seed=3, limit=1, metrics="ssim,psnr", protocol={"crop": 4}, models=("a.pt",))
    words = shlex.split(command_line(config, json_path="r 1.json", md_path="r.md"))
    assert words[:2] == ["pnprgm", "benchmark"]
    params = command.make_context("benchmark", words[2:]).params
    assert (params["data"], params["images"], params["tasks"], params["methods"]) == \
           ("public", "astronaut,chelsea", "denoise,sr", "baseline")
    assert (params["noise"], params["seed"], params["crop"], params["limit"]) == (0.02, 3, 48, 1)
    assert (params["metrics"], params["protocol_items"]) == ("ssim,psnr", ("crop=4",))
    assert params["assignments"] == ("iterations=2",)
    assert (params["figure_images"], params["model_sources"]) == (1, ("a.pt",))
    assert (params["json_path"], params["md_path"], params["figure_path"]) == ("r 1.json", "r.md", None)
    default = shlex.split(command_line(build_config({})))
    assert "--metrics" not in default and "--device" not in default  # the defaults are left out


def test_figure_is_written(public_run):
    out, _, _ = public_run
    with Image.open(out / "a.png") as figure:
        assert figure.format == "PNG"
        # 4 columns (truth, measurement, two methods) of at least 48 px, three task blocks
        assert figure.width >= 4 * 48 and figure.height >= 3 * 48


def test_measurement_seeds_are_fixed_and_distinct():
    seeds = {(i, t): tasks.measurement_seed(0, i, t) for i in range(20) for t in tasks.registry.names()}
    assert len(set(seeds.values())) == len(seeds)
    assert seeds[3, "sr"] == tasks.measurement_seed(0, 3, "sr")
    assert tasks.measurement_seed(1, 3, "sr") != seeds[3, "sr"]


def test_renamed_tasks_keep_the_measurements_of_their_old_names():
    """sr and colorize were sr4 and color (issue 19): their seeds are still hashed from the old names (the values
    below are those of the code before the rename, sha256 of "0/3/sr4"...), so every committed measurement, record
    seed and resumable record stays what it was. The other tasks hash their own names."""
    keys = {name: tasks.registry.get(name).seed_key for name in tasks.registry.names()}
    assert {name: key for name, key in keys.items() if key} == {"sr": "sr4", "colorize": "color"}
    assert tasks.measurement_seed(0, 3, "sr") == 1711267665  # what sr4 gave
    assert tasks.measurement_seed(0, 0, "sr") == 1870773503
    assert tasks.measurement_seed(0, 3, "colorize") == 652119177  # what color gave
    assert tasks.measurement_seed(0, 0, "deblur") == 1727984665  # an unrenamed task: its own name
    for old, new in tasks.registry.aliases().items():
        assert tasks.measurement_seed(5, 7, old) == tasks.measurement_seed(5, 7, new)


def test_benchmark_tasks_are_the_preset_tasks():
    """One task vocabulary: each benchmark task is named for the restoration task of its operator, the one whose
    presets its PnP methods run, and every preset task is benchmarked."""
    for name in tasks.registry.names():
        assert name in presets.TASKS
        assert presets.task_of_spec(tasks.registry.get(name).spec) == name
    assert sorted(tasks.registry.names()) == sorted(presets.TASKS)
    assert tasks.registry.aliases() == {"sr4": "sr", "color": "colorize"}


def test_old_task_names_are_accepted_with_one_notice(monkeypatch, capsys):
    """sr4 and color run, and key their records, as sr and colorize, wherever a task name is accepted (the config,
    a suite file, --task), with a one-line notice once per process."""
    from pnprgm import registry as registry_module

    monkeypatch.setattr(registry_module, "_ANNOUNCED", set())
    capsys.readouterr()
    assert build_config({"tasks": "sr4,color,denoise"}).tasks == ("sr", "colorize", "denoise")
    assert BenchmarkConfig(tasks=("sr4",)).tasks == ("sr",)
    notices = [line for line in capsys.readouterr().err.splitlines() if "now called" in line]
    assert notices == [
        "pnprgm: benchmark task 'sr4' is now called 'sr' (the restoration task's name; its operator is still sr4); "
        "the old name still works.",
        "pnprgm: benchmark task 'color' is now called 'colorize' (the restoration task's name); the old name still works."]
    with pytest.raises(UserError, match="names a choice twice"):
        build_config({"tasks": "sr4,sr"})
    help_text = CliRunner().invoke(app, ["benchmark", "--help"]).output
    assert f"Comma-separated tasks: {', '.join(tasks.registry.names())}" in " ".join(help_text.split())


@pytest.mark.parametrize("name", tasks.registry.names())
def test_every_task_builds_and_measures(name):
    task = tasks.registry.get(name)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    physics = operators.build(task.spec, (3, 32, 32))
    y = operators.measure(physics, x, task.noise, seed=1)
    assert torch.equal(y, operators.measure(physics, x, task.noise, seed=1))
    assert figures.display_measurement(y[0], (3, 32, 32)).shape == (3, 32, 32)
    assert task.applies_to(3) and task.applies_to(1) != task.colour_only


@pytest.mark.parametrize("name", methods.registry.names())
def test_every_method_describes_itself(name):
    method = methods.registry.get(name)
    info = method.describe()
    assert info["kind"] in ("pnp", "baseline")
    reason = method.unavailable(torch.device("cpu"))
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)


def test_methods_are_named_for_the_algorithm_that_runs(monkeypatch, capsys):
    """pnp-* are the DPIR-schedule splittings with the shipped default denoiser, the rgm-* method runs RGM's own
    solver; the old rgm-* names of the DPIR methods are their aliases (no old name changed meaning)."""
    from pnprgm import registry as registry_module

    for name in methods.registry.names():
        solver = getattr(methods.registry.get(name), "solver", None)
        if name.startswith("pnp-"):
            assert solver == name[len("pnp-"):] and methods.registry.get(name).denoiser == "default"
        if name.startswith("rgm-"):
            assert solver == "rgm-drs" and methods.registry.get(name).time_levels
    assert {"pnp-drs", "pnp-admm", "pnp-hqs", "rgm-stochastic-drs"} <= set(methods.registry.names())
    assert methods.registry.aliases() == {"rgm-drs": "pnp-drs", "rgm-admm": "pnp-admm", "rgm-hqs": "pnp-hqs"}
    monkeypatch.setattr(registry_module, "_ANNOUNCED", set())
    capsys.readouterr()
    assert build_config({"methods": "rgm-drs,rgm-stochastic-drs"}).methods == ("pnp-drs", "rgm-stochastic-drs")
    assert build_config({"methods": ["rgm-drs"]}).methods == ("pnp-drs",)
    assert [line for line in capsys.readouterr().err.splitlines() if "now called" in line] == [
        "pnprgm: benchmark method 'rgm-drs' is now called 'pnp-drs' (DRS with the DPIR schedule, not RGM's algorithm); "
        "the old name still works."]
    with pytest.raises(UserError, match="names a choice twice"):
        build_config({"methods": "rgm-drs,pnp-drs"})


def _timed_model_file(path: Path) -> Path:
    """A tiny time-conditioned (ddpm) colour generator: RGM's stochastic restoration step is defined for it."""
    from pnprgm.rgm.architectures import build_generator_from_config
    from pnprgm.rgm.model_file import save_model
    from pnprgm.rgm.unet import sized_config

    torch.manual_seed(0)
    gen = build_generator_from_config(sized_config("tiny", channels=3, nz=8, ch_mult=(1, 2)))
    return save_model(path, gen.state_dict(), dict(gen.config), {"name": "ddpm"}, {"command": "test", "steps": 1})


def test_rgm_stochastic_drs_runs_rgms_step_and_needs_time_levels(photo_dir, tmp_path, monkeypatch):
    """The method runs the rgm-drs solver through the model's own re-noising step; without --model (the shipped
    denoisers have no time levels) it is unavailable, and an image it has no timed model for fails in one line."""
    from pnprgm.io import sha256_file
    from pnprgm.denoisers.rgm import RGMDenoiser

    reason = methods.registry.get("rgm-stochastic-drs").unavailable(torch.device("cpu"))
    assert reason is not None and "needs a time-conditioned model" in reason and "\n" not in reason
    steps = []
    original = RGMDenoiser._stochastic_restore
    monkeypatch.setattr(RGMDenoiser, "_stochastic_restore",
                        lambda self, *args, **kwargs: steps.append(1) or original(self, *args, **kwargs))
    timed = _timed_model_file(tmp_path / "timed.pt")
    config = _config(data=str(photo_dir), tasks=("denoise",), methods=("rgm-stochastic-drs",), models=(str(timed),),
                     metrics=("psnr",), crop=32)
    result = run_benchmark(config, progress=False)
    assert sorted(r["image"] for r in result.records) == ["astronaut", "coffee"]
    assert len(steps) == 2 * 2  # two colour images, two iterations, one level: RGM's own step each time
    assert [(f["image"], f["kind"]) for f in result.failures] == [("camera", "failed")]
    assert "needs a time-conditioned model for 1-channel images" in result.failures[0]["reason"]
    described = result.data["config"]["resolved"]["methods"]["rgm-stochastic-drs"]
    assert described["solver"] == "rgm-drs" and described["models"]["3"] == sha256_file(timed)


@pytest.mark.parametrize("values, bad, listed", [
    ({"tasks": "sr4,sr5"}, "'sr5'", "sr, deblur, inpaint, colorize, denoise"),  # sr4 (an old name) is accepted
    ({"methods": "baseline,tv-hqs"}, "'tv-hqs'", "tv-admm"),
    ({"metrics": "psnr,mse"}, "'mse'", "lpips"),
    ({"protocol": {"chanel": "y"}}, "'chanel'", "channel"),
    ({"colour": 1}, "'colour'", "tasks"),
])
def test_bad_names_are_one_line_errors(values, bad, listed):
    with pytest.raises(UserError) as caught:
        build_config(values)
    message = str(caught.value)
    assert "\n" not in message and listed in message and bad in message, message


def test_bad_override_is_an_error_before_the_run(photo_dir):
    with pytest.raises(UserError, match="valid: iterations"):
        run_benchmark(_config(data=str(photo_dir), methods=("tv-admm",), overrides={"iteration": 2}), progress=False)


def test_cli_bad_task_exits_2_with_one_line():
    result = CliRunner().invoke(app, ["benchmark", "--task", "sr,nope", "-q"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --task: unknown benchmark task 'nope'")
    assert len(result.output.strip().splitlines()) == 1


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="holds no images"):
        run_benchmark(_config(data=str(tmp_path)), progress=False)
    with pytest.raises(UserError, match="neither a known set"):
        run_benchmark(_config(data=str(tmp_path / "missing")), progress=False)


def test_unreadable_image_is_skipped_and_named(photo_dir, tmp_path):
    (photo_dir / "broken.png").write_bytes(b"this is not a PNG")
    result = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",)),
                           json_path=tmp_path / "r.json", md_path=tmp_path / "r.md", progress=False)
    assert sorted(r["image"] for r in result.records) == ["astronaut", "camera", "coffee"]
    assert [(s["image"], s["kind"]) for s in result.skipped] == [("broken", "unreadable")]
    assert not result.ok
    assert "unreadable: image broken" in (tmp_path / "r.md").read_text()
    # --limit counts the images used; each keeps its place in the selection, so its measurement is the same
    limited = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), limit=2),
                            progress=False)
    assert [r["image"] for r in limited.records] == ["astronaut", "camera"]
    assert [(s["image"], s["kind"]) for s in limited.skipped] == [("broken", "unreadable")]
    measured = lambda run, name: [(r["seed"], r["psnr"]) for r in run.records if r["image"] == name]  # noqa: E731
    assert measured(limited, "camera") == measured(result, "camera")


def test_too_small_image_is_skipped_for_lpips(photo_dir):
    _write_png(photo_dir / "tiny.png", np.full((20, 24, 3), 128, np.uint8))
    result = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",)), progress=False)
    assert [(s["image"], s["kind"]) for s in result.skipped] == [("tiny", "unusable")]
    assert "LPIPS needs 31 px" in result.skipped[0]["reason"]
    assert len(result.records) == 3
    # VGG16 needs 16 px: the same image is scored by LPIPS-VGG; with the protocol's border crop of 4 px it is not
    vgg = _config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics="psnr,lpips_vgg")
    scored = run_benchmark(vgg, progress=False)
    assert not scored.skipped and len(scored.records) == 4
    cropped = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",),
                                    metrics="psnr,lpips_vgg", protocol={"crop": 4}), progress=False)
    assert [(s["image"], "LPIPS-VGG needs 24 px" in s["reason"]) for s in cropped.skipped] == [("tiny", True)]
    # the protocol's trim, not the photo, made it small: lowering it is the fix named (not dropping the metric)
    assert "lower --protocol crop, which trims 4 px" in cropped.skipped[0]["reason"]
    assert "without lpips_vgg" not in cropped.skipped[0]["reason"]
    assert "use --metrics without lpips" in result.skipped[0]["reason"]  # 20 px: too small for LPIPS with no trim


ALL_METRICS = "psnr,ssim,lpips,lpips_vgg"


@pytest.fixture
def negated_psnr():
    """A metric registered for one test (``-PSNR``, lower is better), unregistered afterwards."""
    from pnprgm.metrics import METRICS, Metric, psnr

    def negated(x, y, protocol, *, device=None):
        return -psnr(x, y, protocol, device=device)

    METRICS.add("neg_psnr", Metric(negated, higher_is_better=False, identical=float("-inf"), unit="dB",
                                   title="NegPSNR", digits=2), "PSNR with its sign flipped (a test metric)")
    yield "neg_psnr"
    METRICS.remove("neg_psnr")
    assert "neg_psnr" not in METRICS


def test_a_registered_metric_reaches_records_and_reports_by_being_registered(photo_dir, tmp_path, negated_psnr):
    """Contract: registering a metric in pnprgm.metrics is all it takes; it joins the default set, each record,
    the report's columns and, listed first, the overview and the figure captions."""
    from pnprgm.metrics import default_metrics

    assert default_metrics() == ("psnr", "ssim", "lpips", negated_psnr) == build_config({}).metrics
    config = _config(data=str(photo_dir), tasks=("denoise",), methods=("baseline", "tv-admm"),
                     metrics=f"{negated_psnr},psnr")
    result = run_benchmark(config, md_path=tmp_path / "r.md", figure_path=tmp_path / "r.png", progress=False)
    assert len(result.records) == 3 * 2
    for record in result.records:
        assert list(record) == ["image", "task", "method", negated_psnr, "psnr", "seconds", "seed"]
        assert record[negated_psnr] == pytest.approx(-record["psnr"])
    assert result.data["metrics"][negated_psnr]["label"] == "NegPSNR (dB) ↓"
    text = (tmp_path / "r.md").read_text()
    assert "## NegPSNR (dB) overview" in text
    assert "| method | NegPSNR (dB) ↓ | PSNR (dB) ↑ | seconds | images |" in text
    # lower wins for it, higher for PSNR: the same method is bold in both columns and in the overview
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines()
            if line.startswith(("| baseline |", "| tv-admm |")) and "±" in line}
    assert [method for method, cells in rows.items() if cells[1].startswith("**")] == ["tv-admm"]
    assert [method for method, cells in rows.items() if cells[2].startswith("**")] == ["tv-admm"]
    overview = text.split("## NegPSNR (dB) overview", 1)[1].split("##", 1)[0]
    mean = np.mean([r[negated_psnr] for r in result.records if r["method"] == "tv-admm"])
    assert f"| tv-admm | **{mean:.2f}** |" in overview
    figure_row = result.figure["denoise"][0]
    shown = next(r for r in result.records if r["image"] == figure_row.image and r["method"] == "tv-admm")
    assert figure_row.labels["tv-admm"] == f"{shown[negated_psnr]:.2f} dB"
    listed = CliRunner().invoke(app, ["benchmark", "--list"])
    assert listed.exit_code == 0 and f"  {negated_psnr:10s} * PSNR with its sign flipped" in listed.output


def test_every_requested_metric_reaches_records_and_reports(photo_dir, tmp_path, lpips_ready):
    out = tmp_path / "out"
    args = ["benchmark", "--data", str(photo_dir), "--task", "denoise", "--method", "baseline,tv-admm", "--crop", "48",
            "--set", "iterations=2", "--metrics", ALL_METRICS, "--json", str(out / "r.json"), "--md", str(out / "r.md"), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "r.json").read_text())
    assert len(data["records"]) == 3 * 2
    for record in data["records"]:
        assert list(record) == ["image", "task", "method", *ALL_METRICS.split(","), "seconds", "seed"]
        assert 0 < record["lpips_vgg"] < 1 and record["lpips_vgg"] != record["lpips"]
    assert list(data["metrics"]) == ALL_METRICS.split(",")
    assert data["metrics"]["lpips_vgg"]["label"] == "LPIPS-VGG ↓" and not data["metrics"]["lpips_vgg"]["higher_is_better"]
    text = (out / "r.md").read_text()
    assert "| method | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ | LPIPS-VGG ↓ | seconds | images |" in text
    assert "PSNR and SSIM: higher is better; LPIPS and LPIPS-VGG: lower is better" in text
    assert "- `lpips_vgg` (LPIPS-VGG): LPIPS v0.1 with ImageNet VGG16" in text
    # the best method of each column is bold, LPIPS-VGG included (lower wins)
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith(("| baseline |", "| tv-admm |"))}
    vgg = {method: float(row.split(" | ")[4].strip("*").split(" ± ")[0]) for method, row in rows.items()}
    best = min(vgg, key=vgg.get)
    assert rows[best].split(" | ")[4].startswith("**")
    rebuilt = CliRunner().invoke(app, ["benchmark", "--from-json", str(out / "r.json"), "--md", str(tmp_path / "again.md")])
    assert rebuilt.exit_code == 0 and (tmp_path / "again.md").read_text() == text


def test_resume_runs_again_the_records_that_lack_a_newly_requested_metric(photo_dir, tmp_path, monkeypatch, lpips_ready):
    path = tmp_path / "r.json"
    first = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics="psnr"),
                          json_path=path, progress=False)
    assert "lpips_vgg" not in first.records[0] and "lpips" not in first.records[0]
    calls = {"n": 0}
    original = methods.BaselineMethod.restore

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.BaselineMethod, "restore", counted)
    more = _config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics="psnr,lpips_vgg")
    second = run_benchmark(more, json_path=path, resume=True, progress=False)
    assert calls["n"] == len(first.records)  # the outputs were not kept: each record is restored and scored again
    assert [r["psnr"] for r in second.records] == [r["psnr"] for r in first.records]  # same seeds, same outputs
    assert all(0 < r["lpips_vgg"] < 1 for r in second.records)
    calls["n"] = 0
    third = run_benchmark(more, json_path=path, resume=True, progress=False)  # now everything is there
    assert calls["n"] == 0 and third.records == second.records
    # a metric no longer asked for is dropped from the reused records, when the user says so (--overwrite): without
    # it the stored values are not lost (test_rerunning_with_fewer_metrics_does_not_drop_stored_values)
    fewer = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics="psnr"),
                          json_path=path, resume=True, overwrite=True, progress=False)
    assert calls["n"] == 0
    assert fewer.records == [{key: value for key, value in r.items() if key != "lpips_vgg"} for r in second.records]


def test_results_json_of_the_first_format_still_loads(photo_dir, tmp_path, monkeypatch):
    """Before metrics came from the registry, records always held psnr, ssim and lpips (null when not asked for)
    and the JSON had no metrics section."""
    path = tmp_path / "old.json"
    first = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics="psnr,ssim"),
                          json_path=path, progress=False)
    old = json.loads(path.read_text())
    del old["metrics"]
    old["records"] = [{key: r.get(key) for key in ("image", "task", "method", "psnr", "ssim", "lpips", "seconds", "seed")}
                      for r in old["records"]]
    path.write_text(json.dumps(old))
    text = report.markdown(report.load_results(path))
    assert "| method | PSNR (dB) ↑ | SSIM ↑ | seconds | images |" in text and "LPIPS" not in text.split("## Metric protocol")[0]
    monkeypatch.setattr(methods.BaselineMethod, "restore", lambda *a, **k: pytest.fail("a record was recomputed"))
    resumed = run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics="psnr,ssim"),
                            json_path=path, resume=True, progress=False)
    assert resumed.records == first.records  # reused, in the current format
    # a metric this version does not know (a newer file) is shown as the file describes it
    old["config"]["metrics"] = ["psnr", "fid"]
    old["metrics"] = {"fid": {"title": "FID", "label": "FID ↓", "higher_is_better": False, "digits": 1}}
    for record in old["records"]:
        record["fid"] = 12.25
    assert "| method | PSNR (dB) ↑ | FID ↓ | seconds | images |" in report.markdown(old)
    assert "| **12.2 ± 0.0** |" in report.markdown(old) or "| **12.3 ± 0.0** |" in report.markdown(old)


def test_gray_images_skip_colorization_only(photo_dir):
    result = run_benchmark(_config(data=str(photo_dir), tasks=("colorize", "denoise"), methods=("baseline",)), progress=False)
    pairs = {(r["image"], r["task"]) for r in result.records}
    assert ("camera", "denoise") in pairs and ("camera", "colorize") not in pairs
    assert ("coffee", "colorize") in pairs


def test_partial_results_survive_a_crash(photo_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = methods.BaselineMethod.restore

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure")
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.BaselineMethod, "restore", flaky)
    path = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_config(data=str(photo_dir), tasks=("sr", "denoise"), methods=("baseline",)),
                      json_path=path, md_path=tmp_path / "partial.md", progress=False)
    data = json.loads(path.read_text())
    assert data["status"] == "interrupted"
    assert len(data["records"]) == 2  # calls 1 and 3; call 2 failed and is named, call 4 interrupted
    assert [(s["kind"], s["method"], "injected failure" in s["reason"]) for s in data["skipped"]] == [("failed", "baseline", True)]
    assert "Partial results" in (tmp_path / "partial.md").read_text()


def test_resume_reuses_matching_records(photo_dir, tmp_path, monkeypatch):
    original = methods.BaselineMethod.restore
    path = tmp_path / "r.json"
    config = _config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",))
    first = run_benchmark(config, json_path=path, progress=False)

    def fail(self, *args, **kwargs):
        raise AssertionError("a resumed record was recomputed")

    monkeypatch.setattr(methods.BaselineMethod, "restore", fail)
    more = _config(data=str(photo_dir), tasks=("denoise",), methods=("baseline", "nlm-hqs"))
    second = run_benchmark(more, json_path=path, resume=True, progress=False)
    assert not second.failures
    baseline = [r for r in second.records if r["method"] == "baseline"]
    assert baseline == first.records
    assert len(second.records) == 2 * len(first.records)
    with pytest.raises(UserError, match="other settings"):
        run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), crop=32),
                      json_path=path, resume=True, progress=False)
    # with a figure, the figure's image is restored again (its picture needs the output), the rest reused
    calls = {"n": 0}

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.BaselineMethod, "restore", counted)
    third = run_benchmark(more, json_path=path, figure_path=tmp_path / "f.png", resume=True, progress=False)
    assert calls["n"] == more.figure_images and len(third.records) == len(second.records)
    assert all(row.outputs["baseline"] is not None for row in third.figure["denoise"])


def test_resume_reuses_the_records_of_a_json_with_old_task_names(photo_dir, tmp_path, monkeypatch):
    """A results JSON written before issue 19 (tasks sr4 and color) is resumed as if written today: the renamed
    tasks draw the same seeds, so none of its records is computed again."""
    path = tmp_path / "r.json"
    config = _config(data=str(photo_dir), tasks=("sr", "colorize"), methods=("baseline",))
    first = run_benchmark(config, json_path=path, progress=False)
    assert len(first.records) == 3 + 2  # colorization: the two colour photos
    old = {new: previous for previous, new in tasks.registry.aliases().items()}
    data = json.loads(path.read_text())
    data["config"]["tasks"] = [old[name] for name in data["config"]["tasks"]]
    data["config"]["resolved"]["tasks"] = {old[name]: task for name, task in data["config"]["resolved"]["tasks"].items()}
    for record in data["records"]:
        record["task"] = old[record["task"]]
    path.write_text(json.dumps(data))
    monkeypatch.setattr(methods.BaselineMethod, "restore", lambda *a, **k: pytest.fail("a record was recomputed"))
    second = run_benchmark(config, json_path=path, resume=True, progress=False)
    assert second.records == first.records and not second.failures


def test_resume_reruns_a_method_whose_presets_or_models_changed(photo_dir, tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    config = _config(data=str(photo_dir), tasks=("denoise",), methods=("baseline", "nlm-hqs"))
    first = run_benchmark(config, json_path=path, progress=False)
    described = first.data["config"]["resolved"]["methods"]["nlm-hqs"]
    assert described["presets"]["denoise"] == dict(presets.registry.get("denoise-hqs").params)
    data = json.loads(path.read_text())  # as if the preset had been different when these records were made
    data["config"]["resolved"]["methods"]["nlm-hqs"]["presets"]["denoise"]["iterations"] = 99
    path.write_text(json.dumps(data))
    calls = {"pnp": 0}
    original = methods.PnPMethod.restore

    def counted(self, *args, **kwargs):
        calls["pnp"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.PnPMethod, "restore", counted)
    monkeypatch.setattr(methods.BaselineMethod, "restore", lambda *a, **k: pytest.fail("baseline was recomputed"))
    second = run_benchmark(config, json_path=path, resume=True, progress=False)
    assert calls["pnp"] == len(first.records) // 2 and not second.failures
    # a preset of another task (sr) changing leaves these denoising records valid
    data = json.loads(path.read_text())
    data["config"]["resolved"]["methods"]["nlm-hqs"]["presets"]["sr"]["iterations"] = 99
    path.write_text(json.dumps(data))
    calls["pnp"] = 0
    third = run_benchmark(config, json_path=path, resume=True, progress=False)
    assert calls["pnp"] == 0 and len(third.records) == len(first.records)


def test_pnp_methods_name_the_model_files_they_use():
    from pnprgm.rgm import models

    described = methods.registry.get("pnp-drs").describe()
    task_models = {p.denoiser for p in map(presets.registry.get, presets.registry.names())
                   if p.denoiser and p.solver == "drs"}
    assert task_models  # colorization's preset names its own model
    expected = {str(c): models.default_model(c).sha256 for c in (1, 3)}
    for name in task_models:  # a shipped model, or a family of a colour and a gray one
        members = {name: models.registry.get(name)} if name in models.registry else {
            f"{name}/{c}": entry for c, entry in models.families()[name].items()}
        expected.update({key: entry.sha256 for key, entry in members.items()})
    assert described["models"] == expected
    tv = methods.registry.get("tv-admm").describe()
    assert tv["models"] is None
    assert not any("denoiser" in values for values in tv["presets"].values())  # preset models replace only default


@pytest.mark.parametrize("name", ["pnp-hqs", "tv-admm"])
def test_pnp_methods_restore_what_pnprgm_restore_does(name, monkeypatch):
    """A PnP method's estimate is pnprgm.restore's for its denoiser and solver (the task's preset, and for the
    default denoiser the shipped model that preset names, chosen by restore), bitwise; its seconds start once the
    denoiser is built."""
    from pnprgm import denoisers
    from pnprgm.restoration import restore

    method = methods.registry.get(name)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    physics = operators.build("sr4", (3, 32, 32))
    y = operators.measure(physics, x, 0.01, seed=1)
    events = []
    build, clock = denoisers.build, methods.time.perf_counter
    monkeypatch.setattr(denoisers, "build", lambda *args, **kwargs: events.append("build") or build(*args, **kwargs))
    monkeypatch.setattr(methods.time, "perf_counter", lambda: events.append("clock") or clock())
    estimate, seconds = method.restore(y, physics, noise_sigma=0.01, seed=4, device=torch.device("cpu"),
                                       overrides={"iterations": 2})
    assert events.count("build") == 1 and events.index("clock") > events.index("build") and seconds > 0
    monkeypatch.undo()
    expected = restore(y, physics, denoiser=method.denoiser, solver=method.solver, noise_sigma=0.01, seed=4, iterations=2)
    assert torch.equal(estimate, expected)


def test_cli_end_to_end(photo_dir, tmp_path):
    out = tmp_path / "out"
    args = ["benchmark", "--data", str(photo_dir), "--task", "sr,inpaint", "--method", "baseline,nlm-hqs",
            "--crop", "48", "--set", "iterations=2", "--json", str(out / "r.json"), "--md", str(out / "r.md"),
            "--figure", str(out / "r.jpg"), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| nlm-hqs |" in result.output
    data = json.loads((out / "r.json").read_text())
    assert len(data["records"]) == 3 * 2 * 2
    assert data["config"]["overrides"] == {"iterations": "2"}
    assert (out / "r.md").is_file()
    with Image.open(out / "r.jpg") as figure:  # the suffix picks the format
        assert figure.format == "JPEG"
    rebuilt = CliRunner().invoke(app, ["benchmark", "--from-json", str(out / "r.json"), "--md", str(tmp_path / "again.md")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (tmp_path / "again.md").read_text() == (out / "r.md").read_text()


def test_suite_file_is_valid():
    from pnprgm.config import read_config_file

    suite = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.json"
    config = build_config(read_config_file(suite))
    committed = json.loads((suite.parent / "results.json").read_text())
    assert committed["config"]["methods"] == list(config.methods)  # today's names: --resume reuses its records
    assert committed["config"]["tasks"] == list(config.tasks)
    for results in ("results.json", "results_bm3d.json"):  # every committed record keyed by today's task names
        data = json.loads((suite.parent / results).read_text())
        named = {*data["config"]["tasks"], *data["config"]["resolved"]["tasks"], *(r["task"] for r in data["records"])}
        assert named <= set(tasks.registry.names()), results
    assert set(committed["config"]["resolved"]["methods"]) <= set(methods.registry.names())
    public = {image.name for image in datasets.public_set().images}
    assert set(config.images) <= {entry.name for entry in datasets.PUBLIC_IMAGES}
    assert public <= set(config.images)  # every installed public image is in the committed suite


def test_centre_crop_is_aligned_and_centred():
    image = torch.arange(3 * 70 * 90, dtype=torch.float32).reshape(3, 70, 90)
    crop = datasets.centre_crop(image, 64)
    assert crop.shape == (3, 64, 64)
    assert torch.equal(crop, image[:, 3:67, 13:77])
    assert datasets.centre_crop(image, 0).shape == (3, 64, 88)


def test_public_set_excludes_training_images(shared_dir):
    assert not {entry.name for entry in datasets.PUBLIC_IMAGES} & datasets.EXCLUDED_TRAINING
    manifest = (shared_dir / "data" / "train" / "MANIFEST.tsv").read_text().splitlines()[1:]
    trained = {line.split("\t")[0].split("__", 1)[1].rsplit(".", 1)[0]
               for line in manifest if line.startswith("scikit-image")}
    assert trained and trained <= datasets.EXCLUDED_TRAINING


def test_speed_script_writes_its_report(tmp_path):
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    main = runpy.run_path(str(script))["main"]
    code = main(["--denoiser", "tv", "--size", "32", "--iters", "2", "--repeats", "1",
                 "--json", str(tmp_path / "speed.json"), "--md", str(tmp_path / "speed.md")])
    assert code == 0
    data = json.loads((tmp_path / "speed.json").read_text())
    it = data["per_iteration"]
    assert data["runs"][0]["iterations"] == 2
    assert it["overhead_seconds"] == pytest.approx(it["iteration_seconds"] - it["denoiser_seconds"])
    assert "seconds per image" in (tmp_path / "speed.md").read_text()
    assert "denoiser forward alone (32x32 colour)" in (tmp_path / "speed.md").read_text()  # it said 256x256 always


@pytest.mark.slow
def test_sample_spread_script_measures_where_samples_differ(tmp_path):
    """benchmarks/sample_spread.py: RGM's re-noising loop spreads its samples more where pixels are missing than
    where they are observed; the report holds every method and the figure one line per method."""
    import runpy

    from PIL import Image

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sample_spread.py"
    main = runpy.run_path(str(script))["main"]
    main(["--method", "tv:drs,tv:rgm-drs", "--samples", "3", "--crop", "32", "--limit", "1", "--out", str(tmp_path / "s"),
          "--reference", "tv:drs"])
    report = json.loads((tmp_path / "s.json").read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert set(rows) == {"tv:drs", "tv:rgm-drs"}
    assert rows["tv:rgm-drs"]["std_missing"] > 1.5 * rows["tv:rgm-drs"]["std_observed"] > 0
    assert report["verdicts"]["tv:rgm-drs"]["passes"] and set(report["verdicts"]) == {"tv:rgm-drs"}
    assert "| `tv:rgm-drs` |" in (tmp_path / "s.md").read_text()
    assert "- `tv:rgm-drs`: " in (tmp_path / "s.md").read_text()
    assert Image.open(tmp_path / "s.png").size == (3 * 32, 2 * 32)


def test_sample_spread_bar_needs_more_spread_than_the_reference_and_the_untrained_start(capsys):
    """The spread half of issue 17's bar: a start that spreads as much (its grain) fails the candidate."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sample_spread.py"
    module = runpy.run_path(str(script))
    rows = [{"method": "mse", "std_missing": 0.0020}, {"method": "cand", "std_missing": 0.0024},
            {"method": "cand0", "std_missing": 0.0025}, {"method": "other", "std_missing": 0.0019}]
    found = module["verdicts"](rows, "mse", {"cand": "cand0"})
    assert set(found) == {"cand", "other"}  # neither the reference nor a start is judged
    assert not found["cand"]["passes"] and found["cand"]["above"] == {"reference": 0.0020, "start": 0.0025}
    assert not found["other"]["passes"]
    assert module["verdicts"](rows, "mse", {})["cand"]["passes"]
    for argv, message in (
            (["--method", "a:drs", "--reference", "b:drs"], "name methods of --method (not: b:drs)"),
            (["--method", "a:drs,b:drs", "--start", "a:drs=b:drs"], "--start needs --reference"),
            (["--method", "a:drs,b:drs", "--reference", "b:drs", "--start", "a:drs"], "give MODEL=START"),  # a KeyError
            (["--method", "a:drs,b:drs", "--reference", "b:drs", "--start", "a:drs="], "give MODEL=START")):
        with pytest.raises(SystemExit) as exit_info:
            module["parse_args"](argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, argv


def test_latent_budget_script_prices_spread_in_psnr(tmp_path):
    """benchmarks/latent_budget.py: noise added to the MSE UNet's outputs spreads the inpainting samples more at the
    missing pixels than at the observed ones, more with a larger amplitude, and costs PSNR; no noise costs nothing."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "latent_budget.py"
    main = runpy.run_path(str(script))["main"]
    main(["--samples", "2", "--crop", "32", "--limit", "1", "--threads", "1", "--out", str(tmp_path / "b")])
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    none, weak, strong = rows[0], rows[1], rows[3]
    assert (none["amp"], weak["amp"], strong["amp"]) == (0.0, 0.1, 0.3)
    spread = [row["inpaint"]["std_missing"] for row in (none, weak, strong)]
    assert spread[0] < spread[1] < spread[2] and strong["inpaint"]["std_missing"] > strong["inpaint"]["std_observed"]
    assert strong["deblur"]["psnr"] < none["deblur"]["psnr"]
    assert "| none | " in (tmp_path / "b.md").read_text()


def _training_folder_with_one_held_out_photo(tmp_path: Path) -> Path:
    """10 smooth colour 72x72 photos: the 10 % that split_validation holds out is one."""
    from pnprgm import io

    train = tmp_path / "train"
    train.mkdir()
    rng = torch.Generator().manual_seed(0)
    for index in range(10):
        smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=rng), size=(72, 72), mode="bicubic")
        io.write_image(train / f"p{index}.png", smooth[0].clamp(0, 1))
    return train


@pytest.mark.slow
def test_prior_vs_mse_script_compares_each_model_with_the_mse_model_on_held_out_photos(tmp_path, lpips_ready):
    """benchmarks/prior_vs_mse.py: a copy of the MSE model costs exactly 0 dB and gains 0 LPIPS (same seeds, same
    photos), so it does not pass the bar; an untrained model loses PSNR far beyond the 0.5 dB allowed and fails."""
    import runpy
    import shutil

    from pnprgm.rgm import models

    train = _training_folder_with_one_held_out_photo(tmp_path)
    mse_copy = tmp_path / "mse_copy.pt"
    shutil.copyfile(models.model_path("unet-denoiser-color"), mse_copy)
    untrained = _tiny_model_file(tmp_path / "untrained.pt", 3)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "prior_vs_mse.py"
    main = runpy.run_path(str(script))["main"]
    common = ["--train", str(train), "--crop", "32", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "r"), "-q"]
    assert main(["--model", str(mse_copy), "--model", str(untrained), *common]) == 0
    found = json.loads((tmp_path / "r.json").read_text())
    assert found["rows"] == ["presets", "unet-denoiser-color", str(mse_copy), str(untrained)]
    assert len(found["photos"]) == 1 and found["command"].endswith("-q")
    for task in ("sr", "deblur"):
        same = found["verdicts"][str(mse_copy)][task]
        assert same["psnr_cost"] == 0 and same["lpips_vgg_gain"] == 0 and not same["passes"]
        worse = found["verdicts"][str(untrained)][task]
        assert worse["psnr_cost"] > 0.5 and not worse["passes"]
    assert not found["verdicts"][str(untrained)]["passes_all"]
    report = (tmp_path / "r.md").read_text()
    assert "| sr | presets' denoisers |" in report and "does not pass" in report
    # an earlier --out is replaced only when asked: the script once wrote over any file of its stem
    before = (tmp_path / "r.json").read_bytes()
    assert main(["--model", str(untrained), "--task", "denoise", *common]) == 2
    assert (tmp_path / "r.json").read_bytes() == before
    common.append("--overwrite")  # from here on each run replaces r.json and r.md
    # another task alone is shown, but the bar needs sr and deblur: even the untrained model is "not judged"
    assert main(["--model", str(untrained), "--task", "denoise", *common]) == 0
    found = json.loads((tmp_path / "r.json").read_text())
    assert found["tasks"] == ["denoise"] and not found["verdicts"][str(untrained)]["passes_all"]
    assert "| denoise | `unet-denoiser-color` |" in (tmp_path / "r.md").read_text()
    assert "not judged (the bar needs sr and deblur at their own noise and presets)" in (tmp_path / "r.md").read_text()
    # the bar's tasks at another noise are not the bar either
    assert main(["--model", str(mse_copy), "--noise", "5/255", *common]) == 0
    found = json.loads((tmp_path / "r.json").read_text())
    assert found["noise"] == pytest.approx(5 / 255) and not found["verdicts"][str(mse_copy)]["passes_all"]
    assert "measurement noise 5/255 on every task" in (tmp_path / "r.md").read_text()
    # nor with another solver setting (one denoiser call instead of the average of 8 flipped ones)
    assert main(["--model", str(mse_copy), "--task", "denoise", "--set", "symmetry=none", *common]) == 0
    found = json.loads((tmp_path / "r.json").read_text())
    assert found["overrides"] == {"symmetry": "none"} and not found["verdicts"][str(mse_copy)]["passes_all"]
    cached = [json.loads(f.read_text()) for f in (tmp_path / "work").glob("*symmetry-none_*.json")]
    assert len(cached) == 3 and all(c["config"]["overrides"] == {"symmetry": "none"} for c in cached)
    with pytest.raises(SystemExit) as bad:  # argparse's own one-line usage error
        main(["--model", str(mse_copy), "--noise", "2", *common])
    assert bad.value.code == 2
    # a gray model would silently be replaced by the presets' colour denoisers: refused in one line
    assert main(["--model", "unet-denoiser-gray", *common]) == 2
    # --start: the start is a row of its own, and the model is judged against it too (the copy of the MSE model
    # against the untrained one: better than that start, still not better than the MSE model)
    assert main(["--model", str(mse_copy), "--start", f"{mse_copy}={untrained}", *common]) == 0
    found = json.loads((tmp_path / "r.json").read_text())
    assert found["rows"][2:] == [str(mse_copy), str(untrained)] and found["starts"] == {str(mse_copy): str(untrained)}
    over = found["verdicts"][str(mse_copy)]["sr"]
    assert over["lpips_vgg_gain_over_start"] > 0 and not over["passes"]
    assert f"over its start `{untrained}`" in (tmp_path / "r.md").read_text()
    assert f"- `{untrained}` (the untrained start of `{mse_copy}`" in (tmp_path / "r.md").read_text()
    for bad in (f"{untrained}={mse_copy}", f"{mse_copy}", f"{mse_copy}={mse_copy}"):  # not a --model; no START; itself
        assert main(["--model", str(mse_copy), "--start", bad, *common]) == 2
    # a model that trained on the one held-out photo (here through the model it was fine-tuned from) leaves no photo
    # that every row never saw: refused in one line rather than judged on a photo it learnt
    from pnprgm import io
    from pnprgm.training.data import held_out_files

    (photo,) = held_out_files(train)
    saw = _tiny_model_file(tmp_path / "saw.pt", 3, {"files": [{"name": photo.name, "sha256": io.sha256_file(photo)}]})
    child = _tiny_model_file(tmp_path / "child.pt", 3, {"files": [], "init_from": {"source": str(saw)}})
    assert main(["--model", str(child), *common]) == 2


def test_noise_split_calls_the_model_only_on_its_side_of_the_split():
    """benchmarks/noise_split.py's denoiser: the model where sigma is on the chosen side of S, the MSE model elsewhere,
    per sample of a batch (a solver may pass one sigma per image)."""
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "noise_split.py"))
    model, mse = (lambda x, sigma: torch.zeros_like(x)), (lambda x, sigma: torch.ones_like(x))
    x = torch.full((3, 1, 2, 2), 0.5)
    high = script["split_denoiser"](model, mse, 0.04, "high")
    low = script["split_denoiser"](model, mse, 0.04, "low")
    assert high(x, 0.1).max() == 0 and high(x, 0.01).min() == 1 and high(x, 0.04).max() == 0  # S is on the high side
    assert low(x, 0.1).min() == 1 and low(x, 0.01).max() == 0
    for sigma in (torch.tensor([0.1, 0.01, 0.2]), torch.tensor([0.1, 0.01, 0.2]).view(3, 1, 1, 1)):
        assert high(x, sigma)[:, 0, 0, 0].tolist() == [0, 1, 0]
    assert high(x, torch.tensor(0.01)).min() == 1  # a 0-d tensor


@pytest.mark.slow
def test_noise_split_script_equals_the_mse_model_where_the_model_is_never_called(tmp_path, lpips_ready):
    """benchmarks/noise_split.py: an untrained model used only above 1.0 (never: the schedules stay below 50/255)
    gives the MSE model's numbers exactly; used from 0 up (every call) it loses far more than 0.5 dB; rows are
    never judged, and the split is said in the report."""
    import runpy

    import pnprgm.denoisers.rgm as rgm

    train = _training_folder_with_one_held_out_photo(tmp_path)
    untrained = _tiny_model_file(tmp_path / "untrained.pt", 3)
    main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "noise_split.py"))["main"]
    loader = rgm.load_denoiser
    common = ["--model", str(untrained), "--train", str(train), "--crop", "32", "--work", str(tmp_path / "work"), "-q"]
    found = {}
    for at, stem in (("1", "never"), ("0", "always")):
        assert main([*common, "--at", at, "--out", str(tmp_path / stem)]) == 0
        found[stem] = json.loads((tmp_path / f"{stem}.json").read_text())
        assert rgm.load_denoiser is loader  # put back after the run
    for stem, data in found.items():
        (row,) = data["rows"][2:]
        assert Path(row).name.startswith("untrained_high_")
        assert data["split"]["rows"] == {row: {"model": str(untrained), "side": "high"}}
        assert not data["judged"] and not data["verdicts"][row]["passes_all"]
        report = (tmp_path / f"{stem}.md").read_text()
        assert "not judged (a split model is no model anyone trained)" in report and "Split rows" in report
    # both sides in one run: a row each, and together they are the whole model (here the never-called side is
    # the MSE model's row again)
    assert main([*common, "--at", "1", "--side", "high", "--side", "low", "--out", str(tmp_path / "both")]) == 0
    both = json.loads((tmp_path / "both.json").read_text())
    assert [Path(row).name[:23] for row in both["rows"][2:]] == ["untrained_high_255of255", "untrained_low_255of255_"]
    for task in ("sr", "deblur"):
        never, always = (both["verdicts"][row][task] for row in both["rows"][2:])
        assert never["psnr_cost"] == 0 and never["lpips_vgg_gain"] == 0
        assert always["psnr_cost"] > 0.5  # below 1.0 is every call
        never = found["never"]["verdicts"][found["never"]["rows"][2]][task]
        assert never["psnr_cost"] == 0 and never["lpips_vgg_gain"] == 0
        assert found["always"]["verdicts"][found["always"]["rows"][2]][task]["psnr_cost"] > 0.5
    assert rgm.load_denoiser is loader  # the loader is put back


def test_residual_by_noise_tells_a_denoiser_that_keeps_the_noise_from_one_that_removes_it(tmp_path, monkeypatch):
    """benchmarks/residual_by_noise.py on one held-out photo: a "denoiser" that returns its input keeps all the noise
    (residual ratio 0, detail above the photo's); an oracle that returns the clean photo removes exactly the noise
    (ratio ~ 1, detail ratio 1); the MSE model lies between (0 < ratio < 1) and its ratio grows with the noise."""
    import runpy

    from pnprgm.denoisers import rgm

    train = _training_folder_with_one_held_out_photo(tmp_path)
    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "residual_by_noise.py"))
    photos = script["heldout_colour"](train, 64, None, ["unet-denoiser-color"])
    assert len(photos) == 1
    clean = photos[0][1][None]
    stand_ins = {"keeps": lambda y, sigma: y, "oracle": lambda y, sigma: clean}
    original = rgm.load_denoiser
    monkeypatch.setattr(rgm, "load_denoiser", lambda name, channels=3: stand_ins.get(name) or original(name, channels=channels))
    levels = [5 / 255, 25 / 255]
    keeps, oracle, mse = (script["measure"](name, photos, levels) for name in ("keeps", "oracle", "unet-denoiser-color"))
    assert all(row["residual_ratio"] == 0 and row["detail_ratio"] > 1.2 for row in keeps)
    assert all(abs(row["residual_ratio"] - 1) < 0.1 and row["detail_ratio"] == pytest.approx(1) for row in oracle)
    assert all(0 < row["residual_ratio"] < 1 for row in mse) and mse[0]["residual_ratio"] < mse[1]["residual_ratio"]
    assert mse[1]["psnr"] > keeps[1]["psnr"] + 3
    main = script["main"]
    assert main(["--model", "unet-denoiser-color", "--train", str(train), "--crop", "64", "--noise", "5/255",
                 "--out", str(tmp_path / "r")]) == 0
    assert "| `unet-denoiser-color` | " in (tmp_path / "r.md").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["results"]["unet-denoiser-color"][0]["noise"] == pytest.approx(5 / 255)
    assert main(["--model", "unet-denoiser-color", "--train", str(train), "--noise", "0"]) == 2
    before = (tmp_path / "r.md").read_bytes()  # an earlier --out is replaced only with --overwrite
    assert main(["--model", "unet-denoiser-color", "--train", str(train), "--out", str(tmp_path / "r")]) == 2
    assert (tmp_path / "r.md").read_bytes() == before


@pytest.mark.parametrize("mine,passes", [
    ({"psnr": 29.6, "lpips": 0.19, "lpips_vgg": 0.229}, True),    # 0.4 dB for a better LPIPS-VGG
    ({"psnr": 29.4, "lpips": 0.15, "lpips_vgg": 0.200}, False),   # 0.6 dB is too much, whatever the gain
    ({"psnr": 30.2, "lpips": 0.15, "lpips_vgg": 0.230}, False),   # LPIPS-VGG only equal: no perceptual gain
    ({"psnr": 30.0, "lpips": 0.25, "lpips_vgg": 0.2299}, True),   # no PSNR cost, LPIPS-alex worse: VGG judges
])
def test_prior_vs_mse_bar(mine, passes):
    """Issue 17's bar: LPIPS-VGG below the MSE model's at a PSNR cost of at most 0.5 dB."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "prior_vs_mse.py"
    verdict = runpy.run_path(str(script))["verdict"]
    found = verdict(mine, {"psnr": 30.0, "lpips": 0.20, "lpips_vgg": 0.230})
    assert found["passes"] is passes
    assert found["psnr_cost"] == pytest.approx(30.0 - mine["psnr"])
    assert found["lpips_vgg_gain"] == pytest.approx(0.230 - mine["lpips_vgg"])
    # with an untrained start (added grain can pass alone), the prior must also beat that start
    start = {"psnr": 30.0, "lpips": 0.20, "lpips_vgg": 0.2295}
    with_start = verdict(mine, {"psnr": 30.0, "lpips": 0.20, "lpips_vgg": 0.230}, start)
    assert with_start["passes"] is (passes and mine["lpips_vgg"] < 0.2295)
    assert with_start["lpips_vgg_gain_over_start"] == pytest.approx(0.2295 - mine["lpips_vgg"])


def _tiny_model_file(path: Path, channels: int, record: dict | None = None) -> Path:
    from pnprgm.rgm.model_file import save_model
    from pnprgm.rgm.architectures import build_generator_from_config
    from pnprgm.rgm.unet import sized_config

    torch.manual_seed(0)
    config = sized_config("tiny", channels=channels, conditioning="sigma", output="residual", sigma_channel=True)
    gen = build_generator_from_config(config)
    return save_model(path, gen.state_dict(), dict(gen.config), {"name": "denoise"},
                      record or {"command": "test", "steps": 1})


def test_model_option_replaces_the_default_for_its_channel_count(photo_dir, tmp_path, monkeypatch):
    """--model gray.pt: gray images use it, colour images keep the shipped colour model; the JSON names both files."""
    from pnprgm import denoisers, io
    from pnprgm.rgm import models

    gray = _tiny_model_file(tmp_path / "gray.pt", 1)
    built: list[tuple[str, int]] = []
    original = denoisers.build

    def spy(name, *, channels=3, device="cpu", seed=0):
        built.append((str(name), channels))
        return original(name, channels=channels, device=device, seed=seed)

    monkeypatch.setattr(denoisers, "build", spy)
    out = tmp_path / "r.json"
    # the method by its old name (pnp-hqs was rgm-hqs): it runs, and keys its records, as pnp-hqs
    result = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--task", "denoise", "--method", "rgm-hqs",
                                      "--crop", "32", "--metrics", "psnr", "--model", str(gray), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["config"]["methods"] == ["pnp-hqs"] and {r["method"] for r in data["records"]} == {"pnp-hqs"}
    assert data["config"]["models"] == [str(gray)] and f"--model {gray}" in data["command"]
    colorize_model = presets.registry.get("colorize-hqs").denoiser  # colour, so --model gray.pt leaves it in use
    family = presets.registry.get("sr-hqs").denoiser  # its gray member is replaced by --model gray.pt, not its colour one
    assert data["config"]["resolved"]["methods"]["pnp-hqs"]["models"] == {
        "1": io.sha256_file(gray), "3": models.default_model(3).sha256,
        colorize_model: models.registry.get(colorize_model).sha256,
        f"{family}/3": models.families()[family][3].sha256}
    colour = _tiny_model_file(tmp_path / "colour.pt", 3)  # a colour --model replaces it too
    assert methods.PnPMethod("default", "hqs", models=((3, str(colour)),)).describe()["models"] == {
        "1": models.default_model(1).sha256, "3": io.sha256_file(colour),
        f"{family}/1": models.families()[family][1].sha256}
    assert (str(gray), 1) in built and ("default", 1) not in built and ("default", 3) in built
    assert len(data["records"]) == 3


def test_a_model_no_image_takes_is_refused_and_images_without_one_are_named(photo_dir, tmp_path):
    """--model gray.pt on colour images used to run the shipped colour model under the user's eyes, in silence."""
    gray = _tiny_model_file(tmp_path / "gray.pt", 1)
    args = ["benchmark", "--data", str(photo_dir), "--task", "denoise", "--method", "pnp-hqs", "--crop", "32",
            "--metrics", "psnr", "--model", str(gray), "--set", "iterations=1"]
    result = CliRunner().invoke(app, [*args, "--images", "coffee,astronaut", "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 2 and "takes gray images, and this run has only colour images" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "a.json").exists()
    result = CliRunner().invoke(app, [*args, "--images", "coffee,camera", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    assert "the colour images run the shipped default colour model" in result.output


def test_model_option_rejects_two_models_for_one_channel_count(tmp_path):
    a, b = _tiny_model_file(tmp_path / "a.pt", 3), _tiny_model_file(tmp_path / "b.pt", 3)
    with pytest.raises(UserError, match="one model per channel count"):
        _config(models=(str(a), str(b))).chosen_models()
    with pytest.raises(UserError, match="missing.pt does not exist; give the path of a model file"):
        _config(models=(str(tmp_path / "missing.pt"),)).chosen_models()


def _bench(photo_dir, *outputs, crop: int = 48):
    return CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--images", "coffee", "--task", "denoise",
                                    "--method", "baseline", "--crop", str(crop), "--metrics", "psnr", "-q",
                                    *map(str, outputs)])


def test_outputs_never_replace_a_file_the_benchmark_did_not_write(photo_dir, tmp_path):
    """--json/--md/--figure over a user's file: one line before any work, the file intact; --overwrite replaces it;
    the benchmark's own outputs are replaced by a rerun without it."""
    photo = photo_dir / "coffee.png"
    before = photo.read_bytes()
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    result = _bench(photo_dir, "--md", notes)
    assert result.exit_code == 2, result.output
    assert f"{notes} already exists and was not written by pnprgm benchmark" in result.output
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert photo.read_bytes() == before and notes.read_text() == "# my notes\n"
    out = tmp_path / "out"
    outputs = ("--json", out / "r.json", "--md", out / "r.md", "--figure", out / "r.png")
    assert _bench(photo_dir, *outputs).exit_code == 0
    stamps = {path: path.stat().st_mtime_ns for path in (out / "r.json", out / "r.md", out / "r.png")}
    (out / "r.md").write_text((out / "r.md").read_text() + "\nan edit the rerun must not keep\n")
    time.sleep(0.01)
    again = _bench(photo_dir, *outputs)  # its own files: replaced
    assert again.exit_code == 0, again.output
    assert all(path.stat().st_mtime_ns != stamp for path, stamp in stamps.items())  # each written again
    assert "an edit the rerun must not keep" not in (out / "r.md").read_text()
    forced = _bench(photo_dir, "--md", notes, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert notes.read_text().startswith("# pnprgm benchmark")
    from_json = CliRunner().invoke(app, ["benchmark", "--from-json", str(out / "r.json"), "--md", str(photo)])
    assert from_json.exit_code == 2 and "not written by pnprgm benchmark" in from_json.output
    assert photo.read_bytes() == before
    for flag in ("--json", "--md", "--figure"):  # --overwrite never reaches the photos the run reads
        for overwrite in ((), ("--overwrite",)):  # refused as a photo, not told to pass --overwrite first
            refused = _bench(photo_dir, flag, photo, *overwrite)
            assert refused.exit_code == 2 and "is a photo of the data set this run reads" in refused.output
    assert photo.read_bytes() == before


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\xff", b"[" * 100000 + b"]" * 100000])
def test_a_binary_or_too_deeply_nested_file_is_one_line_as_suite_results_or_resume(photo_dir, tmp_path, content):
    """A PNG given as a suite raised UnicodeDecodeError, JSON nested 100000 deep RecursionError: tracebacks."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    for args in (["--suite", str(bad)], ["--from-json", str(bad), "--md", str(tmp_path / "o.md")],
                 ["--data", str(photo_dir), "--images", "coffee", "--task", "denoise", "--method", "baseline",
                  "--crop", "48", "--metrics", "psnr", "-q", "--json", str(bad), "--resume", "--overwrite"]):
        result = CliRunner().invoke(app, ["benchmark", *args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert result.output.startswith("error:") and result.output.count("\n") == 1, result.output
    from pnprgm.config import read_config_file

    with pytest.raises(UserError, match="cannot parse config file"):
        read_config_file(bad)


def test_a_results_json_of_another_run_is_not_silently_replaced(photo_dir, tmp_path):
    """A rerun with other tasks, images or settings would rewrite --json without the earlier run's records: refused
    before any work unless --overwrite; the same run (or one that covers every earlier record) replaces it."""
    out = tmp_path / "r.json"
    assert _bench(photo_dir, "--json", out).exit_code == 0
    before = out.read_bytes()
    other_task = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--images", "coffee", "--task", "sr",
                                          "--method", "baseline", "--crop", "48", "--metrics", "psnr", "-q",
                                          "--json", str(out)])
    assert other_task.exit_code == 2 and "Traceback" not in other_task.output, other_task.output
    assert "denoise/baseline on coffee" in other_task.output and "--overwrite" in other_task.output
    for args in (("--crop", "64"), ("--crop", "64", "--resume")):
        other_crop = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--images", "coffee", "--task",
                                              "denoise", "--method", "baseline", "--metrics", "psnr", "-q",
                                              "--json", str(out), *args])
        assert other_crop.exit_code == 2 and "changed: crop" in other_crop.output, other_crop.output
    assert out.read_bytes() == before
    wider = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--images", "coffee", "--task", "denoise,sr",
                                     "--method", "baseline", "--crop", "48", "--metrics", "psnr", "-q",
                                     "--json", str(out), "--resume"])
    assert wider.exit_code == 0, wider.output
    assert {r["task"] for r in json.loads(out.read_text())["records"]} == {"denoise", "sr"}
    refused = _bench(photo_dir, "--json", out, crop=64)
    assert refused.exit_code == 2 and "changed: crop" in refused.output, refused.output
    forced = _bench(photo_dir, "--json", out, "--overwrite", crop=64)
    assert forced.exit_code == 0, forced.output
    assert {r["task"] for r in json.loads(out.read_text())["records"]} == {"denoise"}


def test_a_rerun_is_not_refused_for_an_old_method_name_and_says_why_a_method_is_missing(photo_dir, tmp_path, monkeypatch):
    """Records written under a method's old name (rgm-drs, today pnp-drs) are today's: a rerun keeps and --resume
    reuses them (they were taken for another run's). A method unavailable now is named with its reason."""
    from pnprgm.benchmark.methods import PnPMethod

    out = tmp_path / "r.json"
    args = ["benchmark", "--data", str(photo_dir), "--images", "coffee", "--task", "denoise", "--crop", "48",
            "--metrics", "psnr", "-q", "--json", str(out)]
    assert CliRunner().invoke(app, [*args, "--method", "baseline,pnp-drs"]).exit_code == 0
    data = json.loads(out.read_text())  # as written before the rename
    for record in data["records"]:
        record["method"] = {"pnp-drs": "rgm-drs"}.get(record["method"], record["method"])
    methods_info = data["config"]["resolved"]["methods"]
    methods_info["rgm-drs"] = methods_info.pop("pnp-drs")
    out.write_text(json.dumps(data))
    old_seconds = {r["method"]: r["seconds"] for r in data["records"]}
    resumed = CliRunner().invoke(app, [*args, "--method", "baseline,pnp-drs", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert {r["method"]: r["seconds"] for r in json.loads(out.read_text())["records"]} == {
        "baseline": old_seconds["baseline"], "pnp-drs": old_seconds["rgm-drs"]}  # reused, under today's name
    monkeypatch.setattr(PnPMethod, "unavailable", lambda self, device: "needs the moon" if self.solver == "drs" else None)
    refused = CliRunner().invoke(app, [*args, "--method", "baseline,pnp-drs"])
    assert refused.exit_code == 2, refused.output
    assert "for a method unavailable now (denoise/pnp-drs on coffee: needs the moon)" in refused.output


@pytest.mark.parametrize("outputs, message", [
    (("--figure", "fig.gif"), "--figure writes PNG or JPEG; name it .png or .jpg"),
    (("--json", "same.x", "--md", "same.x"), "--json and --md name the same file"),
    (("--md", "blocker/report.md"), "cannot write"),
    (("--json", "."), "is a directory"),
    (("--md", ""), "--md '' is empty"),  # was an OSError traceback after the whole run (a rename onto ".")
    (("--json", ""), "--json '' is empty"),
    (("--figure", ""), "--figure '' is empty"),
])
def test_outputs_that_cannot_be_written_are_one_line_errors_before_any_work(photo_dir, tmp_path, monkeypatch, outputs,
                                                                             message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where the report's folder would be")
    result = _bench(photo_dir, *outputs)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "photos"]


@pytest.mark.parametrize("option, value, message", [
    ("--seed", "99999999999999999999", "is not in the range"),
    ("--device", "meta", "unknown device"),
    ("--device", "", "unknown device"),
    ("--noise", "2", "--noise must be in [0, 1]"),
    ("--noise", "300/255", "--noise must be in [0, 1]"),
    ("--noise", "5/0", "is not a noise level; give a number such as 0.02 or 5/255"),
])
def test_bad_seed_device_and_noise_are_one_line_errors(photo_dir, option, value, message):
    result = _bench(photo_dir, option, value)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("damage", [{"records": 5}, {"config": None}, {"versions": None}, "metric"])
def test_a_damaged_results_json_is_one_line_for_resume_and_from_json(photo_dir, tmp_path, damage):
    out = tmp_path / "r.json"
    assert _bench(photo_dir, "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    if damage == "metric":
        data["records"][0]["psnr"] = "abc"
    else:
        data.update(damage)
    out.write_text(json.dumps(data))
    for args in ((*("--json", out, "--resume"),), ()):
        result = (_bench(photo_dir, *args) if args else
                  CliRunner().invoke(app, ["benchmark", "--from-json", str(out), "--md", str(tmp_path / "o.md")]))
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error:") and result.output.count("\n") == 1, result.output
        assert "results JSON" in result.output or "other settings (changed: versions)" in result.output
    same = CliRunner().invoke(app, ["benchmark", "--from-json", str(out), "--md", str(out)])
    assert same.exit_code == 2 and "--from-json and --md name the same file" in same.output


def test_resume_with_a_task_added_reuses_the_others_and_a_seed_change_is_named(photo_dir, tmp_path):
    out = tmp_path / "r.json"
    assert _bench(photo_dir, "--json", out).exit_code == 0
    more = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--images", "coffee", "--task", "denoise,sr",
                                    "--method", "baseline", "--crop", "48", "--metrics", "psnr", "-q", "--json", str(out),
                                    "--resume"])
    assert more.exit_code == 0, more.output
    assert {r["task"] for r in json.loads(out.read_text())["records"]} == {"denoise", "sr"}
    seeded = _bench(photo_dir, "--json", out, "--resume", "--seed", "3")
    assert seeded.exit_code == 2 and "other settings (changed: seed)" in seeded.output
    small = _bench(photo_dir, crop=7)
    assert small.exit_code == 2 and "--crop must be 0 (whole images) or at least 8" in small.output


@pytest.mark.parametrize("settings, message", [({"images": ("coffee", "coffee")}, "--images names an image twice"),
                                               ({"data": ""}, "--data is empty")])
def test_an_image_named_twice_or_an_empty_data_set_is_refused(settings, message):
    """An image named twice counted twice in every mean; --data '' benchmarked the current folder."""
    with pytest.raises(UserError, match=message):
        _config(**settings)


def test_a_gray_image_left_out_of_colorization_is_named_in_the_report(photo_dir, tmp_path):
    result = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--task", "colorize", "--method", "baseline",
                                      "--crop", "48", "--metrics", "psnr", "-q", "--json", str(tmp_path / "r.json"),
                                      "--md", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    skipped = json.loads((tmp_path / "r.json").read_text())["skipped"]
    assert [(e["image"], e["task"], e["kind"]) for e in skipped] == [("camera", "colorize", "not-applicable")]
    assert "not-applicable: image camera, task colorize" in (tmp_path / "r.md").read_text()


def test_a_folder_named_like_a_data_set_gets_a_notice(tmp_path, monkeypatch):
    from pnprgm.benchmark import datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "public").mkdir()
    with pytest.warns(UserWarning, match="not the folder public/ here; give ./public"):
        assert datasets.resolve("public").name == "public"


def test_a_damaged_results_json_is_not_replaced_without_overwrite(photo_dir, tmp_path):
    """A results JSON whose records were hand-edited (a key removed) was silently rewritten with one record."""
    config = _config(data=str(photo_dir), images=("coffee",), tasks=("denoise",), methods=("baseline",), metrics=("psnr",))
    run_benchmark(config, json_path=tmp_path / "r.json", progress=False)
    data = json.loads((tmp_path / "r.json").read_text())
    del data["records"][-1]["method"]
    (tmp_path / "r.json").write_text(json.dumps(data))
    before = (tmp_path / "r.json").read_text()
    with pytest.raises(UserError, match="is not a pnprgm benchmark results JSON as written.*--overwrite to replace it"):
        run_benchmark(config, json_path=tmp_path / "r.json", progress=False)
    assert (tmp_path / "r.json").read_text() == before
    data["records"][-1]["method"], data["records"][-1]["seconds"] = "baseline", "x"
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="has a metric or seconds that is not a"):
        run_benchmark(config, json_path=tmp_path / "r.json", resume=True, progress=False)


def test_a_named_sets_photos_are_never_outputs(tmp_path, monkeypatch):
    """--data public with --json naming one of its photos (inside an installed package) is refused, --overwrite or
    not: the photo is an input."""
    from pnprgm.benchmark import datasets

    photo = _write_png(tmp_path / "astronaut.png", np.zeros((64, 64, 3), np.uint8))
    fake = datasets.Dataset("public", [datasets.ImageSource("astronaut", "test", photo)])
    monkeypatch.setattr(datasets, "resolve", lambda data: fake)
    with pytest.raises(UserError, match="astronaut.png"):
        run_benchmark(_config(data="public", tasks=("denoise",), methods=("baseline",), metrics=("psnr",)),
                      json_path=photo, overwrite=True, progress=False)
    assert not photo.read_bytes().startswith(b"{")


def test_folder_names_and_spellings(tmp_path, photo_dir):
    """Image names in a folder are distinct (a.png, a.jpg, a.png.png); a folder called public is a folder; the same
    folder spelled otherwise is the same data for --resume."""
    from pnprgm.benchmark import datasets

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("a.png", "a.png.png", "b.png"):
        _write_png(folder / name, np.full((16, 16, 3), 7, np.uint8))
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(folder / "a.jpg")
    names = [image.name for image in datasets.folder_set(folder).images]
    assert len(set(names)) == len(names) == 4 and "b" in names
    public = tmp_path / "public"
    public.mkdir()
    _write_png(public / "retina.png", np.full((16, 16, 3), 7, np.uint8))
    monkeypatch_cwd = pytest.MonkeyPatch()
    try:
        monkeypatch_cwd.chdir(tmp_path)
        dataset = datasets.folder_set(Path("public"))
        assert dataset.name == "./public" and [i.name for i in datasets.select(dataset, None)] == ["retina"]
    finally:
        monkeypatch_cwd.undo()
    config = dict(images=("coffee",), tasks=("denoise",), methods=("baseline",), metrics=("psnr",))
    run_benchmark(_config(data=str(photo_dir), **config), json_path=tmp_path / "r.json", progress=False)
    again = run_benchmark(_config(data=str(photo_dir) + "/", **config), json_path=tmp_path / "r.json", resume=True,
                          progress=False)
    assert len(again.records) == 1


def test_suite_values_of_the_wrong_type_are_one_line_errors():
    for values, message in (({"tasks": 5}, "tasks must be a list"), ({"noise": True}, "noise must be a number"),
                            ({"crop": True}, "crop must be an integer"), ({"images": []}, "--images is empty")):
        with pytest.raises(UserError, match=message):
            build_config(values)


def test_the_report_names_the_model_given(photo_dir, tmp_path):
    config = _config(data=str(photo_dir), images=("coffee",), tasks=("denoise",), methods=("pnp-drs",),
                     metrics=("psnr",), models=("unet-denoiser-color",))
    run_benchmark(config, json_path=tmp_path / "r.json", md_path=tmp_path / "r.md", progress=False)
    assert "denoiser `unet-denoiser-color` (colour, --model) in `drs`" in (tmp_path / "r.md").read_text()
    with pytest.raises(UserError, match=r"--model rgm-sr fits none of the methods that take it \(pnp-drs\)"):
        run_benchmark(_config(data=str(photo_dir), images=("coffee",), tasks=("denoise",), methods=("pnp-drs",),
                              metrics=("psnr",), models=("rgm-sr",)), progress=False)
    # a model that fits some of them: the others are unavailable, as without --model
    both = run_benchmark(_config(data=str(photo_dir), images=("coffee",), tasks=("denoise",),
                                 methods=("pnp-drs", "rgm-stochastic-drs"), metrics=("psnr",),
                                 models=("unet-denoiser-color",)), progress=False)
    assert {r["method"] for r in both.records} == {"pnp-drs"}
    assert not both.data["config"]["resolved"]["methods"]["rgm-stochastic-drs"]["available"]


def test_an_exact_restoration_counts_as_infinite_psnr(photo_dir, tmp_path):
    """The identity at noise 0 restores exactly: its PSNR is infinite, stored as "inf" (JSON has no infinity; null
    dropped it from the means and bolded the runner-up), shown as ∞ and ranked best."""
    config = _config(data=str(photo_dir), images=("coffee", "camera"), tasks=("denoise",),
                     methods=("baseline", "tv-admm"), metrics=("psnr",), noise=0.0)
    results = run_benchmark(config, json_path=tmp_path / "r.json", md_path=tmp_path / "r.md", progress=False)
    assert {r["psnr"] for r in results.records if r["method"] == "baseline"} == {"inf"}
    assert "| baseline | **∞** |" in (tmp_path / "r.md").read_text()
    again = run_benchmark(config, json_path=tmp_path / "r.json", resume=True, progress=False)  # reusable as stored
    assert [r["psnr"] for r in again.records] == [r["psnr"] for r in results.records]


def test_a_task_no_image_fits_says_why(photo_dir):
    lines = []
    run_benchmark(_config(data=str(photo_dir), images=("camera",), tasks=("colorize",), methods=("baseline",),
                          metrics=("psnr",)), progress=False, log=lines.append)
    assert "task colorize: 1 gray image(s) skipped (colorize needs a colour ground truth)" in lines


def test_rerunning_with_fewer_metrics_does_not_drop_stored_values(photo_dir, tmp_path):
    config = dict(data=str(photo_dir), images=("coffee",), tasks=("denoise",), methods=("baseline",))
    run_benchmark(_config(metrics=("psnr", "ssim"), **config), json_path=tmp_path / "r.json", progress=False)
    with pytest.raises(UserError, match="holds psnr values of 1 records that this run .--metrics ssim. would not keep"):
        run_benchmark(_config(metrics=("ssim",), **config), json_path=tmp_path / "r.json", resume=True, progress=False)
    assert len(run_benchmark(_config(metrics=("ssim",), **config), json_path=tmp_path / "r.json", overwrite=True,
                             progress=False).records) == 1


def test_image_names_cannot_break_the_markdown_tables(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    _write_png(folder / "a|b.png", (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8))
    run_benchmark(_config(data=str(folder), tasks=("denoise",), methods=("baseline",), metrics=("psnr",)),
                  md_path=tmp_path / "r.md", progress=False)
    row = next(line for line in (tmp_path / "r.md").read_text().splitlines() if "a\\|b" in line)
    assert row.count(" | ") == 4, row


def test_sigterm_saves_the_partial_results_as_ctrl_c_does(photo_dir, tmp_path, monkeypatch):
    """A `kill` (SIGTERM) ended the process without a word: the JSON said "running" and no report was written."""
    import os
    import signal

    original, calls = methods.BaselineMethod.restore, []

    def killed_on_the_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(methods.BaselineMethod, "restore", killed_on_the_second)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_config(data=str(photo_dir), tasks=("denoise",), methods=("baseline",), metrics=("psnr",)),
                      json_path=tmp_path / "r.json", md_path=tmp_path / "r.md", progress=False)
    assert signal.getsignal(signal.SIGTERM) is before
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "interrupted" and len(data["records"]) == 1
    assert "Partial results" in (tmp_path / "r.md").read_text()


def test_damaged_or_first_format_jsons_keep_their_metric_values(photo_dir, tmp_path):
    """A JSON whose config names no metrics (the first format) still counts the values its records hold; null
    seconds are damage, not a number; a damaged metrics list is one line."""
    config = dict(data=str(photo_dir), images=("coffee",), tasks=("denoise",), methods=("baseline",))
    run_benchmark(_config(metrics=("psnr", "ssim"), **config), json_path=tmp_path / "r.json", progress=False)
    data = json.loads((tmp_path / "r.json").read_text())
    del data["config"]["metrics"]
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="holds ssim values of 1 records"):
        run_benchmark(_config(metrics=("psnr",), **config), json_path=tmp_path / "r.json", progress=False)
    data["config"]["metrics"], data["records"][0]["seconds"] = 5, None
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="not a pnprgm benchmark results JSON as written"):
        run_benchmark(_config(metrics=("psnr", "ssim"), **config), json_path=tmp_path / "r.json", resume=True,
                      progress=False)


def test_a_killed_benchmark_exits_143_and_ctrl_c_130(photo_dir, tmp_path):
    """Scripts and schedulers tell a `kill` (SIGTERM: 143) from Ctrl-C (130); both save the partial results."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C, even where the test
        from pnprgm.benchmark import methods                       # runner was started with SIGINT ignored
        original, calls, signame = methods.BaselineMethod.restore, [], sys.argv[3]
        def stopped_on_the_second(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), getattr(signal, signame))
            return original(self, *args, **kwargs)
        methods.BaselineMethod.restore = stopped_on_the_second
        from pnprgm.cli.main import app
        sys.argv = ["pnprgm", "benchmark", "--data", sys.argv[1], "--task", "denoise", "--method", "baseline",
                    "--metrics", "psnr", "--crop", "48", "--threads", "1", "-q", "--json", sys.argv[2]]
        app()
    """)
    for signame, status, word in (("SIGTERM", 143, "terminated."), ("SIGINT", 130, "interrupted.")):
        out = tmp_path / f"{signame}.json"
        result = subprocess.run([sys.executable, "-c", script, str(photo_dir), str(out), signame],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == status, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == word and "Traceback" not in result.stderr
        assert json.loads(out.read_text())["status"] == "interrupted"


def test_the_report_names_the_models_that_ran_and_no_spread_for_one_image(photo_dir):
    """The Methods list said "denoiser `default`" while sr ran its preset's `unet-lpips`; a table of one image
    showed "± 0.00", a spread that one image does not have."""
    from pnprgm.rgm import models

    config = _config(data=str(photo_dir), images=("coffee",), tasks=("sr", "denoise"), methods=("pnp-drs",),
                     metrics=("psnr",), figure_images=0)
    text = report.markdown(run_benchmark(config, progress=False).data)
    line = next(line for line in text.splitlines() if line.startswith("- `pnp-drs`"))
    defaults = f"`{models.default_model(1).name}`, `{models.default_model(3).name}`"
    assert line == (f"- `pnp-drs`: denoiser `default` ({defaults}) in `drs`, task default preset; the presets of "
                    f"these tasks run another model: sr `{presets.registry.get('sr-drs').denoiser}`")
    rows = [row for row in text.splitlines() if row.startswith("| pnp-drs |")]
    assert rows and not any("±" in row for row in rows)


def test_a_device_or_a_huge_file_as_suite_or_results_is_one_line_not_read_forever(tmp_path, monkeypatch):
    """``--suite /dev/zero`` grew to gigabytes until memory ran out, ``--from-json /dev/zero`` hung."""
    import os

    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    os.mkfifo(tmp_path / "pipe.json")  # no writer: opening it would block
    monkeypatch.setattr(io, "MAX_TEXT_BYTES", 1000)
    for source, reason in (("/dev/zero", "not a regular file"), (str(tmp_path / "pipe.json"), "not a regular file"),
                           (str(big), "larger than")):
        for args in (["--suite", source], ["--from-json", source, "--md", str(tmp_path / "o.md")]):
            result = CliRunner().invoke(app, ["benchmark", *args])
            assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
            assert result.output.startswith("error: cannot read") and reason in result.output, result.output


@pytest.mark.parametrize("value", ['"abc"', "null", "[1, 2]"])
def test_a_suite_protocol_or_overrides_that_is_no_mapping_is_one_line(tmp_path, value):
    """A suite's "protocol": "abc" beside --protocol (or "overrides" beside --set) was a TypeError traceback."""
    for key, option, item in (("protocol", "--protocol", "crop=8"), ("overrides", "--set", "iterations=2")):
        suite = tmp_path / f"{key}.json"
        suite.write_text(f'{{"{key}": {value}}}')
        result = CliRunner().invoke(app, ["benchmark", "--suite", str(suite), option, item, "-q"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"{key} must be a mapping of names to values" in result.output, result.output


def test_the_suite_file_is_never_an_output_even_with_overwrite(photo_dir, tmp_path):
    """`--suite s.json --json s.json --overwrite` replaced the suite the run was read from with its results."""
    suite = tmp_path / "s.json"
    suite.write_text(json.dumps({"data": str(photo_dir), "tasks": ["denoise"], "methods": ["baseline"], "metrics": ["psnr"]}))
    before = suite.read_text()
    for more in (["--overwrite"], []):  # without --overwrite too: not advised to pass the flag that is then refused
        result = CliRunner().invoke(app, ["benchmark", "--suite", str(suite), "--json", str(suite), *more, "-q"])
        assert result.exit_code == 2 and f"--json {suite} is the --suite file this run reads" in result.output, \
            result.output
    assert suite.read_text() == before


def test_a_benchmark_config_is_frozen_down_to_its_mappings():
    """BenchmarkConfig was frozen, but its protocol and overrides dicts could be changed under a running benchmark."""
    config = build_config({"protocol": {"crop": 4}, "overrides": {"iterations": 2}})
    with pytest.raises(TypeError, match="read-only"):
        config.overrides["iterations"] = 3
    with pytest.raises(TypeError, match="read-only"):
        config.protocol.update(crop=0)
    assert config.to_dict()["overrides"] == {"iterations": 2} and config.metric_protocol().crop == 4


def test_derived_seeds_are_the_ones_the_committed_results_were_made_with():
    """degrade and the benchmark derive their seeds through one helper (config.hashed_seed); the values are pinned,
    since every committed measurement depends on them."""
    from pnprgm.benchmark.tasks import measurement_seed
    from pnprgm.config import hashed_seed
    from pnprgm.degrade import image_seed

    assert (measurement_seed(0, 3, "sr"), measurement_seed(5, 0, "denoise")) == (1711267665, 1303995145)
    assert image_seed(3, "ab" * 32) == 5516482779263347812
    assert all(0 <= hashed_seed(str(i), bits) < 2**bits for i in range(50) for bits in (31, 63))


def test_a_model_file_the_run_reads_is_never_an_output_even_with_overwrite(photo_dir, tmp_path):
    """`--model m.pt --json m.pt --overwrite` replaced the model file with the results JSON (and then failed to load
    it); restore and sample already refused this."""
    import shutil

    from pnprgm.rgm.models import model_path

    model = tmp_path / "m.pt"
    shutil.copyfile(model_path("unet-denoiser-color"), model)
    before = model.read_bytes()
    for flag in ("--json", "--md", "--figure"):
        result = CliRunner().invoke(app, ["benchmark", "--data", str(photo_dir), "--task", "denoise", "--method",
                                          "pnp-drs", "--model", str(model), flag, str(model), "--overwrite", "-q"])
        assert result.exit_code == 2 and f"{flag} {model} is a --model file this run reads" in result.output, \
            result.output
    assert model.read_bytes() == before


def test_the_scripts_output_rules_stems_keep_their_dots_and_nothing_is_replaced_unasked(tmp_path):
    """sample_spread.py and latent_budget.py turned --out results.v2 into results.json (with_suffix), and the
    scripts wrote over any file of their output names without a word."""
    from pnprgm.cli.options import claim_outputs, script_main, stem_files

    assert stem_files(tmp_path / "results.v2", ".json", ".md") == [tmp_path / "results.v2.json",
                                                                  tmp_path / "results.v2.md"]
    mine = tmp_path / "results.json"
    mine.write_text('{"mine": 1}')
    claim_outputs(stem_files(tmp_path / "results.v2", ".json", ".md"), overwrite=False)  # results.json is not one
    with pytest.raises(UserError, match=r"results.json already exists; pass --overwrite to replace it, or choose "
                                        r"another --out"):
        claim_outputs([mine], overwrite=False)
    claim_outputs([mine], overwrite=True)
    with pytest.raises(UserError, match="is a folder"):
        claim_outputs([tmp_path], overwrite=True)
    with pytest.raises(UserError, match="named twice"):
        claim_outputs([tmp_path / "a.md", tmp_path / "." / "a.md"], overwrite=True)

    def bad() -> None:
        raise UserError("first line\nsecond")

    assert script_main(bad) == 2 and script_main(lambda: None) == 0 and script_main(lambda: 3) == 3


def test_denoise_vs_bm3d_refuses_bad_models_foreign_outputs_and_a_foreign_resume_in_one_line(tmp_path, monkeypatch,
                                                                                              capsys):
    """--model without NAME= was a ValueError traceback; --resume on another JSON a KeyError; --json/--md replaced any
    file."""
    import runpy

    main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "denoise_vs_bm3d.py"))["main"]
    out = ["--json", str(tmp_path / "d.json"), "--md", str(tmp_path / "d.md")]
    cases = [(["--model", "drunet-denoiser-color"], "give NAME=COLOR[,GRAY]"),
             (["--model", "=drunet-denoiser-color"], "give NAME=COLOR[,GRAY]")]
    for args, message in cases:
        monkeypatch.setattr(sys, "argv", ["denoise_vs_bm3d.py", *args, *out])
        assert main() == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "d.json").write_text('{"mine": 1}')
    for args, message in (([], "d.json already exists; pass --overwrite"),
                          (["--resume"], "is not a results file of this script")):
        monkeypatch.setattr(sys, "argv", ["denoise_vs_bm3d.py", *args, *out])
        assert main() == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "d.json").read_text() == '{"mine": 1}'
    (tmp_path / "notes.md").write_text("# notes")  # not JSON at all: one line too
    monkeypatch.setattr(sys, "argv", ["denoise_vs_bm3d.py", "--resume", "--json", str(tmp_path / "notes.md"), "--md",
                                      str(tmp_path / "d.md")])
    assert main() == 2 and "is not a results file of this script" in capsys.readouterr().err
    import shutil

    from pnprgm.rgm.models import model_path

    shutil.copyfile(model_path("unet-denoiser-gray"), tmp_path / "g.pt")
    before = (tmp_path / "g.pt").read_bytes()
    monkeypatch.setattr(sys, "argv", ["denoise_vs_bm3d.py", "--model", f"mine=unet-denoiser-color,{tmp_path / 'g.pt'}",
                                      "--json", str(tmp_path / "e.json"), "--md", str(tmp_path / "g.pt"), "--overwrite"])
    assert main() == 2 and "which this run reads" in capsys.readouterr().err
    assert (tmp_path / "g.pt").read_bytes() == before


def test_prior_vs_mse_keeps_a_link_it_did_not_make_in_its_work_folder(tmp_path):
    """Every link in WORK/heldout was deleted as one of its own, the user's too, before --train was checked."""
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "prior_vs_mse.py"))
    train = _training_folder_with_one_held_out_photo(tmp_path)
    folder = tmp_path / "work" / "heldout"
    names, _, _ = script["heldout_colour"](train, folder, [])
    assert len(names) == 1 and all(p.is_symlink() for p in folder.iterdir())
    names_again, _, _ = script["heldout_colour"](train, folder, [])  # its own links are made afresh
    assert names_again == names
    (tmp_path / "notes.txt").write_text("mine")
    (folder / "mine.png").symlink_to(tmp_path / "notes.txt")
    with pytest.raises(UserError, match=r"holds files this script did not make \(mine.png\)"):
        script["heldout_colour"](train, folder, [])
    assert (folder / "mine.png").is_symlink() and len(list(folder.iterdir())) == 2
    # training photos that are links themselves: its own links (to their targets) are still its own on a rerun
    linked = tmp_path / "linked"
    linked.mkdir()
    for photo in train.iterdir():
        (linked / photo.name).symlink_to(photo)
    other = tmp_path / "work2" / "heldout"
    assert script["heldout_colour"](linked, other, [])[0] == script["heldout_colour"](linked, other, [])[0] == names


def test_tune_presets_appends_only_to_its_own_table(tmp_path, monkeypatch):
    """--out was opened for appending whatever it was: a link to README.md got the tuning table appended."""
    import runpy

    main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "tune_presets.py"))["main"]
    readme = tmp_path / "README.md"
    readme.write_text("# my README\n")
    (tmp_path / "tuning.md").symlink_to(readme)
    for out in (tmp_path / "tuning.md", readme):
        monkeypatch.setattr(sys, "argv", ["tune_presets.py", "--task", "sr", "--out", str(out)])
        assert main() == 2
    assert readme.read_text() == "# my README\n"


def test_benchmark_noise_takes_the_fraction_the_other_commands_take(photo_dir, tmp_path):
    """--noise 5/255 was "'5/255' is not a valid float" here while restore, degrade and sample took it."""
    result = _bench(photo_dir, "--noise", "5/255", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["config"]["noise"] == pytest.approx(5 / 255)


def test_a_suite_saved_with_a_byte_order_mark_is_read(photo_dir, tmp_path):
    """Windows Notepad's UTF-8 starts with a byte-order mark: the suite was refused with Python's "Unexpected UTF-8
    BOM (decode using utf-8-sig)"."""
    suite = tmp_path / "s.json"
    suite.write_bytes(b"\xef\xbb\xbf" + json.dumps({"data": str(photo_dir), "images": ["coffee"], "tasks": ["denoise"],
                                                    "methods": ["baseline"], "metrics": ["psnr"], "crop": 48}).encode())
    result = CliRunner().invoke(app, ["benchmark", "--suite", str(suite), "--json", str(tmp_path / "r.json"), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["config"]["tasks"] == ["denoise"]


def test_the_figure_is_never_written_into_the_data_folder(photo_dir, tmp_path):
    """--figure DATA/fig.png was written on the first run; every later run then refused it as a photo of the set."""
    result = _bench(photo_dir, "--figure", photo_dir / "fig.png")
    assert result.exit_code == 2 and "is inside the --data folder" in result.output, result.output
    assert not (photo_dir / "fig.png").exists()
    assert _bench(photo_dir, "--figure", tmp_path / "fig.png").exit_code == 0


def test_set_with_only_the_baseline_is_checked_and_said_not_ignored(photo_dir):
    """--method baseline --set iterations=abc --set bogus=1 ran in silence: the settings went nowhere, typos too."""
    for bad in (["--set", "iterations=abc"], ["--set", "bogus=1"]):
        result = _bench(photo_dir, *bad)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    for good in ("iterations=3", "alpha=0.5", "rescale_dual=true"):  # DRS's, the RGM solver's, ADMM's
        with pytest.warns(UserWarning, match=rf"--set {good.split('=')[0]} applies to no method of this run"):
            result = _bench(photo_dir, "--set", good)
        assert result.exit_code == 0, result.output
