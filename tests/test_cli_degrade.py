"""``pnprgm degrade`` and ``pnprgm operators`` through click's CliRunner."""
from __future__ import annotations

import os
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pnprgm import operators
from pnprgm.cli.main import app
from pnprgm import io
from pnprgm.degrade import image_seed
from pnprgm.measurement import load_measurement, sidecar_paths


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    generator = torch.Generator().manual_seed(0)
    io.write_image(folder / "odd.png", torch.rand((3, 37, 53), generator=generator))
    io.write_image(folder / "square.png", torch.rand((3, 64, 64), generator=generator))
    return folder


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)), catch_exceptions=False)


def test_degrade_writes_images_and_sidecars(inputs, tmp_path):
    out = tmp_path / "out"
    result = run("degrade", inputs, "--operator", "sr4", "--noise", "5/255", "--seed", "3", "-o", out)
    assert result.exit_code == 0, result.output
    assert "degraded 2 image(s)" in result.output
    assert io.read_image(out / "odd.png").shape == (3, 10, 14)  # ceil(37/4) x ceil(53/4), its own size
    assert io.read_image(out / "square.png").shape == (3, 16, 16)
    for name in ("odd", "square"):
        assert all(p.is_file() for p in sidecar_paths(out / f"{name}.png"))
    # the sidecar reproduces the measurement exactly: operator, noise level and per-image seed
    loaded = load_measurement(out / "odd.png")
    source = inputs / "odd.png"
    x = io.read_image(source)[None]
    assert loaded.seed == image_seed(3, io.sha256_file(source))
    assert loaded.noise_sigma == pytest.approx(5 / 255)
    assert loaded.source.sha256 == io.sha256_file(source) and loaded.source.shape == (3, 37, 53)
    assert torch.equal(loaded.y, operators.measure(operators.build("sr4", (3, 37, 53)), x, 5 / 255, loaded.seed))
    # ... and that is A x plus the noise drawn from that seed, computed here without operators.measure
    clean = operators.build("sr4", (3, 37, 53)).A(x)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(loaded.seed))
    torch.testing.assert_close(loaded.y, clean + 5 / 255 * noise)
    assert float((loaded.y - clean).std()) == pytest.approx(5 / 255, rel=0.2)
    # the PNG shows the measurement (clamped, 8 bits)
    torch.testing.assert_close(io.read_image(out / "odd.png"), loaded.y[0].clamp(0, 1), atol=0.5 / 255 + 1e-6, rtol=0)
    other = load_measurement(out / "square.png")
    assert other.seed != loaded.seed  # independent noise per image


def test_bad_input_is_reported_and_the_others_go_on(inputs, tmp_path):
    (inputs / "broken.png").write_bytes(b"not an image")
    io.write_image(inputs / "gray.png", torch.rand(1, 16, 16))
    out = tmp_path / "out"
    result = run("degrade", inputs, tmp_path / "missing.png", "-p", "gray", "-o", out)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert any("broken.png" in e and "not a readable image" in e for e in errors)
    assert any("gray.png" in e and "3-channel" in e for e in errors)
    assert any("missing.png" in e and "does not exist" in e for e in errors)
    assert "Traceback" not in result.output
    assert (out / "odd.png").is_file() and (out / "square.png").is_file()
    assert "degraded 2 image(s)" in result.output and "3 failed" in result.output


