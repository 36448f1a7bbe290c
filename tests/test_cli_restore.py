"""``pnprgm restore`` through click's CliRunner: nothing lost (no file it did not write is replaced, distinct
output names, reruns skip what is done, a record for every image, stale temporaries swept) and bad inputs."""
from __future__ import annotations

import json
import os
import textwrap
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pnprgm.cli.main import app
from pnprgm import io

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ("--operator", "blur:gaussian,sigma=1", "--denoiser", "tikhonov", "--iters", "2", "-q")


def fast_without(flag: str) -> tuple:
    """FAST without ``flag`` and its value, to give that option another value (the CLI refuses one given twice)."""
    if flag not in FAST:
        return FAST
    at = FAST.index(flag)
    return FAST[:at] + FAST[at + 2:]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.fixture
def photos(tmp_path):
    """Two small photos in a folder."""
    folder = tmp_path / "in"
    generator = torch.Generator().manual_seed(0)
    io.write_image(folder / "one.png", torch.rand((3, 16, 16), generator=generator))
    io.write_image(folder / "two.png", torch.rand((3, 16, 20), generator=generator))
    return folder


@pytest.mark.parametrize("taken", ["one.png", "one.json", "one_std.png"])
def test_a_file_restore_did_not_write_is_never_replaced(photos, tmp_path, taken):
    out = tmp_path / "out"
    out.mkdir()
    (out / taken).write_bytes(b"the user's own file")
    result = run("restore", photos, *FAST, "--samples", "2", "--solver", "rgm-drs", "-o", out)
    assert result.exit_code == 1, result.output
    assert (out / taken).read_bytes() == b"the user's own file"
    assert len(errors(result)) == 1 and "one.png" in errors(result)[0] and "--overwrite" in errors(result)[0]
    assert "not written by pnprgm" in errors(result)[0] or "is not the file its record" in errors(result)[0]
    assert (out / "two.png").is_file() and "restored 1 image(s)" in result.output and "1 failed" in result.output
    result = run("restore", photos, *FAST, "--samples", "2", "--solver", "rgm-drs", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / taken).read_bytes() != b"the user's own file"
    assert "restored 2 image(s)" in result.output


def test_inputs_sharing_a_stem_get_distinct_outputs(tmp_path):
    generator = torch.Generator().manual_seed(1)
    first, second = torch.rand((3, 16, 16), generator=generator), torch.rand((3, 16, 16), generator=generator)
    io.write_image(tmp_path / "in" / "a.png", first)
    io.write_image(tmp_path / "in" / "a.tif", second)
    io.write_image(tmp_path / "other" / "a.png", second)
    out = tmp_path / "out"
    result = run("restore", tmp_path / "in", tmp_path / "other" / "a.png", *FAST, "-o", out)
    assert result.exit_code == 0, result.output
    assert "restored 3 image(s)" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_png-2.json", "a_png-2.png", "a_png.json", "a_png.png",
                                                     "a_tif.json", "a_tif.png"]
    inputs = {json.loads((out / f"{stem}.json").read_text())["input"] for stem in ("a_png", "a_tif", "a_png-2")}
    assert inputs == {str(tmp_path / "in" / "a.png"), str(tmp_path / "in" / "a.tif"), str(tmp_path / "other" / "a.png")}
    restored = [io.read_image(out / name) for name in ("a_png.png", "a_tif.png")]
    assert not torch.equal(restored[0], restored[1])  # neither replaced the other


