"""Captioned image grids, composed with Pillow alone (no plotting library): the benchmark's figure and the
examples gallery draw with this.

A figure is a list of :class:`Section`: a title, column names and rows of ``(image, caption)`` cells; an image is
a (C, H, W) tensor in [0, 1] (gray or RGB, shown at most :data:`CELL` pixels on its longer side) or None (a grey
"not shown" cell).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pnprgm import io

CELL = 256  # largest side of one figure cell (bigger images are shown reduced)

Cell = tuple[Optional[torch.Tensor], str]


@dataclass(frozen=True)
class Section:
    """A titled block of a figure: a header line of column names, then one line of captioned images per row."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]


def display_measurement(y: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A measurement (C', H', W') shown at the image's (C, H, W): nearest upsampling (SR), gray repeated."""
    channels, height, width = shape
    shown = y.detach().float()
    if shown.shape[-2:] != (height, width):
        shown = F.interpolate(shown[None], size=(height, width), mode="nearest")[0]
    if shown.shape[0] != channels:
        shown = shown.mean(0, keepdim=True).expand(channels, -1, -1)
    return shown.clamp(0, 1)


def draw(sections: Sequence[Section]):
    """The figure as a Pillow RGB image: every cell as large as the largest image (reduced to :data:`CELL`), at
    least 96 pixels wide so that captions stay readable."""
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    images = [image for section in sections for row in section.rows for image, _ in row if image is not None]
    cell_h = max([_cell_size(image)[0] for image in images] or [64])
    cell_w = max(max([_cell_size(image)[1] for image in images] or [64]), 96)
    columns = max([len(section.columns) for section in sections] + [len(row) for s in sections for row in s.rows] + [1])
    pad, title_h, header_h, caption_h = 6, 26, 20, 18
    width = pad + columns * (cell_w + pad)
    height = pad + sum(title_h + header_h + len(s.rows) * (cell_h + caption_h + pad) + pad for s in sections)
    canvas = Image.new("RGB", (width, max(height, 40)), "white")
    pen = ImageDraw.Draw(canvas)
    top = pad
    for section in sections:
        pen.text((pad, top + 4), section.title, fill="black", font=font)
        top += title_h
        for j, name in enumerate(section.columns):
            pen.text((pad + j * (cell_w + pad), top + 2), _fit(pen, name, small, cell_w), fill="black", font=small)
        top += header_h
        for row in section.rows:
            for j, (image, caption) in enumerate(row):
                left = pad + j * (cell_w + pad)
                if image is None:
                    pen.rectangle([left, top, left + cell_w - 1, top + cell_h - 1], fill=(225, 225, 225))
                    pen.text((left + 6, top + cell_h // 2 - 7), "not shown", fill=(90, 90, 90), font=small)
                else:
                    tile = _to_pil(image)
                    canvas.paste(tile, (left + (cell_w - tile.width) // 2, top + (cell_h - tile.height) // 2))
                pen.text((left, top + cell_h + 2), _fit(pen, caption, small, cell_w), fill="black", font=small)
            top += cell_h + caption_h + pad
        top += pad
    return canvas


#: line colours of :func:`chart`: Okabe-Ito (colour-blind safe), the first three differing in hue and lightness,
#: black (the axes' colour) last
COLOURS = ((0, 114, 178), (213, 94, 0), (204, 121, 167), (0, 158, 115), (230, 159, 0), (86, 180, 233), (0, 0, 0))


def chart(series: dict[str, Sequence[float]], *, x_label: str, y_label: str, size: tuple[int, int] = (256, 256)
          ) -> torch.Tensor:
    """A line chart of ``series`` (name -> y values at x = 1, 2, ...) as a (3, H, W) image in [0, 1], to be a cell
    of a :class:`Section`: axes with their ranges, one coloured line per series, a legend in that colour.

    :param size: ``(height, width)`` in pixels, as a tensor's shape (not Pillow's width-first order)."""
    from PIL import Image, ImageDraw

    height, width = size
    values = [float(v) for ys in series.values() for v in ys if v == v and abs(float(v)) != float("inf")]
    if not values:
        raise ValueError("chart: no finite value to draw.")
    low, high = min(values), max(values)
    low, high = (low - 0.5, high + 0.5) if high - low < 1e-9 else (low, high)
    longest = max(len(ys) for ys in series.values())
    canvas = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(canvas)
    small = _font(11)
    left, right, top, bottom = 44, width - 8, 20, height - 30
    pen.text((left, 2), _fit(pen, y_label, small, right - left), fill="black", font=small)
    pen.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    pen.text((2, top), f"{high:.4g}", fill="black", font=small)
    pen.text((2, bottom - 12), f"{low:.4g}", fill="black", font=small)
    pen.text((left, bottom + 3), "1", fill="black", font=small)
    pen.text((right - 20, bottom + 3), str(longest), fill="black", font=small)
    label = _fit(pen, x_label, small, right - left - 24)
    pen.text(((left + right - pen.textlength(label, font=small)) / 2, bottom + 15), label, fill="black", font=small)
    to_x = lambda i: left + (right - left) * (i / max(longest - 1, 1))  # noqa: E731
    to_y = lambda v: bottom - (bottom - top) * ((v - low) / (high - low))  # noqa: E731
    # bottom right: curves that improve and settle leave that corner empty
    legend = right - min(max(pen.textlength(name, font=small) for name in series) + 6, (right - left) // 2)
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(to_x(i), to_y(float(v))) for i, v in enumerate(ys) if v == v and abs(float(v)) != float("inf")]
        if len(points) > 1:
            pen.line(points, fill=colour, width=2)
        elif points:
            pen.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        pen.text((legend, bottom - 14 * (len(series) - k) - 2), _fit(pen, name, small, right - legend), fill=colour,
                 font=small)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def write(path: str | Path, sections: Sequence[Section], *, stamp: str, protect: Sequence[str | Path] = ()) -> Path:
    """Atomically write the figure of ``sections``: PNG, or JPEG (quality 90, about a fifth of the size for photos)
    when ``path`` ends in .jpg or .jpeg; ``stamp`` goes into the PNG "Software" text or the JPEG comment, so the
    tool can tell its own figures from files it must not replace."""
    canvas = draw(sections)
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        return io.atomic_write(path, lambda tmp: canvas.save(tmp, format="JPEG", quality=90, comment=stamp.encode()),
                               protect=protect)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", stamp)
    return io.atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG", pnginfo=info), protect=protect)


def stamp_of(path: str | Path) -> Optional[str]:
    """The stamp :func:`write` put into a figure, or None (not an image, or no stamp)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            stamp = image.info.get("Software") or image.info.get("comment") or ""
    except Exception:  # Pillow raises many types for files that are not images
        return None
    return (stamp.decode(errors="replace") if isinstance(stamp, bytes) else str(stamp)) or None


def _cell_size(image: torch.Tensor) -> tuple[int, int]:
    _, height, width = image.shape
    scale = min(1.0, CELL / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _to_pil(image: torch.Tensor):
    from PIL import Image

    array = io.image_to_uint(image)
    tile = Image.fromarray(array).convert("RGB")
    height, width = _cell_size(image)
    return tile if (height, width) == (tile.height, tile.width) else tile.resize((width, height), Image.Resampling.LANCZOS)


def _font(size: int):
    """DejaVu Sans where it is found (Pillow's own font draws no accented letter: a photo named café.png showed
    as caf□), else Pillow's default."""
    from PIL import ImageFont

    found = _font_file()
    if found is not None:
        try:
            return ImageFont.truetype(str(found), size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


@functools.lru_cache(maxsize=1)
def _font_file() -> Optional[Path]:
    """DejaVuSans.ttf from matplotlib (a dependency of deepinv; found without importing it) or the system's fonts."""
    import importlib.util

    places = []
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        places.append(Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    places += [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
               Path("/Library/Fonts/DejaVuSans.ttf")]
    return next((place for place in places if place.is_file()), None)


def _fit(pen, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if pen.textlength(text, font=font) <= width:
        return text
    while text and pen.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