def test_bad_spec_fails_once_without_traceback(inputs, tmp_path):
    result = run("degrade", inputs, "-p", "blur:gauss", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "unknown blur variant 'gauss'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_inputs_are_never_overwritten(inputs):
    before = (inputs / "odd.png").read_bytes()
    result = run("degrade", inputs / "odd.png", "-p", "identity", "-o", inputs)
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    assert (inputs / "odd.png").read_bytes() == before


def test_same_stem_twice_gets_two_outputs_never_an_overwrite(tmp_path):
    """Two inputs named x.png: each gets its own output (named as restore names them), neither replaces the other
    (this was an error for the second input before restore and degrade shared io.output_stems)."""
    first, second = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    io.write_image(tmp_path / "a" / "x.png", first)
    io.write_image(tmp_path / "b" / "x.png", second)
    result = run("degrade", tmp_path / "a", tmp_path / "b", "-p", "identity", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for stem, image in (("x", first), ("x-2", second)):  # the suffix tells nothing apart here
        assert torch.allclose(io.read_image(tmp_path / "out" / f"{stem}.png"), image, atol=1 / 255)


def test_noise_and_help(inputs, tmp_path):
    assert run("degrade", inputs, "-p", "sr2", "--noise", "abc", "-o", tmp_path / "o").exit_code == 2
    assert run("degrade", inputs, "-p", "sr2", "--noise", "-0.1", "-o", tmp_path / "o").exit_code == 2
    help_text = run("degrade", "--help").output
    assert "Examples:" in help_text and "--noise" in help_text and "sidecar" in help_text


def test_operators_listing_comes_from_the_registry():
    result = run("operators")
    assert result.exit_code == 0
    for entry in operators.registry.entries():
        assert entry.name in result.output
    listed = json.loads(run("operators", "--json").output)
    assert [item["name"] for item in listed] == operators.registry.names()
    blur = next(item for item in listed if item["name"] == "blur:gaussian")
    assert {p["name"]: p["default"] for p in blur["params"]} == {"sigma": 2.0, "size": None, "boundary": "circular"}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_umask_mode_not_0600(inputs, tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        result = run("degrade", inputs / "odd.png", "-p", "sr2", "-o", tmp_path / "out")
        json_file = io.write_json(tmp_path / "plain.json", {"a": 1})
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    written = [p for p in (tmp_path / "out").iterdir()] + [json_file]
    assert len(written) == 4
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.parametrize("taken", ["odd.png", "odd.measurement.json", "odd.measurement.npz"])
def test_a_file_degrade_did_not_write_is_never_replaced(inputs, tmp_path, taken):
    out = tmp_path / "out"
    out.mkdir()
    (out / taken).write_bytes(b"the user's own file")
    result = run("degrade", inputs, "-p", "sr2", "-o", out)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not written by pnprgm degrade" in errors[0] and "--overwrite" in errors[0]
    assert (out / taken).read_bytes() == b"the user's own file"
    assert (out / "square.png").is_file() and "degraded 1 image(s)" in result.output
    result = run("degrade", inputs, "-p", "sr2", "-o", out, "--overwrite")
    assert result.exit_code == 0 and load_measurement(out / "odd.png").source.shape == (3, 37, 53)


def test_degrade_replaces_its_own_measurement_of_the_same_image_only(inputs, tmp_path):
    out = tmp_path / "out"
    assert run("degrade", inputs, "-p", "sr2", "-o", out).exit_code == 0
    result = run("degrade", inputs, "-p", "sr4", "-o", out)  # its own files, same images: a new measurement
    assert result.exit_code == 0 and load_measurement(out / "odd.png").operator.out_shape == (3, 10, 14)
    other = tmp_path / "other" / "odd.png"
    io.write_image(other, torch.zeros(3, 8, 8))
    before = (out / "odd.png").read_bytes()
    result = run("degrade", other, "-p", "sr2", "-o", out)
    assert result.exit_code == 1 and "measurement of another image" in result.output
    assert (out / "odd.png").read_bytes() == before


def test_a_kill_leaves_a_sidecar_first_and_the_rerun_completes(inputs, tmp_path, monkeypatch):
    import os

    out = tmp_path / "out"
    real_replace = os.replace

    def killed(src, dst):
        if str(dst).endswith("odd.measurement.npz"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", killed)
    result = CliRunner().invoke(app, ["degrade", str(inputs / "odd.png"), "-p", "sr2", "-o", str(out)])
    monkeypatch.undo()
    assert result.exit_code != 0 and not (out / "odd.png").exists()  # no measurement without its sidecar
    assert (out / "odd.measurement.json").is_file()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    result = run("degrade", inputs, "-p", "sr2", "-o", out)
    assert result.exit_code == 0, result.output
    assert load_measurement(out / "odd.png") is not None


@pytest.mark.parametrize("noise", ["nan", "inf", "-inf", "-1", "5", "1/0"])
def test_bad_noise_is_one_line_before_any_work(inputs, tmp_path, noise):
    result = run("degrade", inputs, "-p", "sr2", "--noise", noise, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--noise" in result.output and "0.02 or 5/255" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec, message", [
    ("blur:motion,seed=99999999999999999999", "blur:motion: seed must be an integer between 0 and"),
    ("blur:motion,seed=-1", "blur:motion: seed must be an integer between 0 and"),
    ("mask:random,seed=-5", "mask:random: seed must be an integer between 0 and"),
    ("mask:strokes,seed=-1", "mask:strokes: seed must be an integer between 0 and"),
    ("blur:file", "blur:file needs file=..."),
    ("mask:file", "mask:file needs file=..."),
])
def test_spec_values_numpy_or_torch_would_reject_are_one_line_before_any_work(inputs, tmp_path, spec, message):
    """They were tracebacks (torch's or numpy's seed overflow, a dataclass's missing argument) that stopped the batch."""
    result = CliRunner().invoke(app, ["degrade", str(inputs), "-p", spec, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_an_sr_factor_larger_than_the_image_fails_for_that_image_alone(inputs, tmp_path):
    """sr:factor=1000000 padded a 64x64 image towards 10^12 pixels (a MemoryError traceback)."""
    big = tmp_path / "big"
    io.write_image(big / "wide.png", torch.rand((3, 8, 600)))
    io.write_image(big / "small.png", torch.rand((3, 8, 8)))
    result = CliRunner().invoke(app, ["degrade", str(big), "-p", "sr:factor=1100", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "sr factor 1100 is far larger than the 8x8 image" in result.output
    assert "sr:factor=1100,kernel=box measures the 8x600 image as one pixel" in result.output
    assert not (tmp_path / "out" / "wide.png").exists() and not (tmp_path / "out" / "small.png").exists()


def test_a_measurement_of_one_pixel_is_refused_for_that_image_alone(tmp_path):
    """sr:factor=1000 (for sr:factor=10, say) made a 1x1 measurement of a 100x90 image without a word."""
    folder = tmp_path / "in"
    io.write_image(folder / "large.png", torch.rand((3, 100, 2000)))
    io.write_image(folder / "photo.png", torch.rand((3, 100, 90)))
    result = CliRunner().invoke(app, ["degrade", str(folder), "-p", "sr:factor=1000", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "sr:factor=1000,kernel=box measures the 100x90 image as one pixel" in result.output
    assert "a smaller sr factor" in result.output
    assert io.read_image(tmp_path / "out" / "large.png").shape == (3, 1, 2)
    assert not (tmp_path / "out" / "photo.png").exists()


def test_a_folder_without_images_is_an_error_as_in_restore(tmp_path):
    (tmp_path / "empty").mkdir()
    nested = tmp_path / "nested" / "sub"
    io.write_image(nested / "a.png", torch.rand((3, 16, 16)))
    for folder, extra in ((tmp_path / "empty", ""), (tmp_path / "nested", "subfolders are not searched")):
        for command in ("degrade", "restore"):
            args = [command, str(folder), "-o", str(tmp_path / "out"), "--operator", "sr2"]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2 and "no images found in" in result.output and extra in result.output
            assert not (tmp_path / "out").exists()


def test_a_folder_scan_takes_webp_and_gif_as_when_they_are_named_and_shared_stems_get_distinct_outputs(tmp_path):
    """A folder holding WebP and GIF photos: both degraded (a scan once skipped them without a word, while the same
    files named one by one were read)."""
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    pixels = (torch.rand((16, 16, 3), generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(folder / "photo.webp", lossless=True)
    Image.fromarray(pixels).save(folder / "anim.gif")
    Image.fromarray(pixels).save(folder / "anim.png")  # the same stem: distinct outputs, as restore names them
    (folder / "notes.txt").write_text("not an image")
    result = CliRunner().invoke(app, ["degrade", str(folder), "-p", "sr2", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for stem in ("photo", "anim_gif", "anim_png"):
        assert (tmp_path / "out" / f"{stem}.png").is_file() and (tmp_path / "out" / f"{stem}.measurement.json").is_file()
    restored = CliRunner().invoke(app, ["restore", str(tmp_path / "out"), "--denoiser", "tikhonov", "--iters", "2",
                                        "-q", "-o", str(tmp_path / "restored")])
    assert restored.exit_code == 0 and "restored 3 image(s)" in restored.output, restored.output


def test_presets_task_filter_names_an_unknown_task_and_takes_lists():
    result = CliRunner().invoke(app, ["presets", "--task", "foo"])
    assert result.exit_code == 2 and "unknown task 'foo'" in result.output and "valid: colorize, deblur" in result.output
    listed = CliRunner().invoke(app, ["presets", "--task", "SR,deblur"]).output.splitlines()
    from pnprgm import presets

    assert listed and {presets.registry.get(line.split()[0]).task for line in listed} == {"sr", "deblur"}
    for empty in ("", " , "):  # listed every preset, as if --task were not given
        result = CliRunner().invoke(app, ["presets", "--task", empty])
        assert result.exit_code == 2 and "--task is empty; choose from: colorize" in result.output, result.output


def test_presets_task_filter_takes_the_benchmarks_old_task_names():
    """The benchmark takes sr4 and color for sr and colorize; `presets --task sr4,color` called them unknown."""
    result = CliRunner().invoke(app, ["presets", "--task", "sr4,color"])
    from pnprgm import presets

    assert result.exit_code == 0, result.output
    listed = [line for line in result.output.splitlines() if not line.startswith("pnprgm: ")]  # the rename notices
    assert listed and {presets.registry.get(line.split()[0]).task for line in listed} == {"sr", "colorize"}


@pytest.mark.parametrize("args, message", [
    (["degrade", "x.png", "--noise", "5/0", "-o", "out"], "'5/0' is not a noise level"),
    (["restore", "--bogus"], "No such option '--bogus'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_click_usage_errors_are_one_line_naming_the_help(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: ") and message in result.output and "--help)" in result.output


@pytest.mark.parametrize("args, message", [
    (["degrade", "x.png", "-p", "sr2", "-p", "sr4", "-o", "out"], "-p / --operator was given 2 times"),
    (["restore", "x.png", "--noise", "0.01", "--sigma", "0.02", "-o", "out"], "--noise / --sigma was given 2 times"),
    (["benchmark", "--seed", "1", "--seed", "2"], "--seed was given 2 times"),
])
def test_a_single_valued_option_given_twice_is_one_line_not_the_last_value(tmp_path, args, message):
    """Click keeps the last of a repeated option silently: ``-p sr2 -p sr4`` would degrade with sr4 alone."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert message in result.output and "give it once" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["restore", "x.png", "--set", "lam=0.1", "--set", "lam=0.2", "-o", "out"], "--set lam was given twice (0.1, 0.2)"),
    (["train", "--data", "d", "--out", "o", "--size", "small", "--preset", "tiny"], "--size small and --preset tiny"),
    (["restore", "x.png", "--model", "m.pth", "--model-config", "celebahq256", "--model-preset", "cifar10", "-o", "out"],
     "--model-config celebahq256 and --model-preset cifar10"),
])
def test_one_setting_named_twice_through_set_or_an_old_option_name_is_refused(tmp_path, args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert message in result.output and "once" in result.output


def test_help_answers_even_beside_a_repeated_option():
    result = CliRunner().invoke(app, ["degrade", "-p", "sr2", "-p", "sr4", "--help"])
    assert result.exit_code == 0 and "Usage: " in result.output and "--operator" in result.output


def test_every_command_refuses_repeated_single_options_and_repeatable_ones_still_add_up(tmp_path):
    from pnprgm.cli.options import Command

    assert all(isinstance(command, Command) for command in app.commands.values())
    # --set is repeatable and -q a flag: given twice they are fine
    ctx = app.commands["restore"].make_context("restore", ["x.png", "-o", "o", "--set", "a=1", "--set", "b=2", "-q", "-q"])
    assert ctx.params["assignments"] == ("a=1", "b=2")
    import click

    checked = 0
    for name, command in app.commands.items():
        single = [p for p in command.params if isinstance(p, click.Option) and not (p.multiple or p.count or p.is_flag
                                                                                    or p.is_eager)]
        for option in single:  # every single-valued option of every command, given twice
            flag = option.opts[0]
            with pytest.raises(click.UsageError, match=f"{re.escape(flag)}.* was given 2 times; give it once"):
                command.make_context(name, [flag, "1", flag, "2"])
            checked += 1
    assert checked > 30


def test_the_scripts_parser_refuses_a_repeated_single_option_and_keeps_repeatable_ones(capsys):
    """OnceParser (benchmarks/, scripts/): argparse keeps the last of ``--limit 2 --limit 3`` silently; here it is an
    error that names the option, while append options and flags may repeat and a reparse starts afresh."""
    from pnprgm.cli.options import OnceParser

    parser = OnceParser(prog="script")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("-q", action="store_true")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--limit", "2", "--limit", "3"])
    assert exit_info.value.code == 2
    assert "--limit was given twice; give it once" in capsys.readouterr().err
    parsed = parser.parse_args(["--limit", "2", "--model", "a", "--model", "b", "-q", "-q"])
    assert vars(parsed) == {"limit": 2, "model": ["a", "b"], "q": True}  # no bookkeeping left in the result
    assert parser.parse_args(["--limit", "4"]).limit == 4  # the earlier parse does not count as a first giving


SCRIPTS = sorted(str(p.relative_to(Path(__file__).resolve().parents[1]))
                 for p in Path(__file__).resolve().parents[1].glob("benchmarks/*.py")) + ["scripts/pack_gpu.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_refuses_a_repeated_single_option(script):
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(repo / script), "--threads", "1", "--threads", "1", "--out", "x",
                             "--out", "y"], capture_output=True, text=True, cwd=repo, timeout=120)
    assert result.returncode == 2 and "was given twice; give it once" in result.stderr, result.stderr


def test_a_rerun_with_another_operator_says_what_it_replaced(inputs, tmp_path):
    """Degrading again into the same -o with another operator replaced meas/photo.png without a word."""
    out = str(tmp_path / "out")
    assert CliRunner().invoke(app, ["degrade", str(inputs / "square.png"), "-p", "sr4", "-o", out]).exit_code == 0
    again = CliRunner().invoke(app, ["degrade", str(inputs / "square.png"), "-p", "sr2", "-o", out])
    assert again.exit_code == 0 and "replaced its sr:factor=4,kernel=box measurement" in again.output, again.output
    same = CliRunner().invoke(app, ["degrade", str(inputs / "square.png"), "-p", "sr2", "-o", out])
    assert same.exit_code == 0 and "replaced" not in same.output, same.output


def test_an_operator_in_code_is_refused_with_the_way_to_use_it(inputs, tmp_path):
    """`degrade --operator myop.py:make` said "unknown operator 'myop.py'"."""
    result = CliRunner().invoke(app, ["degrade", str(inputs), "-p", "myop.py:make", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "degrade takes an operator spec" in result.output, result.output
    assert "restore with --operator myop.py:make" in result.output and not (tmp_path / "out").exists()
    typo = CliRunner().invoke(app, ["degrade", str(inputs), "-p", "blurr:gaussian", "-o", str(tmp_path / "out")])
    assert typo.exit_code == 2 and "Did you mean 'blur'?" in typo.output, typo.output  # a typo is not code


def test_a_sidecar_of_another_shape_does_not_stop_an_overwrite(inputs, tmp_path):
    """A sidecar whose operator was not an object (edited by hand) made the "replaced its ... measurement" note a
    traceback, where --overwrite replaced it before."""
    import json

    out = tmp_path / "out"
    assert CliRunner().invoke(app, ["degrade", str(inputs / "square.png"), "-p", "sr2", "-o", str(out)]).exit_code == 0
    sidecar = out / "square.measurement.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "operator": "sr2", "source": "x"}))
    result = CliRunner().invoke(app, ["degrade", str(inputs / "square.png"), "-p", "sr4", "-o", str(out),
                                      "--overwrite"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "degraded 1 image(s)" in result.output and load_measurement(out / "square.png").operator.out_shape == (3, 16, 16)


def test_one_photo_named_twice_is_measured_once(inputs, tmp_path):
    """a.png and sub/../a.png (or a link to it) were measured twice, as a.png and a-2.png."""
    photo = inputs / "odd.png"
    (inputs / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(photo)
    result = run("degrade", photo, inputs / "sub" / ".." / photo.name, tmp_path / "link.png",
                 "--operator", "sr2", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["odd.measurement.json", "odd.measurement.npz",
                                                                   "odd.png"]


def test_a_file_name_that_is_not_utf8_neither_stops_a_batch_nor_a_report(inputs, tmp_path):
    """Under a strict UTF-8 locale, printing b\\xff.png's progress line raised UnicodeEncodeError halfway through the
    batch (the photos after it never measured); benchmark --md raised it writing the table."""
    import subprocess
    import sys

    odd = os.fsdecode(b"b\xff.png")
    (inputs / odd).write_bytes((inputs / "odd.png").read_bytes())
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    done = subprocess.run([sys.executable, "-m", "pnprgm.cli.main", "degrade", str(inputs), "--operator", "sr2", "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "degraded 3 image(s)" in done.stdout and "b\\udcff.png" in done.stdout
    assert (tmp_path / "out" / "square.png").is_file()
    result = run("benchmark", "--data", inputs, "--task", "denoise", "--method", "baseline", "--metrics", "psnr",
                 "--json", tmp_path / "r.json", "--md", tmp_path / "r.md", "-q")
    assert result.exit_code == 0, result.output
    assert "b\\udcff" in (tmp_path / "r.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["degrade", "restore"])
def test_an_input_name_too_long_for_the_file_system_is_named_as_an_input_and_the_others_go_on(inputs, tmp_path,
                                                                                              command):
    """A missing input of 300 characters was "cannot write qqq... (File name too long)" for the whole batch: an
    output problem, and the other photos never processed."""
    long = tmp_path / ("q" * 300 + ".png")
    extra = ["--iters", "1", "--denoiser", "tikhonov"] if command == "restore" else []
    result = CliRunner().invoke(app, [command, str(long), str(inputs / "odd.png"), "--operator", "sr2", *extra, "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert re.search(r"characters\) cannot be read \(File name too long\); check the path\.", result.output)
    assert "cannot write" not in result.output and (tmp_path / "out" / "odd.png").is_file()
