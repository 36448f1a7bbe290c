"""Users' own photos (no sidecar): blur boundaries without a frame, operators sized from the actual image."""
from __future__ import annotations

import json

import deepinv.physics.functional as dF
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

from pnprgm import io, metrics, operators
from pnprgm.cli.main import app
from pnprgm.restore_job import RestoreJob, run_restore_job

pytestmark = pytest.mark.usefixtures("one_thread")

N, BAND, SIGMA = 64, 6, 0.01


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) over the pixels where ``mask`` is true, by pnprgm's metric: those pixels form one 1 x N image."""
    return float(metrics.psnr(a[..., mask].unsqueeze(-2), b[..., mask].unsqueeze(-2)).mean())


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    """A 100x100 region of skimage's astronaut; the photo is its central 64x64 (rows 150.., cols 200..)."""
    image = torch.from_numpy(data.astronaut()[132:232, 182:282].copy()).permute(2, 0, 1).double() / 255
    return image[None]


def blurred_photo(scene: torch.Tensor, model: str) -> torch.Tensor:
    """The 64x64 photo blurred (Gaussian, sigma 2, 13x13) under a boundary model, plus seeded noise.

    ``scene``: the real world, the blur of the larger scene cropped to the photo; the others blur the 64x64
    photo itself with periodic, replicated or mirrored edges (deepinv's padded convolution)."""
    kernel = torch.from_numpy(operators.kernels.gaussian_kernel(2.0, 13))[None, None]
    margin = (scene.shape[-1] - N) // 2
    photo = scene[..., margin:margin + N, margin:margin + N]
    if model == "scene":
        y = dF.conv2d_fft(scene, kernel, padding="valid")[..., margin - 6:margin - 6 + N, margin - 6:margin - 6 + N]
    else:
        y = dF.conv2d_fft(photo, kernel, padding=model)
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=y.dtype)
    return (y + SIGMA * noise).float().clamp(0, 1)[0], photo.float()


def border_and_interior(x: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    band = torch.ones(x.shape[-2:], dtype=torch.bool)
    band[BAND:-BAND, BAND:-BAND] = False
    return masked_psnr(x, truth, band), masked_psnr(x, truth, ~band)


def restore_photo(tmp_path, y: torch.Tensor, spec: str, name: str) -> torch.Tensor:
    path = tmp_path / f"{name}.png"
    io.write_image(path, y)
    report = run_restore_job(RestoreJob(inputs=(str(path),), outdir=str(tmp_path / f"out_{name}"), operator=spec,
                                        noise_sigma=SIGMA), progress=False)
    assert report.ok, report.errors
    return io.read_image(tmp_path / f"out_{name}" / f"{name}.png")[None]


@pytest.fixture(scope="module")
def band_as_interior(scene, tmp_path_factory) -> float:
    """PSNR of the photo's outer band when those pixels lie inside a larger photo (the 88x88 valid part of the
    scene's blur): what the restorer achieves there without any boundary. It is 2 dB below the interior's on this
    crop whatever the model (circular data restored as circular: 32.4 vs 34.5 dB), so the frame is measured
    against it rather than against the interior."""
    kernel = torch.from_numpy(operators.kernels.gaussian_kernel(2.0, 13))[None, None]
    y = dF.conv2d_fft(scene, kernel, padding="valid")
    y = (y + SIGMA * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)).float().clamp(0, 1)
    x = restore_photo(tmp_path_factory.mktemp("large"), y[0], "blur:gaussian,sigma=2", "large")
    margin = (y.shape[-1] - N) // 2
    margin_truth = (scene.shape[-1] - N) // 2
    truth = scene[..., margin_truth:margin_truth + N, margin_truth:margin_truth + N].float()
    return border_and_interior(x[..., margin:margin + N, margin:margin + N], truth)[0]


@pytest.mark.parametrize("model", ["scene", "replicate"])
def test_a_blurred_photo_restores_without_a_frame(scene, band_as_interior, tmp_path, model):
    """The default for a photo (no sidecar) has no frame: its outer 6-px band within 1 dB of the same pixels
    restored as interior ('scene', the real world: 33.3 vs 33.4 dB; interior 34.5 dB; circular: 15.6 dB)."""
    y, truth = blurred_photo(scene, model)
    x = restore_photo(tmp_path, y, "blur:gaussian,sigma=2", model)
    assert x.shape == truth.shape  # the photo's size, not the larger scene restored
    border, interior = border_and_interior(x, truth)
    assert border > band_as_interior - 1.0, f"{model}: border {border:.2f} dB vs {band_as_interior:.2f} as interior"
    assert border > interior - 2.0, f"{model}: border {border:.2f} dB, interior {interior:.2f} dB"


