"""``pnprgm sample``: shipped model names (as ``pnprgm models`` lists them) from any folder, hash-checked; its help
says that -o writes one grid image."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pnprgm import io
from pnprgm.cli.main import app
from pnprgm.rgm import models
from pnprgm.registry import Registry
from pnprgm.rgm.architectures import build_generator_from_config
from pnprgm.rgm.model_file import save_model
from pnprgm.rgm.unet import sized_config

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tiny model shipped as ``tiny-shipped`` in a pretrained folder away from the working directory."""
    torch.manual_seed(0)
    generator = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma", output="residual",
                                                          sigma_channel=True))
    source = save_model(tmp_path / "run" / "model.pt", generator.state_dict(), dict(generator.config),
                        {"name": "denoise"}, {"command": "test"})
    folder = tmp_path / "install" / "pretrained"
    entry = models.publish(source, "tiny-shipped", summary="a tiny test model", directory=folder)
    registry: Registry = Registry("model")
    registry.add(entry.name, entry, entry.summary)
    monkeypatch.setattr(models, "registry", registry)
    monkeypatch.setattr(models, "PRETRAINED_DIR", folder)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no pretrained/ here: the name must not resolve relative to the working folder
    return entry


def test_sample_takes_a_shipped_model_name_from_any_folder(shipped, tmp_path):
    result = invoke("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1", "-o", "grid.png")
    assert result.exit_code == 0, result.output
    grid = io.read_image(tmp_path / "elsewhere" / "grid.png")
    # rows: model input, restoration, original, each 32 px with make_grid's 2-px padding
    assert grid.shape == (3, 3 * 34 + 2, 36)
    tiles = [grid[:, 2 + 34 * row : 34 + 34 * row, 2:34] for row in range(3)]
    torch.testing.assert_close(tiles[2], io.read_image(tmp_path / "photo.png"), atol=1 / 255, rtol=0)
    assert float((tiles[1] - tiles[0]).abs().mean()) > 1e-3 and float((tiles[0] - tiles[2]).abs().mean()) > 1e-3
    record = json.loads((tmp_path / "elsewhere" / "grid.json").read_text())
    assert record["model"] == "tiny-shipped" and record["model_sha256"] == shipped.sha256


@pytest.mark.parametrize("code, fix", [("ENOSPC", "free space or choose another folder"),
                                       ("EACCES", "choose a folder you may write to")])
