"""pnprgm.figures: grids of captioned images and line charts, written atomically with a stamp the tools recognise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnprgm import figures


def _pixels_of(image: torch.Tensor, colour, tolerance: int = 2) -> int:
    rgb = (image * 255).round().permute(1, 2, 0).numpy()
    return int((np.abs(rgb - np.array(colour)).max(-1) <= tolerance).sum())


def test_chart_draws_each_series_in_its_own_colour_within_its_size():
    chart = figures.chart({"a": [1.0, 2.0, 3.0], "b": [3.0, 2.0, 1.0], "c": [2.0, float("nan"), 2.5]},
                          x_label="iteration", y_label="PSNR (dB)", size=(120, 180))
    assert chart.shape == (3, 120, 180) and 0 <= float(chart.min()) and float(chart.max()) <= 1
    assert (0, 0, 0) not in figures.COLOURS[:3]  # the axes are black: a series must not look like one
    for colour in figures.COLOURS[:3]:
        assert _pixels_of(chart, colour) > 20, colour  # a line and a legend entry each
    assert _pixels_of(chart, figures.COLOURS[3]) == 0  # no fourth series, no fourth colour


def test_chart_of_nothing_finite_is_an_error_and_a_flat_series_still_draws():
    with pytest.raises(ValueError, match="no finite value"):
        figures.chart({"a": [float("nan"), float("inf")]}, x_label="x", y_label="y")
    flat = figures.chart({"a": [2.0, 2.0]}, x_label="x", y_label="y", size=(64, 96))
    assert _pixels_of(flat, figures.COLOURS[0]) > 10


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_write_stamps_the_figure_and_shows_every_cell(tmp_path, suffix):
    from PIL import Image

    red, gray = torch.zeros(3, 40, 40), torch.full((1, 20, 30), 0.5)
    red[0] = 1
    section = figures.Section("a title", ["red", "gray", "missing"], [[(red, "one"), (gray, "two"), (None, "")]])
    path = figures.write(tmp_path / f"figure{suffix}", [section], stamp="pnprgm test")
    assert figures.stamp_of(path) == "pnprgm test" and not list(tmp_path.glob("*.tmp*"))
    with Image.open(path) as image:
        drawn = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    tolerance = 2 if suffix == ".png" else 24  # JPEG (4:2:0, quality 90) shifts a saturated red
    assert _pixels_of(drawn, (255, 0, 0), tolerance) > 0.8 * 40 * 40  # the red image at full size
    assert _pixels_of(drawn, (128, 128, 128), tolerance) > 0.8 * 20 * 30  # the gray one shown in gray


def test_stamp_of_a_file_that_is_not_an_image_is_none(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    assert figures.stamp_of(tmp_path / "notes.png") is None and figures.stamp_of(tmp_path / "absent.png") is None


def test_display_measurement_shows_a_small_or_gray_measurement_at_the_images_size():
    y = torch.rand(1, 8, 8)
    shown = figures.display_measurement(y, (3, 32, 32))
    assert shown.shape == (3, 32, 32) and torch.equal(shown[0, :4, :4], y[0, :1, :1].expand(4, 4))
    assert torch.equal(shown[0], shown[2])


def test_accented_names_are_drawn_not_shown_as_boxes():
    """Photo names and captions are drawn with a font that has accented letters (Pillow's own shows café as caf□)."""
    from PIL import Image, ImageDraw

    if figures._font_file() is None:
        pytest.skip("no DejaVu Sans here (matplotlib or the system's fonts)")

    def drawn(text):
        image = Image.new("L", (40, 30), 0)
        ImageDraw.Draw(image).text((4, 4), text, fill=255, font=figures._font(14))
        return np.asarray(image)

    assert not np.array_equal(drawn("é"), drawn("\ue000"))  # a private-use code point: the missing-glyph box
    assert not np.array_equal(drawn("é"), drawn("e"))