def test_circular_boundaries_stay_an_explicit_option_and_frame_a_real_photo(scene, tmp_path):
    y, truth = blurred_photo(scene, "scene")
    x = restore_photo(tmp_path, y, "blur:gaussian,sigma=2,boundary=circular", "photo")
    record = json.loads((tmp_path / "out_photo" / "photo.json").read_text())
    assert "boundary=circular" in record["operator"] and record["field_of_view"] is None
    border, interior = border_and_interior(x, truth)
    assert border < interior - 5.0  # the frame the default avoids (measured 15.6 vs 27.9 dB)


def test_the_record_says_which_part_of_the_scene_was_written(scene, tmp_path):
    y, _ = blurred_photo(scene, "scene")
    restore_photo(tmp_path, y, "blur:gaussian,sigma=2", "photo")
    record = json.loads((tmp_path / "out_photo" / "photo.json").read_text())
    assert "boundary=valid" in record["operator"]
    assert record["field_of_view"] == {"scene_shape": [3, N + 12, N + 12], "rows": [6, N + 6], "cols": [6, N + 6]}
    assert record["image_shape"] == [3, N, N]


# ---- operators sized from the actual image ---------------------------------------------------------------------
FAST = ("--denoiser", "tikhonov", "--iters", "1", "-q")