@pytest.mark.parametrize("named", ["temporary", "none"])
def test_a_full_disk_is_one_line_with_the_fix(shipped, tmp_path, monkeypatch, code, fix, named):
    """sample and benchmark, which have no finer message for a failed write, printed OSError tracebacks. The line
    names the file meant, not the temporary it was written through (a full disk's write() names no file at all)."""
    import errno

    def refused(path, writer, **kwargs):  # the write itself (the probe before any work passed)
        temporary = str(Path(path).with_name(f".{Path(path).name}.pnprgm-a1b2c3d4.tmp"))
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), *([temporary] if named != "none" else []))

    monkeypatch.setattr(io, "stage", refused)
    for args, meant in ((("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1", "-o", "grid.png"),
                         "grid.png"),
                        (("benchmark", "--data", tmp_path, "--images", "photo", "--task", "denoise", "--method",
                          "baseline", "--crop", "16", "--metrics", "psnr", "-q", "--json", "r.json"), "r.json")):
        result = invoke(*args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        lines = result.output.strip().splitlines()
        name = meant if named != "none" else "a file"
        assert lines == [f"error: cannot write {name} ({os.strerror(getattr(errno, code))}); {fix}."], lines


def test_sample_refuses_a_shipped_model_whose_file_changed(shipped, tmp_path):
    with open(shipped.path, "ab") as handle:
        handle.write(b"tampered")
    result = invoke("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1", "-o", "grid.png")
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0 and "sha256" in result.output
    assert not (tmp_path / "elsewhere" / "grid.png").exists()


def test_sample_unknown_model_names_the_shipped_ones(shipped, tmp_path):
    result = invoke("sample", "no-such-model", "--input", tmp_path / "photo.png", "-o", "grid.png")
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert "no-such-model" in result.output and "tiny-shipped" in result.output


def test_sample_help_says_o_writes_one_grid_image_and_takes_shipped_names():
    result = invoke("sample", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Grid image to write (PNG)" in text and "tiled into one" in text
    assert "shipped model name" in text and "pnprgm models" in text
    assert "pretrained/" not in text, "no example path relative to the checkout"


def test_sample_never_replaces_a_grid_or_sidecar_it_did_not_write(shipped, tmp_path):
    """-o over a user's picture or beside a user's GRID.json: one line, nothing written; a rerun replaces the
    command's own grid; --overwrite replaces the user's file."""
    args = ("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1")
    mine = tmp_path / "elsewhere" / "holiday.png"
    mine.write_bytes((tmp_path / "photo.png").read_bytes())
    notes = tmp_path / "elsewhere" / "grid.json"
    notes.write_text('{"my": "notes"}')
    for out, taken in (("holiday.png", mine), ("grid.png", notes)):
        result = invoke(*args, "-o", out)
        assert result.exit_code == 2 and f"{taken.name} already exists and was not written by pnprgm sample" in result.output
    assert mine.read_bytes() == (tmp_path / "photo.png").read_bytes() and notes.read_text() == '{"my": "notes"}'
    assert not (tmp_path / "elsewhere" / "grid.png").exists()
    assert invoke(*args, "-o", "ours.png").exit_code == 0
    again = invoke(*args, "-o", "ours.png", "--seed", "1")
    assert again.exit_code == 0, again.output
    record = json.loads((tmp_path / "elsewhere" / "ours.json").read_text())
    assert record["seed"] == 1 and record["output_sha256"] == io.sha256_file(tmp_path / "elsewhere" / "ours.png")
    forced = invoke(*args, "-o", "holiday.png", "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert mine.read_bytes() != (tmp_path / "photo.png").read_bytes()


@pytest.mark.parametrize("option, message", [
    (("--noise", "nan"), "--noise must be a std in [0, 1]"),
    (("--noise", "5"), "--noise must be a std in [0, 1]"),
    (("--size", "0"), "--size must be >= 1"),
    (("--nrow", "0"), "--nrow must be >= 1"),
    (("--seed", "99999999999999999999"), "is not in the range"),
    (("--device", "meta"), "unknown device"),
    (("-o", "grid.json"), "-o names the grid image; end it in .png or .jpg"),
    (("-o", ".png"), "-o names the grid image; give it a name before .png"),
    (("--threads", "0"), "--threads"),
])
def test_sample_bad_options_are_one_line_errors(shipped, tmp_path, option, message):
    out = () if option[0] == "-o" else ("-o", "grid.png")  # an option is given once: the CLI refuses a repeat
    result = invoke("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1", *out, *option)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == []


def test_two_grids_of_one_stem_never_share_a_record(shipped, tmp_path):
    args = ("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1")
    assert invoke(*args, "-o", "g.png").exit_code == 0
    record = (tmp_path / "elsewhere" / "g.json").read_text()
    result = invoke(*args, "-o", "g.jpg")
    assert result.exit_code == 2 and "is the record of the grid g.png" in result.output
    assert (tmp_path / "elsewhere" / "g.json").read_text() == record and not (tmp_path / "elsewhere" / "g.jpg").exists()
    assert invoke(*args, "-o", "g.png", "--seed", "2").exit_code == 0  # its own grid is still its own


def test_a_plain_denoiser_trained_from_noise_zero_restores_its_inputs(tmp_path):
    """The GPU recipe's DRUNets record noise_min 0, which `sample` refused in RGM training's words (noise_min > 0)."""
    from pnprgm.training.sampling import model_process_config

    class Recipe(torch.nn.Module):
        process = {"name": "denoise", "noise_min": 0.0, "noise_max": 55 / 255}
        config = {}

    config = model_process_config(Recipe())
    assert config.noise_min == pytest.approx(1 / 255) and config.noise_max == pytest.approx(55 / 255)
    photo = tmp_path / "photo.png"  # smooth, as photos are (white noise has nothing a denoiser could keep)
    coarse = torch.rand((1, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    io.write_image(photo, torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")[0])
    result = invoke("sample", "drunet-denoiser-color", "--input", photo, "-n", "1", "--noise", "0.1",
                    "-o", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    grid = io.read_image(tmp_path / "grid.png")  # rows: noisy input, restoration, original
    noisy, restored, clean = (grid[:, 2 + 34 * row : 34 + 34 * row, 2:34] for row in range(3))
    assert json.loads((tmp_path / "grid.json").read_text())["noise"] == pytest.approx(0.1)
    assert float((restored - clean).pow(2).mean()) < 0.5 * float((noisy - clean).pow(2).mean())  # it restores
    # trained from noise 0: a level below the process config's 1/255 is the model's own, not refused or raised
    result = invoke("sample", "drunet-denoiser-color", "--input", photo, "-n", "1", "--noise", "0.002",
                    "-o", tmp_path / "low.png")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "low.json").read_text())["noise"] == pytest.approx(0.002)


def test_a_size_below_the_model_multiple_names_size_not_the_inputs(tmp_path):
    photo = tmp_path / "photo.png"
    io.write_image(photo, torch.rand((3, 48, 48), generator=torch.Generator().manual_seed(0)))
    result = invoke("sample", "unet-denoiser-color", "--input", photo, "-n", "1", "--size", "7", "-o", tmp_path / "g.png")
    assert result.exit_code == 2 and "--size 7 is below this model's 8-pixel multiple" in result.output, result.output


def _denoiser_file(folder, noise_min, noise_max, val_sigma=25 / 255):
    torch.manual_seed(0)
    generator = build_generator_from_config(sized_config("tiny", channels=3, conditioning="sigma", output="residual",
                                                          sigma_channel=True))
    process = {"name": "denoise", "T": 1, "noise_min": noise_min, "noise_max": noise_max}
    return save_model(folder / "model.pt", generator.state_dict(), dict(generator.config), process,
                      {"command": "test", "train": {"val_sigma": val_sigma}})


def test_sample_noise_outside_the_trained_range_is_refused_not_clamped(tmp_path):
    """A model trained at 0.01-0.04: --noise 0.2 used to give the grid of 0.04 and record 0.2."""
    model = _denoiser_file(tmp_path, 0.01, 0.04)
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    for noise in ("0.2", "0.001"):
        result = invoke("sample", model, "--input", tmp_path / "photo.png", "-n", "1", "--noise", noise,
                        "-o", tmp_path / f"grid{noise}.png")
        assert result.exit_code == 2 and "trained at noise std 0.01" in result.output and "--noise" in result.output
        assert not (tmp_path / f"grid{noise}.png").exists()
    for noise, recorded in ((["--noise", "0.02"], 0.02), ([], 0.04)):  # no --noise: 25/255 clamped to the range
        result = invoke("sample", model, "--input", tmp_path / "photo.png", "-n", "1", *noise, "-o", tmp_path / "g.png",
                        "--overwrite")
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "g.json").read_text())["noise"] == pytest.approx(recorded)


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.pop("generator"), "its generator's config or weights are missing"),
    (lambda c: c.update(process=None), "its forward process or training record is missing"),
    (lambda c: c["generator"]["state_dict"].update({k: torch.zeros(3) for k in list(c["generator"]["state_dict"])[:1]}),
     "its weights do not fit its architecture"),
    (lambda c: next(iter(c["generator"]["state_dict"].values())).fill_(float("nan")), "NaN or infinite weights"),
])
def test_a_damaged_model_file_is_one_line_not_a_traceback_or_a_black_grid(shipped, tmp_path, damage, message):
    content = torch.load(shipped.path, weights_only=True)
    damage(content)
    torch.save(content, tmp_path / "damaged.pt")
    result = invoke("sample", tmp_path / "damaged.pt", "--input", tmp_path / "photo.png", "-n", "1", "-o", "grid.png")
    assert result.exit_code == 2 and message in result.output and "the file is damaged" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "elsewhere" / "grid.png").exists()