def test_an_input_whose_name_is_unique_keeps_it_beside_inputs_sharing_a_stem(tmp_path):
    """``a.jpg`` (sharing its stem with ``a.png``) took ``a_jpg.png``, and the input ``a_jpg.png`` got ``a_jpg-2``:
    a user opening ``a_jpg.png`` saw another photo."""
    generator = torch.Generator().manual_seed(2)
    for name in ("a.png", "a.tif", "a_tif.png"):
        io.write_image(tmp_path / "in" / name, torch.rand((3, 16, 16), generator=generator))
    result = run("restore", tmp_path / "in", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    inputs = {stem: json.loads((tmp_path / "out" / f"{stem}.json").read_text())["input"]
              for stem in ("a_png", "a_tif", "a_tif-2")}
    assert inputs == {"a_png": str(tmp_path / "in" / "a.png"), "a_tif": str(tmp_path / "in" / "a_tif.png"),
                      "a_tif-2": str(tmp_path / "in" / "a.tif")}


def test_a_rerun_skips_what_is_done_and_refuses_other_settings(photos, tmp_path):
    out = tmp_path / "out"
    assert run("restore", photos, *FAST, "-o", out).exit_code == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    result = run("restore", photos, *FAST, "-o", out)
    assert result.exit_code == 0, result.output
    assert "restored 0 image(s)" in result.output and "2 already restored (skipped)" in result.output
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    result = run("restore", photos, *FAST, "-o", out, "--seed", "1")
    assert result.exit_code == 1 and len(errors(result)) == 2
    assert all("other settings (changed: --seed)" in line and "--overwrite" in line for line in errors(result))
    result = run("restore", photos, *FAST[:-3], "--iters", "1", "-q", "-o", out)  # named by the options, not "overrides"
    assert all("other settings (changed: --iters/--set)" in line for line in errors(result)), result.output
    result = run("restore", photos, *FAST, "-o", out, "--seed", "1", "--overwrite")
    assert result.exit_code == 0 and "restored 2 image(s)" in result.output
    assert json.loads((out / "one.json").read_text())["job"]["seed"] == 1


def test_a_record_naming_the_default_denoiser_by_its_old_name_counts_as_the_same_settings(photos, tmp_path):
    """Outputs restored with `--denoiser rgm` (the old name of `default`, the CLI default before the rename) are
    skipped by a rerun with today's default, not refused as restored with other settings."""
    out = tmp_path / "out"
    assert run("restore", photos, *FAST, "-o", out).exit_code == 0
    for record_path in out.glob("*.json"):  # as if written before the rename
        record = json.loads(record_path.read_text())
        record["job"]["denoiser"] = "rgm"
        record_path.write_text(json.dumps(record))
    today = [arg if arg != "tikhonov" else "default" for arg in FAST]
    for args in (today, [arg if arg != "tikhonov" else "rgm" for arg in FAST]):
        result = run("restore", photos, *args, "-o", out)
        assert result.exit_code == 0, result.output
        assert "restored 0 image(s)" in result.output and "2 already restored (skipped)" in result.output


def test_an_output_of_another_image_is_not_replaced(photos, tmp_path):
    out = tmp_path / "out"
    assert run("restore", photos / "one.png", *FAST, "-o", out).exit_code == 0
    io.write_image(tmp_path / "elsewhere" / "one.png", torch.zeros(3, 16, 16))
    record = (out / "one.json").read_bytes()
    result = run("restore", tmp_path / "elsewhere" / "one.png", *FAST, "-o", out)
    assert result.exit_code == 1 and "restoration of another image" in result.output
    assert (out / "one.json").read_bytes() == record


def test_a_kill_never_leaves_an_image_without_its_record(photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_replace = os.replace

    def killed_at_the_image(src, dst):
        if str(dst).endswith("one.png"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", killed_at_the_image)
    result = run("restore", photos / "one.png", *FAST, "-o", out)
    monkeypatch.undo()
    assert result.exit_code != 0
    assert (out / "one.json").is_file() and not (out / "one.png").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # the next run sees its own record without the image and restores it
    result = run("restore", photos, *FAST, "-o", out)
    assert result.exit_code == 0 and "restored 2 image(s)" in result.output, result.output
    record = json.loads((out / "one.json").read_text())
    assert record["output_sha256"] == io.sha256_file(out / "one.png")


def test_stale_temporaries_are_swept(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    own = out / ".one.png.pnprgm-ab12cd34.tmp"  # a killed run's temporary of an output written now: any age
    old = out / ".gone.png.pnprgm-zz99yy88.tmp"  # of another output, an hour old
    fresh = out / ".busy.png.pnprgm-qq11ww22.tmp"  # another live run's
    users = [out / ".notes.tmp", out / ".one.png.ABCDEFGH.tmp", out / ".notes.txt.ABCDEFGH.tmp"]  # not ours
    for path in (own, old, fresh, *users):
        path.write_bytes(b"x")
    hour_ago = time.time() - 3700
    for path in (old, *users):
        os.utime(path, (hour_ago, hour_ago))
    result = run("restore", photos, *FAST, "-o", out)
    assert result.exit_code == 0, result.output
    assert not own.exists() and not old.exists() and fresh.exists() and all(p.exists() for p in users)


@pytest.mark.parametrize("args,message", [
    (("--noise", "nan"), "--noise must be a noise std in [0, 1]"),
    (("--noise", "-1"), "--noise must be a noise std in [0, 1]"),
    (("--noise", "inf"), "--noise must be a noise std in [0, 1]"),
    (("--noise", "5"), "--noise must be a noise std in [0, 1]"),
    (("--set", "lam=nan"), "lam must be a finite number"),
    (("--set", "lam=-inf"), "lam must be a finite number"),
    (("--set", "lam=0"), "lam > 0"),
    (("--set", "relaxation=-1"), "relaxation must be in (0, 2]"),
    (("--set", "relaxation=1e10"), "relaxation must be in (0, 2]"),
    (("--set", "sigma_start=1e308"), "sigma_start is a noise std in [0, 1]"),
    (("--iters", "0"), "iterations must be between 1 and"),
    (("--set", "iterations=100000000000"), "iterations must be between 1 and"),
    (("--iters", "2", "--set", "iterations=abc"), "--iters 2 and --set iterations=abc both set"),
    (("--samples", "0"), "--samples must be >= 1"),
    (("--size", "0x16"), "--size must be positive"),
    (("--operator", "blur:gaussian,sigma=nan"), "sigma must be a finite number"),
])
def test_bad_numbers_are_one_line_errors_before_any_work(photos, tmp_path, args, message):
    out = tmp_path / "out"
    operator = () if "--operator" in args else ("--operator", "blur:gaussian,sigma=1")
    result = run("restore", photos, *operator, "--denoiser", "tikhonov", "-q", *args, "-o", out)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (("--model-config", "celebahq256"), "add --model PATH"),  # was ignored: the default denoiser ran
    (("--denoiser", "netG_1.pth", "--model-config", "celebahq256"), "give it as --model netG_1.pth instead of --denoiser"),
    (("--model", "nonexist.pt"), "--model nonexist.pt does not exist"),  # was "unknown denoiser", a list of names
    (("--model", "."), "is a folder"),
    (("--model", "nonexist.pt#celebahq256"), "--model nonexist.pt does not exist"),
    (("--denoiser", "drunet-denoiser-color", "--model-config", "celebahq256"), "drop --model-config"),
    (("--model", "m.pt#celebahq256", "--model-config", "cifar10"), "both name the generator config"),
    (("--model", "unet-lpips#celebahq256"), "--model unet-lpips is a shipped model, and a generator config"),
    (("--model", "unet-lpips", "--model-config", "celebahq256"), "is a shipped model"),  # was "does not exist"
])
def test_model_options_that_cannot_work_are_one_line_errors_before_any_work(photos, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    for name in ("m.pt", "netG_1.pth"):
        (tmp_path / name).write_bytes(b"a model file")
    out = tmp_path / "out"
    result = run("restore", photos, "--operator", "blur:gaussian,sigma=1", "-q", *args, "-o", out)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_black_and_white_photo_saved_as_rgb_can_be_colorized(tmp_path):
    """A gray photo stored with three equal channels is the gray measurement it shows (was: "a 3-channel image
    cannot be a measurement of 'gray'"); a colour photo still is not."""
    from PIL import Image

    gray = (torch.rand((16, 16), generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(gray).convert("RGB").save(folder / "bw.png")
    Image.fromarray(gray).convert("RGB").save(folder / "bw.jpg", quality=90)
    io.write_image(folder / "colour.png", torch.rand((3, 16, 16), generator=torch.Generator().manual_seed(1)))
    out = tmp_path / "out"
    result = run("restore", folder, "--operator", "gray", "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", out)
    assert result.exit_code == 1, result.output
    for name in ("bw_png.png", "bw_jpg.png"):  # two inputs named bw: each output says which
        assert io.read_image(out / name).shape == (3, 16, 16)
    assert len(errors(result)) == 1 and "colour.png" in errors(result)[0] and "3-channel" in errors(result)[0]


@pytest.mark.parametrize("bad", ["NaN", "true"])
def test_a_bad_sidecar_noise_is_one_error_and_the_folder_goes_on(photos, tmp_path, bad):
    """NaN gave a black image; JSON ``true`` was read as a noise std of 1."""
    meas, out = tmp_path / "meas", tmp_path / "out"
    assert run("degrade", photos, "-p", "sr2", "--noise", "0.01", "-o", meas).exit_code == 0
    sidecar = meas / "one.measurement.json"
    sidecar.write_text(sidecar.read_text().replace('"noise_sigma": 0.01', f'"noise_sigma": {bad}'))
    result = run("restore", meas, "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", out)
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and "one.measurement.json" in errors(result)[0] and "noise_sigma" in errors(result)[0]
    assert (out / "two.png").is_file() and not (out / "one.png").exists()
    assert "restored 1 image(s)" in result.output and "1 failed" in result.output


def test_a_sidecar_nested_too_deeply_is_one_error_and_the_folder_goes_on(photos, tmp_path):
    """JSON nested 100000 levels deep raised RecursionError in the JSON parser: a traceback that stopped the batch."""
    meas, out = tmp_path / "meas", tmp_path / "out"
    assert run("degrade", photos, "-p", "sr2", "--noise", "0.01", "-o", meas).exit_code == 0
    (meas / "one.measurement.json").write_text("[" * 100000 + "]" * 100000)
    result = run("restore", meas, "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(errors(result)) == 1 and "one.measurement.json" in errors(result)[0] and "nested too deeply" in errors(result)[0]
    assert (out / "two.png").is_file() and not (out / "one.png").exists()


@pytest.mark.parametrize("orientation,turn", [(1, 0), (6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied_on_read(tmp_path, orientation, turn):
    """A portrait photo stored landscape with an EXIF orientation tag is read (and restored) upright."""
    import numpy as np
    from PIL import Image

    stored = np.zeros((16, 24, 3), np.uint8)
    stored[:4, :4] = 255  # a white corner to follow the rotation
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "photo.jpg", quality=100, exif=exif.tobytes())
    read = io.read_image(tmp_path / "photo.jpg")
    expected = torch.rot90(torch.from_numpy(stored).permute(2, 0, 1).float() / 255, turn, dims=(1, 2))
    assert read.shape == expected.shape
    assert float((read - expected).abs().mean()) < 0.02
    result = run("restore", tmp_path / "photo.jpg", "--operator", "identity", "--denoiser", "tikhonov", "--iters", "1",
                 "-q", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert io.read_image(tmp_path / "out" / "photo.png").shape == expected.shape


@pytest.mark.parametrize("tile", ["0", "1", "7", "-5", "31"])
def test_a_bad_tile_is_one_line_and_zero_is_not_ignored(photos, tmp_path, tile):
    result = run("restore", photos, *FAST, "--tile", tile, "-o", tmp_path / "out")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "--tile must be an integer of at least 32 pixels" in result.output and f"got {tile}" in result.output
    assert not (tmp_path / "out").exists()


def test_tiles_of_the_smallest_size_restore(tmp_path):
    io.write_image(tmp_path / "big.png", torch.rand((3, 48, 40), generator=torch.Generator().manual_seed(2)))
    result = run("restore", tmp_path / "big.png", *FAST, "--tile", "32", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert io.read_image(tmp_path / "out" / "big.png").shape == (3, 48, 40)


@pytest.mark.parametrize("device", ["auto", "cuda", "cuda:0"])
def test_a_device_without_a_gpu_falls_back_to_the_cpu(photos, tmp_path, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("restore", photos, *FAST, "--device", device, "-o", tmp_path / "out")
    said = [str(w.message) for w in caught if "CUDA is not available" in str(w.message)]
    assert len(said) == (0 if device == "auto" else 1), said  # auto means "the CPU is fine": no warning
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "one.json").read_text())["settings"]["device"] == "cpu"


@pytest.mark.parametrize("command", ["restore", "degrade"])
@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_an_output_folder_blocked_by_a_file_is_one_line(photos, tmp_path, command, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if where == "a_file" else blocker / "out"
    args = FAST if command == "restore" else ("-p", "sr2")
    result = run(command, photos, *args, "-o", out)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert str(out) in result.output and "choose another -o" in result.output
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("code, fix", [("ENOSPC", "free space"), ("EACCES", "a folder you may write to"),
                                       ("EROFS", "a folder you may write to"), ("EIO", "check the folder")])
def test_a_write_failure_after_computing_is_one_line_and_the_batch_goes_on(photos, tmp_path, monkeypatch, code, fix):
    """The fix fits the cause: a refused permission once said "free space"."""
    import errno
    import os

    real_stage = io.stage

    def failing_for_one(path, writer, **kwargs):
        if path.name == "one.png":
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        return real_stage(path, writer, **kwargs)

    monkeypatch.setattr(io, "stage", failing_for_one)
    result = run("restore", photos, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and "one.png" in errors(result)[0] and fix in errors(result)[0]
    assert os.strerror(getattr(errno, code)) in errors(result)[0]
    assert "Traceback" not in result.output and "restored 1 image(s)" in result.output and "1 failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["two.json", "two.png"]


@pytest.mark.parametrize("command", ["restore", "degrade"])
def test_overwrite_never_replaces_the_mask_file_the_operator_reads(photos, tmp_path, command):
    """-o beside a mask image named like the input: --overwrite once replaced the user's mask with the output."""
    masks = tmp_path / "masks"
    io.write_image(masks / "one.png", (torch.rand((1, 16, 16), generator=torch.Generator().manual_seed(2)) > 0.5).float())
    before = (masks / "one.png").read_bytes()
    args = (("--denoiser", "tikhonov", "--iters", "2", "-q") if command == "restore" else ())
    result = run(command, photos / "one.png", "--operator", f"mask:file={masks / 'one.png'}", *args, "-o", masks,
                 "--overwrite")
    assert result.exit_code == 1 and "which this run reads" in result.output, result.output
    assert (masks / "one.png").read_bytes() == before and sorted(p.name for p in masks.iterdir()) == ["one.png"]


@pytest.mark.parametrize("command, taken", [("restore", "one.png"), ("restore", "one.json"),
                                            ("degrade", "one.png"), ("degrade", "one.measurement.json")])
def test_a_folder_where_an_output_goes_fails_that_input_before_anything_is_written(photos, tmp_path, command, taken):
    """A folder named like an output once let restore commit the record, then fail to rename the image onto it."""
    out = tmp_path / "out"
    (out / taken).mkdir(parents=True)
    args = FAST if command == "restore" else ("-p", "sr2")
    result = run(command, photos, *args, "-o", out, "--overwrite")
    assert result.exit_code == 1 and f"{out / taken} is a folder where an output file goes" in result.output
    assert not any(p.name.startswith("one") and p.is_file() for p in out.iterdir())  # nothing of one's written
    assert (out / "two.png").is_file()  # the other input still processed


def test_an_input_changed_since_its_restoration_is_named_as_changed_not_as_another_image(photos, tmp_path):
    assert run("restore", photos / "one.png", *FAST, "-o", tmp_path / "out").exit_code == 0
    io.write_image(photos / "one.png", torch.rand((3, 16, 16), generator=torch.Generator().manual_seed(9)))
    result = run("restore", photos / "one.png", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "an earlier version of this input (it changed since)" in result.output
    assert "--overwrite" in result.output


def test_model_takes_a_shipped_name_and_an_old_one_as_the_readme_says(photos, tmp_path):
    result = run("restore", photos / "one.png", "--operator", "sr2", "--model", "rgm-denoiser-color", "--iters", "2",
                 "-q", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "now called 'unet-denoiser-color'" in result.output
    assert json.loads((tmp_path / "out" / "one.json").read_text())["job"]["denoiser"] == "rgm-denoiser-color"


def test_sidecars_named_as_inputs_are_read_beside_their_images_not_restored(photos, tmp_path):
    """``restore m/*`` names the sidecars too: they once failed with advice to pass --operator, which then silently
    replaced the exact measurement."""
    assert run("degrade", photos, "-p", "sr2", "--noise", "0.01", "-o", tmp_path / "m").exit_code == 0
    listed = sorted((tmp_path / "m").iterdir())
    result = run("restore", *listed, "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", tmp_path / "out")
    assert result.exit_code == 0 and "restored 2 image(s)" in result.output and not errors(result), result.output
    alone = run("restore", tmp_path / "m" / "one.measurement.json", "-q", "-o", tmp_path / "out2")
    assert alone.exit_code == 1 and "is a measurement sidecar, not an image; give its image" in alone.output
    assert str(tmp_path / "m" / "one.png") in alone.output
    with pytest.warns(UserWarning, match="is used instead of the measurement sidecar of") as caught:
        overridden = run("restore", tmp_path / "m", *FAST, "-o", tmp_path / "out3")
    assert overridden.exit_code == 0, overridden.output
    assert len(caught) == 1 and "one.png" in str(caught[0].message)  # one line for the batch, not one per image


@pytest.mark.parametrize("command", ["restore", "degrade"])
def test_an_empty_output_folder_is_refused_not_the_current_folder(photos, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    args = FAST if command == "restore" else ("-p", "sr2")
    result = run(command, photos, *args, "-o", "")
    assert result.exit_code == 2 and "-o is empty" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_an_input_that_cannot_be_read_mid_batch_gets_read_advice_not_write_advice(photos, tmp_path, monkeypatch):
    """An input removed or failing while the batch runs (here: hashing it for the record) is a read problem."""
    import errno
    import os

    real_hash = io.sha256_file

    def failing_for_one_input(path):
        if Path(path).name == "one.png" and Path(path).parent == photos:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_hash(path)

    monkeypatch.setattr(io, "sha256_file", failing_for_one_input)
    result = run("restore", photos, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and "cannot read" in errors(result)[0] and "one.png" in errors(result)[0]
    assert "another -o" not in errors(result)[0] and "restored 1 image(s)" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["two.json", "two.png"]


def test_a_decompression_bomb_is_one_line_and_the_others_restored(photos, tmp_path):
    """A small PNG that declares 30000x30000 pixels: refused by name before decoding, the next photo restored."""
    from PIL import Image

    Image.new("1", (30000, 30000)).save(tmp_path / "bomb.png")
    result = run("restore", tmp_path / "bomb.png", photos / "two.png", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and "bomb.png" in errors(result)[0] and "downscale or crop" in errors(result)[0]
    assert "Traceback" not in result.output and (tmp_path / "out" / "two.png").is_file()


def test_a_missing_input_is_reported_and_the_others_restored(photos, tmp_path):
    result = run("restore", photos / "one.png", tmp_path / "missing.png", photos / "two.png", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and "missing.png does not exist" in errors(result)[0]
    assert (tmp_path / "out" / "one.png").is_file() and (tmp_path / "out" / "two.png").is_file()
    assert "restored 2 image(s)" in result.output and "1 failed" in result.output
    result = run("restore", tmp_path / "missing.png", *FAST, "-o", tmp_path / "out2")
    assert result.exit_code == 1 and "does not exist" in result.output and "restored 0 image(s)" in result.output


def test_an_output_folder_inside_the_input_folder_is_not_called_a_passed_over_subfolder(photos):
    import warnings

    assert run("restore", photos, *FAST, "-o", photos / "out").exit_code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rerun finds out/ with images in it: the outputs, not a missed folder
        result = run("restore", photos, *FAST, "-o", photos / "out")
    assert result.exit_code == 0 and "2 already restored" in result.output, result.output


def test_a_preset_for_another_task_is_said_once_per_batch(photos, tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("restore", photos, "--operator", "sr2", "--preset", "deblur-drs", "--denoiser", "tikhonov",
                     "--iters", "1", "-q", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    said = [str(w.message) for w in caught if "was set for the deblur task" in str(w.message)]
    assert len(said) == 1, said  # two images, one line


def test_a_name_too_long_for_the_outputs_fails_alone_with_the_fix(photos, tmp_path):
    """A 240-character stem is a legal name, but its outputs' temporaries are not: with --operator, looking for its
    sidecar raised ENAMETOOLONG and aborted the whole batch with a traceback."""
    long = photos / ("q" * 240 + ".png")
    os.link(photos / "one.png", long)
    result = run("restore", photos / "two.png", long, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and "shorten the file name or the folder path" in errors(result)[0]
    assert (tmp_path / "out" / "two.png").is_file() and "restored 1 image(s)" in result.output


def test_a_pipe_is_named_as_such_and_passed_over_parts_of_a_folder_are_named(photos, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    io.write_image(photos / "more" / "three.png", torch.rand((3, 8, 8)))
    (photos / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (photos / "notes.txt").symlink_to(tmp_path / "nowhere.txt")  # not an image: nothing to say
    with pytest.warns(UserWarning, match=r"in: its subfolders \(more\) hold images, which are not searched \(name "
                                         r"those folders too\); its links \(gone.png\) lead to no file\.$"):
        result = run("restore", tmp_path / "pipe.png", photos, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert errors(result) == [f"error: input {tmp_path / 'pipe.png'} is not a regular file (a pipe, socket or device); "
                              f"save the image to a file and give that."]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["one.png", "two.png"]


def test_an_operator_of_the_users_code_restores_with_a_denoiser_as_the_help_says(tmp_path):
    """``--operator ops.py:make`` was refused as an unknown operator unless a model trained for it was given, while
    --solver's help promised HQS for such a blur; a missing callable fails once, before any work."""
    (tmp_path / "ops.py").write_text(textwrap.dedent(f"""
        import pathlib
        with open({str(tmp_path / "imported")!r}, "a") as log:
            log.write("x")
        import torch
        from deepinv.physics import Blur

        def make(shape, device):
            kernel = torch.zeros(1, 1, 5, 5)
            kernel[0, 0, 2, :] = 0.2
            return Blur(filter=kernel.to(device), padding="circular", device=device)
    """))
    generator = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.interpolate(torch.rand((1, 3, 6, 6), generator=generator), size=(24, 24),
                                            mode="bilinear", align_corners=False)[0]
    kernel = torch.zeros(1, 1, 5, 5)
    kernel[0, 0, 2, :] = 0.2
    from deepinv.physics import Blur

    io.write_image(tmp_path / "blurred.png", Blur(filter=kernel, padding="circular").A(clean[None])[0])
    io.write_image(tmp_path / "again.png", io.read_image(tmp_path / "blurred.png"))
    spec = f"{tmp_path / 'ops.py'}:make"
    result = run("restore", tmp_path / "blurred.png", tmp_path / "again.png", "--operator", spec,
                 *fast_without("--operator"), "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "imported").read_text() == "x"  # its top-level code ran once for the batch
    record = json.loads((tmp_path / "out" / "blurred.json").read_text())
    assert record["operator"] == spec and record["settings"]["solver"] == "hqs"
    assert record["operator_code_sha256"] == io.sha256_file(tmp_path / "ops.py")
    with open(tmp_path / "ops.py", "a") as handle:  # the code changed: its results are not "already restored"
        handle.write("# another kernel, say\n")
    rerun = run("restore", tmp_path / "blurred.png", "--operator", spec, *fast_without("--operator"), "-o",
                tmp_path / "out")
    assert rerun.exit_code == 1 and "another version of the operator code" in rerun.output, rerun.output
    restored, blurred = io.read_image(tmp_path / "out" / "blurred.png"), io.read_image(tmp_path / "blurred.png")
    assert (restored - clean).square().mean() < 0.8 * (blurred - clean).square().mean()
    result = run("restore", tmp_path / "blurred.png", "--operator", f"{tmp_path / 'ops.py'}:nothere",
                 *fast_without("--operator"), "-o", tmp_path / "out2")
    assert result.exit_code == 2 and errors(result) == [
        f"error: {tmp_path / 'ops.py'} has no callable 'nothere'; give module:callable returning a LinearPhysics."]
    assert not (tmp_path / "out2").exists()


# -- --samples N: one model load, progress a log can hold --------------------------------------------------------

@pytest.fixture
def tiny_model(tmp_path):
    """A tiny (untrained) RGM model file: a stochastic denoiser (latent z) loaded from a path."""
    from pnprgm.rgm.model_file import save_model
    from pnprgm.rgm.architectures import build_generator_from_config
    from pnprgm.rgm.unet import sized_config

    torch.manual_seed(0)
    config = sized_config("tiny", channels=3, conditioning="sigma", output="residual", sigma_channel=True)
    gen = build_generator_from_config(config)
    return save_model(tmp_path / "tiny.pt", gen.state_dict(), dict(gen.config), {"name": "denoise"}, {"command": "test"})


def test_samples_load_and_hash_the_model_once(photos, tmp_path, tiny_model, monkeypatch):
    from pnprgm.rgm import models

    loads, hashes = [], []
    load, sha256 = models.load_generator_file, io.sha256_file
    monkeypatch.setattr(models, "load_generator_file", lambda path, **kw: loads.append(path) or load(path, **kw))
    monkeypatch.setattr(io, "sha256_file", lambda path: (hashes.append(path) if str(path) == str(tiny_model) else None)
                        or sha256(path))
    result = run("restore", photos / "one.png", "--operator", "blur:gaussian,sigma=1", "--denoiser", tiny_model,
                 "--solver", "rgm-drs", "--iters", "2", "--samples", "3", "-q", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(loads) == 1 and len(hashes) == 1, f"{len(loads)} loads, {len(hashes)} hashes of the model for 3 samples"
    record = json.loads((tmp_path / "out" / "one.json").read_text())
    assert record["settings"]["model"]["sha256"] == sha256(tiny_model)


def test_samples_from_one_model_equal_separate_restorations(tiny_model):
    """Loading once changes nothing: sample i is restore(seed=seed+i), the latent z restarted from that seed."""
    from pnprgm import operators
    from pnprgm.restoration import restore, restore_samples

    generator = torch.Generator().manual_seed(2)
    physics = operators.build("mask:random,rate=0.5,seed=0", (3, 16, 16))
    y = physics.A(torch.rand((1, 3, 16, 16), generator=generator))
    kwargs = dict(denoiser=str(tiny_model), solver="rgm-drs", iterations=2, noise_sigma=0.02)
    drawn = restore_samples(y, physics, samples=3, seed=5, **kwargs)
    for i, image in enumerate(drawn.images):
        assert torch.equal(image, restore(y, physics, seed=5 + i, **kwargs))
    assert not torch.equal(drawn.images[0], drawn.images[1])


def test_samples_progress_to_a_log_is_plain_lines(photos, tmp_path):
    """Not a terminal (CliRunner, a log file, a pipe): "sample k/N" lines with an ETA, no bars, no escape codes."""
    result = run("restore", photos, "--operator", "blur:gaussian,sigma=1", "--denoiser", "tikhonov", "--iters", "2",
                 "--solver", "rgm-drs", "--samples", "3", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "\x1b" not in result.output, repr(result.output[:300])
    lines = result.output.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith("sample ")] == ["sample 1/3", "sample 2/3", "sample 3/3"] * 2
    assert all("ETA" in line for line in lines if line.startswith(("sample 2/3", "sample 3/3")))
    assert any(line.startswith("image 2/2: ") for line in lines)


@pytest.mark.parametrize("command", ["restore", "degrade"])
@pytest.mark.parametrize("option, message", [(("--seed", "99999999999999999999"), "is not in the range"),
                                             (("--device", "meta"), "unknown device")])
def test_an_impossible_seed_or_device_is_one_line(photos, tmp_path, command, option, message):
    extra = FAST if command == "restore" else ("--operator", "sr2")
    result = run(command, photos, *extra, *option, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_result_of_other_samples_is_kept_and_a_replaced_one_leaves_no_stale_std_map(photos, tmp_path):
    """--samples 2 over a --samples 1 result is "other settings" (its missing _std.png is not a killed run);
    --overwrite back to --samples 1 removes the std map the old record listed, never a user's file of that name."""
    out = tmp_path / "out"
    single = ("restore", photos / "one.png", *FAST, "--solver", "rgm-drs", "-o", out)
    assert run(*single).exit_code == 0
    first = (out / "one.png").read_bytes()
    result = run(*single, "--samples", "2")
    assert result.exit_code == 1 and "other settings (changed: --samples)" in result.output, result.output
    assert (out / "one.png").read_bytes() == first and not (out / "one_std.png").exists()
    assert run(*single, "--samples", "2", "--overwrite").exit_code == 0 and (out / "one_std.png").is_file()
    again = run(*single, "--overwrite")
    assert again.exit_code == 0, again.output
    assert not (out / "one_std.png").exists() and json.loads((out / "one.json").read_text())["std_map"] is None
    (out / "one_std.png").write_bytes(b"the user's own file")
    assert run(*single, "--overwrite").exit_code == 0
    assert (out / "one_std.png").read_bytes() == b"the user's own file"


@pytest.mark.parametrize("option, message", [(("--solver", "drz"), "unknown solver 'drz'"),
                                             (("--preset", "nope"), "unknown preset 'nope'"),
                                             (("--denoiser", "bm4d"), "unknown denoiser 'bm4d'")])
def test_an_unknown_name_is_named_even_beside_an_earlier_result(photos, tmp_path, option, message):
    out = tmp_path / "out"
    assert run("restore", photos / "one.png", *FAST, "-o", out).exit_code == 0
    result = run("restore", photos / "one.png", *fast_without(option[0]), *option, "-o", out)
    assert result.exit_code == 2 and message in result.output and "other settings" not in result.output


def test_denoiser_and_model_together_are_refused(photos, tmp_path, tiny_model):
    result = run("restore", photos, *FAST[:2], "--denoiser", "tv", "--model", tiny_model, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--denoiser tv and --model" in result.output and "give one of them" in result.output
    assert not (tmp_path / "out").exists()


def test_a_sidecar_asking_for_an_impossible_size_fails_alone(photos, tmp_path):
    """A hand-edited sidecar whose shapes ask for 10^12 pixels is one error for its input; the batch goes on."""
    meas = tmp_path / "meas"
    assert run("degrade", photos, "--operator", "sr2", "-o", meas).exit_code == 0
    sidecar = meas / "one.measurement.json"
    text = json.loads(sidecar.read_text())

    def enlarge(node):
        if isinstance(node, dict):
            return {k: ([node[k][0], 1_000_000, 1_000_000] if k in ("in_shape", "shape") and isinstance(node[k], list)
                        and len(node[k]) == 3 else enlarge(node[k])) for k in node}
        return [enlarge(v) for v in node] if isinstance(node, list) else node

    sidecar.write_text(json.dumps(enlarge(text)))
    result = run("restore", meas, "--denoiser", "tikhonov", "--iters", "1", "-q", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(errors(result)) == 1 and "one" in errors(result)[0]
    assert (tmp_path / "out" / "two.png").is_file()


def test_a_size_that_contradicts_the_sidecar_is_refused_not_ignored(photos, tmp_path):
    """--size is for images without a sidecar; beside one it was silently ignored. The same size is accepted."""
    meas = tmp_path / "meas"
    assert run("degrade", photos / "one.png", "--operator", "sr2", "-o", meas).exit_code == 0
    result = run("restore", meas, "--denoiser", "tikhonov", "--iters", "1", "-q", "--size", "20x20", "-o", tmp_path / "a")
    assert result.exit_code == 1 and len(errors(result)) == 1, result.output
    assert "restores a 16x16 image, not the --size 20x20" in errors(result)[0]
    assert not (tmp_path / "a" / "one.png").exists()
    result = run("restore", meas, "--denoiser", "tikhonov", "--iters", "1", "-q", "--size", "16x16", "-o", tmp_path / "b")
    assert result.exit_code == 0 and (tmp_path / "b" / "one.png").is_file(), result.output


def test_sidecars_of_an_image_with_an_upper_case_suffix_are_read_beside_it(photos, tmp_path):
    assert run("degrade", photos / "one.png", "-p", "sr2", "-o", tmp_path / "m").exit_code == 0
    (tmp_path / "m" / "one.png").rename(tmp_path / "m" / "one.PNG")
    result = run("restore", *sorted((tmp_path / "m").iterdir()), "--denoiser", "tikhonov", "--iters", "2", "-q",
                 "-o", tmp_path / "out")
    assert result.exit_code == 0 and not errors(result), result.output


def test_an_os_error_on_the_output_folder_itself_gets_write_advice(tmp_path):
    import errno

    from pnprgm.restore_job import _os_problem

    out, photo = tmp_path / "out", tmp_path / "in" / "a.png"
    for name in (out, out / "a.png"):
        assert "cannot write into" in _os_problem(OSError(errno.EEXIST, "File exists", str(name)), out, [photo])
    assert "cannot read" in _os_problem(OSError(errno.EIO, "I/O error", str(photo)), out, [photo])


@pytest.mark.parametrize("spec", ["sr:kernel=gaussian,sigma=0.01", "blur:motion,spread=50", "blur:gaussian,sigma=0.01,size=2"])
def test_a_kernel_with_no_usable_weight_is_refused_once_not_per_image(photos, tmp_path, spec):
    result = run("restore", photos, "--operator", spec, "-q", "-o", tmp_path / "out")
    assert result.exit_code == 2 and result.output.count("no usable weight") == 1, result.output
    assert not (tmp_path / "out").exists()


def test_ctrl_c_exits_130_with_one_line(tmp_path, monkeypatch):
    """Ctrl-C reads as the shell's status for SIGINT (130), not as a failure (1), so that scripts can tell them
    apart (an interrupted training run has saved a checkpoint)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        import pnprgm.restore_job
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        pnprgm.restore_job.run_restore_job = interrupted
        from pnprgm.cli.main import app
        sys.argv = ["pnprgm", "restore", sys.argv[1], "--operator", "sr2", "-o", sys.argv[2]]
        app()
    """)
    torch.manual_seed(0)
    io.write_image(tmp_path / "a.png", torch.rand(3, 8, 8))
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.png"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "interrupted." and "Traceback" not in result.stderr


def test_a_helper_module_the_operator_code_imports_counts_as_its_code(tmp_path, monkeypatch):
    """The record hashed only the file named in --operator: an edited helper module it imports (its kernel, say)
    left earlier results "already restored" by other code."""
    from pnprgm.training.processes import code_sha256, typed_operator_callable

    folder = tmp_path / "code"
    folder.mkdir()
    helper = folder / "pnprgm_test_helper_kernels.py"
    helper.write_text("WIDTH = 5\n")
    (folder / "ops_with_helper.py").write_text(textwrap.dedent("""
        import pathlib, sys
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        import pnprgm_test_helper_kernels

        def make(shape, device):
            raise RuntimeError("not built in this test")
    """))
    monkeypatch.syspath_prepend(str(folder))  # the helper goes from sys.path with the test
    monkeypatch.delitem(sys.modules, "pnprgm_test_helper_kernels", raising=False)
    spec = f"{folder / 'ops_with_helper.py'}:make"
    assert callable(typed_operator_callable(spec))
    first = code_sha256(spec)
    assert first != io.sha256_file(folder / "ops_with_helper.py")  # the helper is part of it
    helper.write_text("WIDTH = 7\n")
    assert code_sha256(spec) != first
    # a package named as module:callable: its submodules count too
    package = tmp_path / "cwd" / "pnprgm_test_ops_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import kernels\n\ndef make(shape, device):\n    return None\n")
    (package / "kernels.py").write_text("WIDTH = 5\n")
    monkeypatch.chdir(tmp_path / "cwd")
    for name in ("pnprgm_test_ops_pkg", "pnprgm_test_ops_pkg.kernels"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert callable(typed_operator_callable("pnprgm_test_ops_pkg:make"))
    before = code_sha256("pnprgm_test_ops_pkg:make")
    assert before != io.sha256_file(package / "__init__.py")
    (package / "kernels.py").write_text("WIDTH = 9\n")
    assert code_sha256("pnprgm_test_ops_pkg:make") != before
    for name in ("pnprgm_test_ops_pkg", "pnprgm_test_ops_pkg.kernels", "pnprgm_test_helper_kernels"):
        sys.modules.pop(name, None)  # the test's modules go with it


def test_overwrite_never_replaces_the_measurement_sidecar_another_input_reads(photos, tmp_path):
    """Inputs a/x.png (with its sidecar a/x.measurement.json) and b/x.measurement.png restored into a/ with
    --overwrite: the second one's record (a/x.measurement.json) replaced the first one's sidecar."""
    assert run("degrade", photos / "one.png", "--operator", "sr2", "-o", tmp_path / "a").exit_code == 0
    (tmp_path / "b").mkdir()
    os.replace(tmp_path / "a" / "one.png", tmp_path / "a" / "x.png")
    for ext in ("json", "npz"):
        os.replace(tmp_path / "a" / f"one.measurement.{ext}", tmp_path / "a" / f"x.measurement.{ext}")
    io.write_image(tmp_path / "b" / "x.measurement.png", torch.rand((3, 8, 8), generator=torch.Generator().manual_seed(1)))
    sidecar = (tmp_path / "a" / "x.measurement.json").read_bytes()
    result = run("restore", tmp_path / "a" / "x.png", tmp_path / "b" / "x.measurement.png", "--operator", "sr2",
                 "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", tmp_path / "a", "--overwrite")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert any("x.measurement.json, which this run reads" in line for line in errors(result)), result.output
    assert (tmp_path / "a" / "x.measurement.json").read_bytes() == sidecar


def test_an_original_beside_its_measurement_is_a_plain_image_and_outputs_never_go_into_an_input_folder(tmp_path):
    """degrade photos -o photos put x.png and x.measurement.json beside the original x.jpg: restore then tied x.jpg to
    that sidecar by its stem and told the user to delete it (x.png's exact measurement); and a rerun of a folder
    restored into itself read its own outputs as new inputs (x.png restored again into x_png.png)."""
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    photos.mkdir()
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(photos / "x.jpg")
    for command, extra in (("degrade", ["--operator", "sr2"]), ("restore", FAST)):
        refused = run(command, photos, *extra, "-o", photos)
        assert refused.exit_code == 2 and f"-o {photos} is the input folder" in refused.output, refused.output
    assert sorted(p.name for p in photos.iterdir()) == ["x.jpg"]
    # the same trio made by hand (degrade of another folder, copied beside the original)
    assert run("degrade", photos / "x.jpg", "--operator", "sr2", "--noise", "0.01", "-o", tmp_path / "m").exit_code == 0
    for name in ("x.png", "x.measurement.json", "x.measurement.npz"):
        (photos / name).write_bytes((tmp_path / "m" / name).read_bytes())
    from pnprgm.measurement import has_sidecar

    assert has_sidecar(photos / "x.png") and not has_sidecar(photos / "x.jpg")
    result = run("restore", photos, "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (error,) = errors(result)
    assert "x.jpg: no measurement sidecar beside this image" in error and "delete" not in error
    assert (tmp_path / "out" / "x_png.png").is_file()  # the measurement still restores from its sidecar


def test_a_size_beyond_any_image_is_one_line_naming_size(photos, tmp_path):
    """--size 999999999999x999999999999 was "too large or too deeply nested (RuntimeError)" for each image."""
    result = run("restore", photos / "one.png", *FAST, "--size", "999999999999x999999999999", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--size sides are at most 65536 pixels" in result.output, result.output
    assert "RuntimeError" not in result.output and not (tmp_path / "out").exists()


def test_a_model_file_that_is_no_model_is_one_error_for_the_batch(photos, tmp_path):
    """--model photo.png was refused once per image, after the batch had started."""
    result = run("restore", photos, "--operator", "sr2", "--iters", "1", "-q", "--model", photos / "one.png", "-o",
                 tmp_path / "out")
    assert result.exit_code == 2 and result.output.count("is not a pnprgm or official model file") == 1, result.output
    assert not any((tmp_path / "out").glob("*"))  # nothing written


def test_an_input_named_like_a_std_map_never_replaces_another_restorations_std_map(photos, tmp_path):
    """restore x.png --samples 2 wrote out/x_std.png; restoring an input named x_std.png into out then said that file
    "was not written by pnprgm restore", and --overwrite replaced it, leaving x.json's std_map hash stale."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "x.png").write_bytes((photos / "one.png").read_bytes())
    (folder / "x_std.png").write_bytes((photos / "two.png").read_bytes())
    args = ("--operator", "sr2", "--denoiser", "tikhonov", "--iters", "2", "-q", "-o", tmp_path / "out")
    assert run("restore", folder / "x.png", "--samples", "2", *args).exit_code == 0
    std = (tmp_path / "out" / "x_std.png").read_bytes()
    for more in ((), ("--overwrite",)):
        result = run("restore", folder / "x_std.png", *args, *more)
        assert result.exit_code == 1 and "x_std.png is the std map of the restoration x.json records" in result.output, \
            result.output
    assert (tmp_path / "out" / "x_std.png").read_bytes() == std
    again = run("restore", folder / "x.png", "--samples", "2", *args)  # its own std map: skipped as restored
    assert again.exit_code == 0 and "already restored" in again.output, again.output


def test_an_output_that_is_an_input_by_another_name_is_never_replaced(photos, tmp_path):
    """Paths were compared by name only: a hard link (or Photo.PNG for photo.png on a case-blind disk, the same file
    under another spelling) in -o was replaced with --overwrite."""
    out = tmp_path / "out"
    out.mkdir()
    os.link(photos / "one.png", out / "one.png")  # -o holds the input itself under the output's name
    before = (photos / "one.png").read_bytes()
    result = run("restore", photos / "one.png", *FAST, "-o", out, "--overwrite")
    assert result.exit_code == 1 and "which this run reads" in result.output, result.output
    assert (photos / "one.png").read_bytes() == before