@pytest.mark.parametrize("size", [(40, 52), (96, 96), (17, 23)])
def test_a_mask_file_fits_the_image_it_was_made_for(tmp_path, size):
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(((rng.random(size) > 0.3) * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    io.write_image(tmp_path / "holes.png", torch.rand((3, *size), generator=torch.Generator().manual_seed(0)))
    result = run("restore", tmp_path / "holes.png", "--operator", f"mask:file={tmp_path / 'mask.png'}", *FAST,
                 "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert tuple(io.read_image(tmp_path / "out" / "holes.png").shape) == (3, *size)


def test_a_mask_file_of_another_size_says_so(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((30, 40), 255, dtype=np.uint8)).save(tmp_path / "mask.png")
    io.write_image(tmp_path / "holes.png", torch.rand((3, 50, 60)))
    result = run("restore", tmp_path / "holes.png", "--operator", f"mask:file={tmp_path / 'mask.png'}", *FAST,
                 "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "is 30x40 but the image is 50x60" in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("boundary, out", [("circular", (41, 37)), ("valid", (41, 37))])
def test_a_kernel_file_blurs_an_image_of_any_size(tmp_path, boundary, out):
    np.save(tmp_path / "kernel.npy", np.ones((6, 5)))
    io.write_image(tmp_path / "blurred.png", torch.rand((1, *out), generator=torch.Generator().manual_seed(0)))
    spec = f"blur:file={tmp_path / 'kernel.npy'},boundary={boundary}"
    result = run("restore", tmp_path / "blurred.png", "--operator", spec, *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "blurred.json").read_text())
    assert record["image_shape"] == [1, *out]  # valid: the 46x41 scene restored, then cropped to the photo
    if boundary == "valid":
        assert record["field_of_view"]["scene_shape"] == [1, out[0] + 5, out[1] + 4]


def test_a_kernel_file_larger_than_the_image_says_so(tmp_path):
    np.save(tmp_path / "kernel.npy", np.ones((30, 30)))
    io.write_image(tmp_path / "blurred.png", torch.rand((3, 20, 24)))
    result = run("restore", tmp_path / "blurred.png", "--operator", f"blur:file={tmp_path / 'kernel.npy'},boundary=circular",
                 *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "is 30x30, larger than the 20x24 image" in result.output, result.output


def test_size_that_does_not_match_the_measurement_names_both(tmp_path):
    io.write_image(tmp_path / "small.png", torch.rand((3, 16, 16)))
    result = run("restore", tmp_path / "small.png", "--operator", "sr4", "--size", "60x64", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "maps a 60x64 image to 15x16, not to this 16x16 image" in result.output, result.output


# ---- memory ------------------------------------------------------------------------------------------------------
def test_a_job_that_cannot_fit_in_memory_is_refused_before_computing(tmp_path, monkeypatch):
    """sr4 of a 64x64 input (a 256x256 image): about 144 MB whole, 21 MB with --tile 64."""
    from pnprgm import restoration, restore_job

    monkeypatch.setattr(restore_job, "available_bytes", lambda device: 30 * 10**6)
    monkeypatch.setattr(restoration, "restore_samples", lambda *a, **k: pytest.fail("computed a job that cannot fit"))
    io.write_image(tmp_path / "small.png", torch.rand((3, 64, 64)))
    result = run("restore", tmp_path / "small.png", "--operator", "sr4", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "the 256x256 image needs about 144 MB but cpu has 30 MB free; pass --tile 64 (about 21 MB)" in lines[0], result.output
    monkeypatch.setattr(restore_job, "available_bytes", lambda device: 10 * 10**6)
    result = run("restore", tmp_path / "small.png", "--operator", "sr4", "--tile", "64", *FAST, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "needs about 21 MB with --tile 64 but cpu has 10 MB free, and about 15 MB even with --tile 32" in result.output


def test_a_huge_job_is_refused_even_tiled_and_a_fitting_one_passes(monkeypatch):
    from pnprgm import restore_job
    from pnprgm.errors import UserError

    job = RestoreJob(inputs=("x.png",), outdir="out")
    monkeypatch.setattr(restore_job, "available_bytes", lambda device: 12 * 10**9)
    with pytest.raises(UserError, match=r"16000x12000 image needs about .* and about 38\.4 GB even with --tile 32"):
        restore_job.check_memory((3, 16000, 12000), job)  # sr4 of a 4000x3000 photo: the solver's buffers alone
    with pytest.raises(UserError, match=r"pass --tile 512"):
        restore_job.check_memory((3, 2400, 2400), job)
    restore_job.check_memory((3, 1600, 1200), job)


# ---- threads -----------------------------------------------------------------------------------------------------
def test_default_threads_leave_busy_cores_alone(monkeypatch):
    from pnprgm import device

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "physical_cores", lambda: 2)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (2.1, 2.0, 2.0))  # two benchmarks already running
    assert device.default_threads() == 1
    monkeypatch.setattr(device.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert device.default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert device.default_threads() == 3
    assert 1 <= device.physical_cores() <= (device.os.cpu_count() or 1)


@pytest.mark.parametrize("command", ["restore", "benchmark"])
def test_threads_option_sets_torch_threads(tmp_path, monkeypatch, command):
    from pnprgm import device

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.setattr(device, "default_threads", lambda: 5)  # so that an ignored --threads would show
    io.write_image(tmp_path / "small.png", torch.rand((3, 16, 16)))
    if command == "restore":
        result = run("restore", tmp_path / "small.png", "--operator", "identity", *FAST, "--threads", "3", "-o", tmp_path / "out")
    else:
        result = run("benchmark", "--threads", "3", "--list")
    assert result.exit_code == 0, result.output
    assert seen[:1] == [3]
    assert run(command, "--threads", "0", *(["x.png", "-o", tmp_path / "o"] if command == "restore" else ["--list"])).exit_code == 2


# -- 16-bit colour: kept on read, written for 16-bit input -------------------------------------------------------

def _colour16(seed: int = 0, shape=(12, 10, 3)) -> np.ndarray:
    """uint16 colour values whose low bytes matter (an 8-bit reading loses them)."""
    array = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    assert len(np.unique(array & 0xFF)) > min(100, array.size // 2)
    return array


def _decode_png(path) -> np.ndarray:
    """An independent decoder (torchvision's libpng) as (H, W, C) at the file's own depth."""
    import torchvision.io as tvio

    return tvio.decode_png(tvio.read_file(str(path)), mode=tvio.ImageReadMode.UNCHANGED).numpy().transpose(1, 2, 0)


def test_write_png16_round_trips_through_libpng(tmp_path):
    array = _colour16(1, (33, 17, 3))
    io.write_png16(tmp_path / "a.png", array)
    decoded = _decode_png(tmp_path / "a.png")
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, array)
    assert io.image_bits(tmp_path / "a.png") == 16


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_is_read_with_16_bits(tmp_path, suffix):
    import tifffile

    array = _colour16(2)
    path = tmp_path / f"deep{suffix}"
    if suffix == ".png":
        io.write_png16(path, array)
    else:
        tifffile.imwrite(path, array, photometric="rgb")
    image = io.read_image(path)
    assert image.shape == (3, 12, 10) and io.image_bits(path) == 16
    assert np.array_equal(np.round(image.numpy().transpose(1, 2, 0) * 65535).astype(np.uint16), array)


def test_16bit_tiff_writer_keeps_16_bits(tmp_path):
    import tifffile

    array = _colour16(3)
    io.write_image(tmp_path / "out.tif", torch.from_numpy(array.transpose(2, 0, 1) / 65535.0), bits=16)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), array)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_restore_writes_16_bits_for_16bit_colour_input(tmp_path, suffix):
    """Identity operator, no noise, one rgm-drs step (its data step returns y to within 0.004 of a 16-bit level):
    every 16-bit value, low byte included, comes back in a 16-bit PNG."""
    import tifffile

    array = _colour16(4)
    source = tmp_path / "in" / f"deep{suffix}"
    source.parent.mkdir()
    if suffix == ".png":
        io.write_png16(source, array)
    else:
        tifffile.imwrite(source, array, photometric="rgb")
    result = CliRunner().invoke(app, ["restore", str(source), "--operator", "identity", "--denoiser", "tikhonov",
                                      "--solver", "rgm-drs", "--iters", "1", "--noise", "0", "-q", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = _decode_png(tmp_path / "out" / "deep.png")
    assert written.dtype == np.uint16 and np.array_equal(written, array)
    assert json.loads((tmp_path / "out" / "deep.json").read_text())["bits"] == 16


def test_restore_keeps_8_bits_for_8bit_input(tmp_path):
    source = tmp_path / "in" / "plain.png"
    io.write_image(source, torch.rand((3, 12, 10), generator=torch.Generator().manual_seed(5)))
    result = CliRunner().invoke(app, ["restore", str(source), "--operator", "identity", "--denoiser", "tikhonov",
                                      "--solver", "rgm-drs", "--iters", "1", "--noise", "0", "-q", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = _decode_png(tmp_path / "out" / "plain.png")
    assert written.dtype == np.uint8 and np.array_equal(written, np.asarray(Image.open(source)))


def test_restore_writes_16_bits_for_16bit_gray_input(tmp_path):
    array = _colour16(6, (12, 10))
    source = tmp_path / "in" / "gray.png"
    source.parent.mkdir()
    Image.fromarray(array).save(source)
    result = CliRunner().invoke(app, ["restore", str(source), "--operator", "identity", "--denoiser", "tikhonov",
                                      "--solver", "rgm-drs", "--iters", "1", "--noise", "0", "-q", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = _decode_png(tmp_path / "out" / "gray.png")
    assert written.dtype == np.uint16 and np.array_equal(written[..., 0], array)


def test_degrade_then_restore_keeps_16_bits(tmp_path):
    """A 16-bit colour photo through degrade (its measurement PNG 16-bit) and restore (a 16-bit PNG)."""
    array = _colour16(7, (16, 16, 3))
    io.write_png16(tmp_path / "deep.png", array)
    result = CliRunner().invoke(app, ["degrade", str(tmp_path / "deep.png"), "--operator", "identity", "--noise", "0",
                                      "-o", str(tmp_path / "meas")])
    assert result.exit_code == 0, result.output
    measured = _decode_png(tmp_path / "meas" / "deep.png")
    assert measured.dtype == np.uint16 and np.array_equal(measured, array)
    result = CliRunner().invoke(app, ["restore", str(tmp_path / "meas"), "--denoiser", "tikhonov", "--solver", "rgm-drs",
                                      "--iters", "1", "-q", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = _decode_png(tmp_path / "out" / "deep.png")
    assert written.dtype == np.uint16 and np.array_equal(written, array)


@pytest.mark.parametrize("layout", ["gray", "rgb", "planar", "pillow-gray"])
def test_float_tiffs_in_unit_range_are_read_at_their_values(tmp_path, layout):
    """Float TIFFs hold [0, 1] intensities: read exactly, gray staying gray, colour (which Pillow cannot open) read
    through tifffile, and restored into 16-bit output."""
    import tifffile

    rng = np.random.default_rng(5)
    gray, colour = rng.random((12, 10)).astype(np.float32), rng.random((12, 10, 3)).astype(np.float32)
    path = tmp_path / "float.tif"
    if layout == "gray":
        tifffile.imwrite(path, gray)
    elif layout == "rgb":
        tifffile.imwrite(path, colour, photometric="rgb")
    elif layout == "planar":
        tifffile.imwrite(path, colour.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    else:
        Image.fromarray(gray, mode="F").save(path)
    expected = gray[None] if layout in ("gray", "pillow-gray") else colour.transpose(2, 0, 1)
    image = io.read_image(path)
    assert image.shape == expected.shape and np.allclose(image.numpy(), expected, atol=1e-7)
    assert io.image_bits(path) == 16


@pytest.mark.parametrize("kind, message", [
    ("float-255", "floating-point samples from"), ("nan", "NaN or infinite samples"),
    ("uint32", "32-bit integer samples"), ("pillow-int32", "32-bit signed integer samples"),
    ("int16", "16-bit signed integer samples"),  # was "check that the file is complete"
])
def test_tiffs_of_unknown_scale_are_refused_in_one_line(tmp_path, kind, message):
    """A float TIFF outside [0, 1] or 32-bit integers: their scale is not in the file, so they are refused (they were
    read nearly black), and restore goes on with the other inputs."""
    import tifffile

    values = np.random.default_rng(6).random((12, 10))
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "odd.tif"
    if kind == "float-255":
        tifffile.imwrite(path, (values * 255).astype(np.float32))
    elif kind == "nan":
        tifffile.imwrite(path, np.where(values > 0.5, np.nan, values).astype(np.float32))
    elif kind == "uint32":
        tifffile.imwrite(path, (values * 4e9).astype(np.uint32))
    elif kind == "int16":
        tifffile.imwrite(path, (values * 30000).astype(np.int16))
    else:
        Image.fromarray((values * 1000).astype(np.int32), mode="I").save(path)
    with pytest.raises(io.UserError, match=message):
        io.read_image(path)
    io.write_image(folder / "fine.png", torch.from_numpy(values[None]).float())
    result = run("restore", folder, "--operator", "blur:gaussian,sigma=1", "--denoiser", "tikhonov", "--iters", "1",
                 "-q", "-o", tmp_path / "out")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert (tmp_path / "out" / "fine.png").is_file() and not (tmp_path / "out" / "odd.png").exists()


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png"])
def test_an_image_of_several_frames_reads_the_first_and_says_so(tmp_path, suffix):
    """An animated GIF/PNG or a multi-page TIFF used to be cut to its first frame without a word."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    path = tmp_path / f"frames{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="frames.*: 3 frames .* only the first is read"):
        image = io.read_image(path)
    assert image.shape == (3, 16, 16)
    single = tmp_path / f"single{suffix}"
    frames[0].save(single)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.read_image(single)


def test_a_float_tiff_of_several_pages_reads_the_first_and_says_so(tmp_path):
    import tifffile

    pages = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "pages.tif", pages)
    with pytest.warns(UserWarning, match="2 frames"):
        image = io.read_image(tmp_path / "pages.tif")
    np.testing.assert_allclose(image[0].numpy(), pages[0], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_tiff_with_an_orientation_tag_is_read_upright_and_intact(tmp_path, dtype, channels, orientation):
    """Pillow garbled gray and RGBA TIFFs with an Orientation tag and turned only 8-bit RGB ones itself."""
    import warnings

    import tifffile

    top = np.iinfo(dtype).max
    array = np.random.default_rng(0).integers(0, top, (20, 30, channels) if channels > 1 else (20, 30)).astype(dtype)
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, array, photometric="rgb" if channels > 1 else "minisblack",
                     extratags=[(274, "H", 1, orientation, False)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the alpha channel's warning
        got = io.read_image(path).numpy()
    hwc = (array if channels > 1 else array[..., None])[..., :3].astype(np.float64) / top
    want = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}[orientation](hwc)
    assert got.shape == want.transpose(2, 0, 1).shape
    assert np.abs(got - want.transpose(2, 0, 1)).max() < 1e-6


@pytest.mark.parametrize("bits", [8, 16])
def test_restore_and_degrade_keep_the_input_colour_profile(tmp_path, bits):
    """A Display-P3 photo restored without its profile is shown as sRGB (muted colours); a gray measurement of a
    colour photo (colorization's input) gets no RGB profile."""
    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    array = (np.random.default_rng(0).random((24, 24, 3)) * (255 if bits == 8 else 65535))
    photo = tmp_path / "p3.png"
    if bits == 8:
        Image.fromarray(array.astype(np.uint8)).save(photo, icc_profile=icc)
    else:
        io.write_png16(photo, array.astype(np.uint16), icc=icc)
    assert io.icc_profile(photo) == icc
    for command, args in (("restore", ("--operator", "sr2", *FAST)), ("degrade", ("-p", "sr2"))):
        result = run(command, photo, *args, "-o", tmp_path / command)
        assert result.exit_code == 0, result.output
        with Image.open(tmp_path / command / "p3.png") as written:
            assert written.info.get("icc_profile") == icc
    assert run("degrade", photo, "-p", "gray", "-o", tmp_path / "gray").exit_code == 0
    assert io.icc_profile(tmp_path / "gray" / "p3.png") is None


def test_a_tiff_pillow_has_no_mode_for_is_read_or_named_as_a_layout_not_as_damage(tmp_path):
    """A 16-bit gray TIFF with alpha (the same samples read fine as PNG) and a 5-channel TIFF were both "not a
    readable image ... check that the file is complete": whole files, wrongly called damaged."""
    import tifffile

    from pnprgm.errors import UserError

    rng = np.random.default_rng(0)
    gray_alpha = (rng.random((8, 8, 2)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "la16.tif", gray_alpha, photometric="minisblack", extrasamples=["unassalpha"])
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        image = io.read_image(tmp_path / "la16.tif")
    assert image.shape == (1, 8, 8)
    assert np.allclose(image[0].numpy(), gray_alpha[..., 0] / 65535, atol=1e-7)
    tifffile.imwrite(tmp_path / "five.tif", (rng.random((8, 8, 5)) * 65535).astype(np.uint16), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(UserError, match=r"a TIFF of 5 sample\(s\) of 16 bits per pixel, a layout this tool does not "
                                        r"read; save it as 8- or 16-bit gray or RGB"):
        io.read_image(tmp_path / "five.tif")
    lab = (rng.random((8, 8, 4)) * 65535).astype(np.uint16)  # CIELab with alpha: not to be read as RGB
    tifffile.imwrite(tmp_path / "lab.tif", lab, photometric="cielab", extrasamples=["unassalpha"])
    with pytest.raises(UserError, match="in colour space CIELAB, a layout this tool does not read"):
        io.read_image(tmp_path / "lab.tif")
    from PIL import Image

    with pytest.MonkeyPatch.context() as patch:  # the decompression bomb guard holds on this path too
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
        with pytest.raises(UserError, match="64 pixels is more than this tool reads"):
            io.read_image(tmp_path / "la16.tif")
    (tmp_path / "cut.tif").write_bytes((tmp_path / "five.tif").read_bytes()[:300])
    with pytest.raises(UserError, match="check that the file is complete"):
        io.read_image(tmp_path / "cut.tif")


def test_the_decompression_bomb_guard_words_every_reader_alike(tmp_path):
    """A float TIFF (tifffile's path) was read however large, and the PNG path worded its refusal otherwise."""
    import tifffile
    from PIL import Image

    from pnprgm.errors import UserError

    tifffile.imwrite(tmp_path / "float.tif", np.full((8, 8, 3), 0.5, dtype=np.float32), photometric="rgb")
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    assert io.read_image(tmp_path / "float.tif").shape == (3, 8, 8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
        for name in ("float.tif", "small.png"):
            with pytest.raises(UserError, match=rf"cannot read .*{name}: an image of 64 pixels is more than this tool "
                                                r"reads \(a decompression bomb guard\); downscale or crop it first\."):
                io.read_image(tmp_path / name)


def test_one_rule_for_gray_content_and_one_luma():
    """Three rules told gray from colour and the BT.601 weights were written twice."""
    from pnprgm.operators.grayscale import Rec601Gray
    from pnprgm.training.data import convert_channels

    gray = torch.rand(1, 8, 8)
    rgb = gray.expand(3, -1, -1).clone()
    assert io.looks_gray(gray) and io.looks_gray(rgb) and io.looks_gray(rgb, tolerance=0)
    rgb[0, 0, 0] += 3 / 255  # a JPEG's rounding: gray content for restore, colour for the exact benchmark rule
    assert io.looks_gray(rgb) and not io.looks_gray(rgb, tolerance=0)
    rgb[0, 0, 0] += 2 / 255
    assert not io.looks_gray(rgb)
    colour = torch.rand(3, 4, 4, dtype=torch.float64)
    expected = sum(w * colour[i] for i, w in enumerate(Rec601Gray.weights))
    torch.testing.assert_close(convert_channels(colour, 1)[0], expected)


def test_first_line_of_an_error_with_an_empty_message_is_its_type():
    """`str(err).splitlines()[0]` raised IndexError for an exception with no message (a traceback in place of the
    one-line error)."""
    from pnprgm.errors import first_line

    assert first_line(OSError()) == "OSError"
    assert first_line(ValueError("bad\nmore")) == "bad"
    assert first_line(KeyError("x"), named=True) == "KeyError: 'x'"
    assert first_line(ValueError("a" * 500), 10) == "a" * 10
    assert first_line(ValueError("   "), named=True) == "ValueError"


def test_centre_crop_is_the_middle_window_with_the_odd_margin_at_the_bottom_right():
    image = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 5, 6)
    assert torch.equal(io.centre_crop(image, 2), image[:, 1:3, 2:4])
    assert torch.equal(io.centre_crop(image, 4, 3), image[:, 0:4, 1:4])
    assert io.centre_crop(image[None], 5, 6).shape == (1, 1, 5, 6)
    with pytest.raises(ValueError):
        io.centre_crop(image, 6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_white_is_zero_gray_tiff_reads_as_its_viewer_shows_it(tmp_path, dtype, orientation):
    """A 16-bit white-is-zero TIFF (scanners, some microscopes) was read as its negative, and its Orientation tag was
    ignored (Pillow's I;16 mode drops it): 0 is white in such a file."""
    import tifffile

    full = np.iinfo(dtype).max
    stored = np.random.default_rng(1).integers(0, full + 1, (20, 30), dtype=np.int64).astype(dtype)
    tags = [(274, "H", 1, orientation, True)] if orientation != 1 else []
    tifffile.imwrite(tmp_path / "w.tif", stored, photometric="miniswhite", extratags=tags)
    image = io.read_image(tmp_path / "w.tif")
    expected = 1.0 - torch.from_numpy(stored.astype(np.float64) / full).float()[None]
    if orientation == 6:  # rotate 90 degrees clockwise to view
        expected = torch.rot90(expected, -1, dims=(1, 2))
    assert image.shape == expected.shape
    torch.testing.assert_close(image, expected, atol=1e-6, rtol=0)


def test_a_16_bit_pgm_keeps_its_scale_and_its_16_bits_whatever_its_content(tmp_path):
    """A dark 16-bit PGM (every sample <= 255) was read at 255 full scale, 257 times too bright, and written back at
    8 bits; its PNG twin was read right."""
    stored = (np.arange(64 * 64).reshape(64, 64) % 200).astype(">u2")
    (tmp_path / "dark.pgm").write_bytes(b"P5\n64 64\n65535\n" + stored.tobytes())
    Image.fromarray(stored.astype(np.uint16)).save(tmp_path / "dark.png")
    pgm, png = io.read_image(tmp_path / "dark.pgm"), io.read_image(tmp_path / "dark.png")
    torch.testing.assert_close(pgm, png, atol=0, rtol=0)
    assert float(pgm.max()) == pytest.approx(199 / 65535)
    assert io.image_bits(tmp_path / "dark.pgm") == 16


def test_a_job_too_large_for_its_samples_names_the_samples_that_fit(monkeypatch):
    """--samples 1000000000 was refused with "restore a smaller crop or a downscaled image": the kept samples, not
    the image, were what did not fit."""
    from pnprgm import restore_job
    from pnprgm.errors import UserError

    monkeypatch.setattr(restore_job, "available_bytes", lambda device: 12 * 10**9)
    job = RestoreJob(inputs=("x.png",), outdir="out", samples=10**9)
    per = restore_job.estimate_bytes((3, 1600, 1200), None, 2) - restore_job.estimate_bytes((3, 1600, 1200), None, 1)
    fits = 1 + (12 * 10**9 - restore_job.estimate_bytes((3, 1600, 1200), None, 1)) // per
    with pytest.raises(UserError, match=rf"and --samples 1000000000 but cpu has .*; pass --samples {fits} or fewer"):
        restore_job.check_memory((3, 1600, 1200), job)
    assert restore_job.estimate_bytes((3, 1600, 1200), None, fits) <= 12 * 10**9
    assert restore_job.estimate_bytes((3, 1600, 1200), None, fits + 1) > 12 * 10**9
    restore_job.check_memory((3, 1600, 1200), RestoreJob(inputs=("x.png",), outdir="out", samples=fits))