def test_sample_refuses_an_empty_model_name_and_a_file_in_the_path(shipped, tmp_path):
    result = invoke("sample", "", "--input", tmp_path / "photo.png", "-o", "grid.png")
    assert result.exit_code == 2 and "the model name is empty" in result.output
    (tmp_path / "elsewhere" / "afile").write_text("mine")
    result = invoke("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-o", "afile/grid.png")
    assert result.exit_code == 2 and "afile is a file, not a folder" in result.output
    assert (tmp_path / "elsewhere" / "afile").read_text() == "mine"


def test_sampling_from_noise_refuses_a_batch_no_machine_holds(tmp_path):
    result = invoke("sample", "rgm-sr", "-n", "100000000", "-o", tmp_path / "g.png")
    assert result.exit_code == 2 and "give a smaller -n or --size" in result.output, result.output
    assert not (tmp_path / "g.png").exists()


def test_our_model_file_given_an_official_config_says_to_drop_it(shipped, tmp_path):
    result = invoke("sample", f"{shipped.path}#celebahq256", "--input", tmp_path / "photo.png", "-o", "grid.png")
    assert result.exit_code == 2 and "holds its own config: give it without #CONFIG" in result.output, result.output


def test_an_unreadable_input_is_left_out_of_the_grid_with_a_warning(shipped, tmp_path):
    """One damaged file among --input images stopped sample with nothing made; degrade and restore go on."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "c.png"):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / name)
    (folder / "b.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"b.png: not a readable image .* It is left out of the grid"):
        result = invoke("sample", "tiny-shipped", "--input", folder, "-n", "2", "-o", "grid.png")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "elsewhere" / "grid.json").read_text())["model"] == "tiny-shipped"
    (folder / "a.png").write_bytes(b"no")
    (folder / "c.png").write_bytes(b"no")
    with pytest.warns(UserWarning):
        result = invoke("sample", "tiny-shipped", "--input", folder, "-n", "2", "-o", "grid2.png")
    assert result.exit_code != 0 and "not a readable image" in result.output


def test_each_input_is_decoded_once_and_only_as_many_as_the_grid_uses(shipped, tmp_path, monkeypatch):
    """The inputs were decoded once to check them and again to use them; -n 2 of 4 images reads two."""
    import pnprgm.io

    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / name)
    decoded = []
    real = pnprgm.io.read_image
    monkeypatch.setattr(pnprgm.io, "read_image", lambda path, *a, **k: decoded.append(Path(path).name) or real(path, *a, **k))
    result = invoke("sample", "tiny-shipped", "--input", folder, "-n", "2", "-o", "grid.png")
    assert result.exit_code == 0, result.output
    assert decoded == ["a.png", "b.png"]
    assert json.loads((tmp_path / "elsewhere" / "grid.json").read_text())["inputs"] == [
        str(folder / "a.png"), str(folder / "b.png")]


def test_upscale_crops_the_centre_of_the_input_as_restore_mode_does(tmp_path):
    """--upscale cut the top-left square of each input (restore mode, the same function, cuts the centre)."""
    image = torch.rand((3, 24, 40), generator=torch.Generator().manual_seed(3))
    io.write_image(tmp_path / "low.png", image)
    image = io.read_image(tmp_path / "low.png")  # as 8-bit PNG stores it
    result = invoke("sample", "rgm-sr", "--input", tmp_path / "low.png", "--upscale", "2", "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    picture = io.read_image(tmp_path / "g.png")
    side = picture.shape[-1] - 4  # one column of tiles, padding 2: the first row is the nearest-neighbour input
    low = side // 2
    assert low in (8, 16, 24) and picture.shape[-2] == 2 * side + 6
    expected = io.centre_crop(image, low).repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(picture[:, 2:2 + side, 2:2 + side], expected, atol=1 / 255, rtol=0)
    assert not torch.allclose(image[:, :low, :low], io.centre_crop(image, low))  # the two crops differ here


def test_a_sample_run_killed_between_its_two_renames_does_not_lock_its_grid(shipped, tmp_path, monkeypatch):
    """The grid was renamed into place before its record: a run stopped in between left a grid that every rerun
    refused as "not written by pnprgm sample". Now the record goes first (it vouches for the grid's sha256)."""
    import pnprgm.io

    real_replace, calls = os.replace, []

    def second_fails(source, target):
        calls.append(Path(target).name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(pnprgm.io.os, "replace", second_fails)
    args = ("sample", "tiny-shipped", "--input", tmp_path / "photo.png", "-n", "1", "-o", "grid.png")
    assert invoke(*args).exit_code != 0
    assert calls == ["grid.json", "grid.png"]
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["grid.json"]  # no temporary left behind either
    monkeypatch.setattr(pnprgm.io.os, "replace", real_replace)
    rerun = invoke(*args)
    assert rerun.exit_code == 0, rerun.output
    record = json.loads(Path("grid.json").read_text())
    assert record["output_sha256"] == io.sha256_file("grid.png")
    # stopped again, now while replacing that grid with another (another seed): the old grid stays replaceable
    old_grid = Path("grid.png").read_bytes()
    calls.clear()
    monkeypatch.setattr(pnprgm.io.os, "replace", second_fails)
    assert invoke(*args, "--seed", "7").exit_code != 0
    assert Path("grid.png").read_bytes() == old_grid and json.loads(Path("grid.json").read_text())["seed"] == 7
    monkeypatch.setattr(pnprgm.io.os, "replace", real_replace)
    again = invoke(*args, "--seed", "7")
    assert again.exit_code == 0, again.output
    assert json.loads(Path("grid.json").read_text())["output_sha256"] == io.sha256_file("grid.png")


def test_an_input_too_small_for_the_model_is_left_out_of_the_grid_by_name(shipped, tmp_path):
    """One 1x3 photo among the inputs stopped the whole grid with "input images must be at least 8 pixels", naming
    no file; unreadable ones were already left out with a warning."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "a.png").write_bytes((tmp_path / "photo.png").read_bytes())
    Image.fromarray(np.zeros((1, 3, 3), np.uint8)).save(folder / "tiny.png")  # below the tiny model's multiple
    with pytest.warns(UserWarning, match=r"tiny.png \(1x3 px\) is left out of the grid: this model needs at least"):
        result = invoke("sample", "tiny-shipped", "--input", folder, "-n", "2", "-o", "grid.png")
    assert result.exit_code == 0, result.output
    record = json.loads(Path("grid.json").read_text())
    assert [Path(p).name for p in record["inputs"]] == ["a.png"] and record["size"] == 32
    alone = invoke("sample", "tiny-shipped", "--input", folder / "tiny.png", "-o", "alone.png")
    assert alone.exit_code == 2 and "must be at least" in alone.output
