"""Image and file I/O shared by every command: reading any common image, atomic writes, hashes.

Writes go to a temporary file in the destination folder and are renamed into place, so a crash never leaves
a partial output; writers refuse to overwrite the file they read from.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional

import numpy as np
import torch

from pnprgm.errors import UserError, first_line

#: Formats pnprgm writes (lossless, or JPEG at the quality it chooses) and reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Formats a folder scan picks up: those it writes and the read-only ones (WebP, GIF: the first frame) that are
#: read when named one by one anyway.
READ_SUFFIXES = IMAGE_SUFFIXES + (".webp", ".gif")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data`` (as :func:`sha256_file` of a file holding it)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_root() -> Path:
    """pnprgm's cache folder: ``$PNPRGM_CACHE``, else ``$XDG_CACHE_HOME/pnprgm``, else ``~/.cache/pnprgm``."""
    if os.environ.get("PNPRGM_CACHE"):
        return Path(os.environ["PNPRGM_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "pnprgm"
    return Path.home() / ".cache" / "pnprgm"


def check_outdir_name(outdir: str | Path, option: str = "-o", example: str = "restored") -> None:
    """A :class:`UserError` for an empty ``-o`` (``Path("")`` is the current folder: outputs would land there
    unannounced; an unset shell variable gives it)."""
    if not str(outdir).strip():
        raise UserError(f"{option} is empty; give the output folder (e.g. {option} {example}).")


def prepare_outdir(outdir: str | Path) -> Path:
    """Create the output folder (before any work) or say in one line why it cannot be used."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"-o {outdir} is a file, not a folder; choose another -o.") from None
    except OSError as err:
        raise UserError(f"cannot create the output folder {outdir} ({err.strerror or err}); choose another -o.") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into the output folder {outdir} (permission denied); choose another -o.")
    return outdir


def is_file(path: str | Path) -> bool:
    """``Path.is_file`` that answers False where asking fails (a name too long for the file system, a folder that
    may not be searched): a sidecar or output that cannot be reached is not there for the caller."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def image_subfolders(folder: str | Path, exclude: Iterable[str | Path] = ()) -> list[str]:
    """Names of ``folder``'s subfolders (not hidden, not in ``exclude``) that hold images at any depth: what a folder
    input leaves out."""
    skipped = {Path(p).resolve() for p in exclude}
    return [sub.name for sub in sorted(Path(folder).iterdir()) if sub.is_dir() and not sub.name.startswith(".")
            and sub.resolve() not in skipped and any(p.suffix.lower() in READ_SUFFIXES for p in sub.rglob("*"))]


def is_dir(path: str | Path) -> bool:
    """``Path.is_dir`` that answers False where asking fails, as :func:`is_file`."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of image files; a missing path is a :class:`UserError`. A folder's
    hidden files are passed over (macOS writes ``._photo.png`` metadata beside each photo on shared drives)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        try:
            path.stat()
        except FileNotFoundError:
            pass  # said below, with the fix
        except OSError as err:  # a name too long for the file system, a folder that may not be searched
            shown = str(path) if len(str(path)) <= 120 else f"{str(path)[:100]}... ({len(str(path))} characters)"
            raise UserError(f"input {shown} cannot be read ({err.strerror or err}); check the path.") from None
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READ_SUFFIXES
                                and not p.name.startswith(".")))
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise UserError(f"input {path} is not a regular file (a pipe, socket or device); save the image to a "
                            f"file and give that.")
        else:
            raise UserError(f"input {path} does not exist; give an image file or a folder of images.")
    return found


def refuse_outdir_among_inputs(outdir: str | Path, inputs: Iterable[str | Path], *, option: str = "-o") -> None:
    """A :class:`UserError` when the output folder is one of the input folders: the next run would read this run's
    outputs there as new inputs (restore a restoration, degrade a measurement) instead of skipping them."""
    out = Path(outdir).resolve()
    for item in inputs:
        folder = Path(item)
        if is_dir(folder) and folder.resolve() == out:
            raise UserError(f"{option} {outdir} is the input folder {item}: a rerun would read this run's outputs there "
                            f"as new inputs; give another {option} (e.g. {folder / 'out'}).")


def warn_passed_over(inputs: Iterable[str | Path], *, outdir: str | Path) -> None:
    """One warning per folder among ``inputs`` naming what :func:`list_images` passed over there that a user may
    have meant: subfolders holding images (other than ``outdir``, which a rerun would find there) and broken links
    named like images."""
    import warnings

    for folder in (Path(item) for item in inputs):
        if not is_dir(folder):
            continue
        nested = image_subfolders(folder, exclude=[outdir])
        broken = [p.name for p in sorted(folder.iterdir()) if p.suffix.lower() in READ_SUFFIXES and p.is_symlink()
                  and not p.exists()]
        passed = [f"its subfolders {some_names(nested)} hold images, which are not searched (name those folders too)"
                  ] if nested else []
        passed += [f"its links {some_names(broken)} lead to no file"] if broken else []
        if passed:
            warnings.warn(f"{folder}: {'; '.join(passed)}.", stacklevel=2)


def some_names(names: list[str]) -> str:
    """``(a, b, c and 2 more)``."""
    return f"({', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''})"


def no_images_found(inputs: Iterable[str | Path]) -> UserError:
    """The one-line error for inputs that hold no image (the same for every command)."""
    inputs = [Path(item) for item in inputs]
    nested = any(p.is_dir() and any(q.is_dir() for q in p.iterdir()) for p in inputs)
    return UserError(f"no images found in {', '.join(map(str, inputs))}; give PNG/JPEG/TIFF/BMP/WebP/GIF files or folders"
                     + (" (subfolders are not searched: name them too)." if nested else "."))


def output_stems(files: list[Path], names: Callable[[str], list[str]]) -> dict[Path, str]:
    """A distinct output stem per input file: its own stem, with its suffix added when inputs of other suffixes share
    it (``a.png``, ``a.tif`` -> ``a_png``, ``a_tif``), then ``-2``, ``-3``... while one of the output file names
    ``names(stem)`` is taken by another input (compared case-insensitively, for file systems that ignore case).
    Inputs whose own stem is unique claim it first: ``a_jpg.png`` keeps ``a_jpg`` beside ``a.jpg`` and ``a.png``,
    whose outputs take the next names (``a_jpg-2``), so a name never shows another input's restoration."""
    from collections import Counter

    counts = Counter(path.stem.lower() for path in files)
    suffixes: dict[str, set[str]] = {}
    for path in files:
        suffixes.setdefault(path.stem.lower(), set()).add(path.suffix.lower())
    taken: set[str] = set()
    stems: dict[Path, str] = {}
    for path in sorted(files, key=lambda p: counts[p.stem.lower()] > 1):  # stable: the unique stems first
        # the suffix tells apart a.png and a.tif; two x.png of different folders are x and x-2
        told_apart = counts[path.stem.lower()] > 1 and len(suffixes[path.stem.lower()]) > 1
        base = f"{path.stem}_{path.suffix.lstrip('.').lower()}" if told_apart else path.stem
        stem, k = base, 2
        while {n.lower() for n in names(stem)} & taken:
            stem, k = f"{base}-{k}", k + 1
        taken.update(n.lower() for n in names(stem))
        stems[path] = stem
    return {path: stems[path] for path in files}


def read_image(path: str | Path) -> torch.Tensor:
    """Read an 8- or 16-bit grayscale/RGB(A) image as a float32 (C, H, W) tensor in [0, 1], upright (its EXIF
    orientation applied). 16-bit colour PNG and TIFF keep their 16 bits (Pillow would read them as 8 bit).

    Alpha is dropped with a warning; palette and other modes are converted to RGB.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        wide = _read_wide_tiff(path)
        if wide is not None:
            return torch.from_numpy(wide)
    try:
        with Image.open(path) as image:
            image.load()
            _warn_if_several_frames(path, getattr(image, "n_frames", 1))
            orientation = image.getexif().get(0x0112, 1)
            if image.mode == "F":  # a float image of another format (Pillow gives its samples unscaled)
                array = _unit_floats(np.asarray(image, dtype=np.float64)[..., None], path)
                return torch.from_numpy(_orient(array.transpose(1, 2, 0), orientation).transpose(2, 0, 1).copy())
            if image.mode not in _GRAY16_MODES and _bits_of(path, image.format) == 16:
                # 16-bit colour, which Pillow reads as 8 bit: torchvision's PNG decoder, tifffile for TIFF
                array = _orient(_read_colour16(path, image.format), orientation)
                array = _drop_alpha(array, path).astype(np.float64).transpose(2, 0, 1) / 65535.0
                return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            # A camera's portrait JPEG is stored landscape with an EXIF orientation tag: apply it, as viewers do.
            upright = ImageOps.exif_transpose(image) if orientation != 1 else image
            array = _pil_to_array(upright, path)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"cannot read {path}: no such file.") from None
    except IsADirectoryError:
        raise UserError(f"cannot read {path}: it is a folder; give an image file.") from None
    except Image.DecompressionBombError as err:
        counted = re.search(r"\((\d+) pixels\)", str(err))  # "Image size (N pixels) exceeds limit of M pixels..."
        raise _bomb_error(path, int(counted.group(1)) if counted else None) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if path.suffix.lower() in (".tif", ".tiff"):  # a whole TIFF whose samples Pillow has no mode for
            read = _read_tiff_samples(path)
            if isinstance(read, np.ndarray):
                return torch.from_numpy(read)
            if read is not None:
                raise UserError(f"cannot read {path}: a TIFF of {read}, a layout this tool does not read; save it "
                                f"as 8- or 16-bit gray or RGB (PNG or TIFF).") from None
        reason = first_line(err)
        raise UserError(f"cannot read {path}: not a readable image ({reason}); check that the file is complete, or "
                        "convert it to PNG.") from None
    return torch.from_numpy(array)


def _read_tiff_samples(path: Path) -> np.ndarray | str | None:
    """A TIFF Pillow has no mode for (16-bit gray with alpha, say), read by tifffile: its gray or colour image as a
    float32 (C, H, W) array in [0, 1] (alpha dropped with a warning) when its first page holds 1 to 4 unsigned 8- or
    16-bit samples per pixel; else its layout in words (``"5 sample(s) of 16 bits per pixel"``); None when tifffile
    cannot read it whole either (a damaged file)."""
    opened = _tiff_first_page(path, read_if=lambda head: head.photometric in (TIFF_MINISBLACK, TIFF_RGB))
    if opened is None:
        return None
    head, array = opened
    if array is None:  # Lab, palette, white-is-zero...: not plain samples
        return f"{head.samples} sample(s) of {head.bits} bits per pixel in colour space {head.photometric_name}"
    if array.dtype not in (np.uint8, np.uint16) or head.samples not in (1, 2, 3, 4):
        return f"{head.samples} sample(s) of {head.bits} bits per pixel"
    if array.ndim != 3:
        return f"{head.samples} sample(s) of {head.bits} bits per pixel in {array.ndim} dimensions"
    unit = _drop_alpha(_orient(array, head.orientation), path).astype(np.float64) / np.iinfo(array.dtype).max
    return np.ascontiguousarray(unit.transpose(2, 0, 1), dtype=np.float32)


class _TiffHead(NamedTuple):
    """What tifffile says of a TIFF's first page before its pixels are read."""

    kind: str  # numpy dtype kind of the samples: "u", "i", "f" ("" when tifffile has none)
    bits: int
    samples: int
    photometric: int
    photometric_name: str
    orientation: int
    shape: tuple
    axes: str


def _tiff_first_page(path: Path, read_if: Callable[[_TiffHead], bool], *,
                     pages_warning: bool = True) -> tuple[_TiffHead, np.ndarray | None] | None:
    """tifffile's reading of a TIFF's first page: its head and, when ``read_if(head)``, its samples with the channel
    axis last ((H, W, C), or more dimensions for a stack), else None; None in all when tifffile cannot parse the file
    (a damaged or truncated one). Pillow's decompression bomb guard and the several-pages warning (``pages_warning``)
    apply as for every other image."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            head = _TiffHead(
                kind=page.dtype.kind if page.dtype is not None else "", bits=int(page.bitspersample),
                samples=int(page.samplesperpixel), photometric=int(page.photometric),
                photometric_name=getattr(page.photometric, "name", str(page.photometric)),
                orientation=int(getattr(page.tags.get("Orientation"), "value", 1) or 1), shape=tuple(page.shape),
                axes=page.axes)
            if not read_if(head):
                return head, None
            _refuse_bomb(path, int(page.imagewidth) * int(page.imagelength))
            array = page.asarray()  # a truncated file fails here
            if pages_warning:
                _warn_if_several_frames(path, len(tif.pages))
    except UserError:
        raise
    except Exception:  # tifffile raises many types for files it cannot parse
        return None
    if head.axes.startswith("S"):  # planar configuration: one plane per channel
        array = np.moveaxis(array, 0, -1)
    return head, (array if array.ndim == 3 else array[..., None])


def _refuse_bomb(path: Path, pixels: int) -> None:
    """Pillow's decompression bomb guard (an error at twice ``Image.MAX_IMAGE_PIXELS``), for the readers Pillow's does
    not cover."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS and pixels > 2 * Image.MAX_IMAGE_PIXELS:
        raise _bomb_error(path, pixels)


def _bomb_error(path: Path, pixels: int | None) -> UserError:
    size = f"an image of {pixels} pixels" if pixels is not None else "this image"
    return UserError(f"cannot read {path}: {size} is more than this tool reads (a decompression bomb guard); "
                     "downscale or crop it first.")


_GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I")
#: Pillow modes of one-channel images (with or without alpha); "F": float samples.
GRAY_MODES = ("L", "LA", "1", "F", *_GRAY16_MODES)


def _warn_if_several_frames(path: Path, frames: int) -> None:
    """An animated GIF/PNG/WebP or a multi-page TIFF is read as its first frame: say so rather than drop the rest."""
    if frames > 1:
        warnings.warn(f"{path.name}: {frames} frames (an animation or pages); only the first is read. Save each frame "
                      "as its own image to restore them all.", stacklevel=3)


def _read_wide_tiff(path: Path) -> np.ndarray | None:
    """A floating-point TIFF, or an 8/16-bit gray or RGB one with an Orientation tag, as a float32 (C, H, W) array in
    [0, 1], upright; None for other TIFFs of 8- or 16-bit integer samples (or one tifffile cannot read), which Pillow
    reads. Pillow cannot open float colour TIFFs and reads float gray ones unscaled, so tifffile does; 32-bit integer
    samples are refused (their full scale is not in the file)."""

    def turned(head: _TiffHead) -> bool:
        # Pillow garbles (gray, RGBA) or turns by itself (RGB) an 8/16-bit TIFF with an Orientation tag: such files of
        # plain gray or RGB samples are read here and turned by _orient like every other image
        return (head.kind == "u" and head.bits in (8, 16) and head.orientation != 1
                and head.photometric in (TIFF_MINISBLACK, TIFF_RGB))

    def wide(head: _TiffHead) -> bool:
        return head.kind in ("f", "i") or (head.kind == "u" and head.bits > 16)

    def white_is_zero(head: _TiffHead) -> bool:
        # Pillow reads a 16-bit white-is-zero gray TIFF as a negative and ignores its Orientation tag
        return (head.kind == "u" and head.bits in (8, 16) and head.samples == 1
                and head.photometric == TIFF_MINISWHITE)

    # tifffile failing leaves the file to Pillow's reading, which then decides
    opened = _tiff_first_page(path, read_if=lambda head: wide(head) or turned(head) or white_is_zero(head))
    if opened is None or opened[1] is None:
        return None
    head, array = opened
    if turned(head) or white_is_zero(head):
        array = array.astype(np.float64) / (2.0**head.bits - 1)
        if white_is_zero(head):
            array = 1.0 - array
    elif head.kind != "f":
        sort = "signed integer" if head.kind == "i" else "integer"
        raise UserError(f"cannot read {path}: {head.bits}-bit {sort} samples, whose full scale the file does not say; "
                        "save it as an unsigned 8- or 16-bit image, or as floats in [0, 1].")
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise UserError(f"cannot read {path}: a float TIFF of shape {head.shape} (axes {head.axes}), not one gray or "
                        "colour image; save each image as its own file.")
    return _unit_floats(_orient(_drop_alpha(array, path), head.orientation), path)


#: TIFF photometric interpretations read by tifffile when the file has an Orientation tag, and white-is-zero gray,
#: which Pillow reads as a negative at 16 bits (tifffile gives the stored samples: inverted here).
TIFF_MINISWHITE, TIFF_MINISBLACK, TIFF_RGB = 0, 1, 2


def _unit_floats(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) float samples -> float32 (C, H, W) in [0, 1]; samples outside [0, 1] (a 0-255 float export, HDR data,
    NaN) have an unknown scale, so the file is refused rather than read nearly black or white."""
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise UserError(f"cannot read {path}: NaN or infinite samples; replace them, or save it as an 8- or 16-bit image.")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < -1e-6 or high > 1 + 1e-6:
        raise UserError(f"cannot read {path}: floating-point samples from {low:.4g} to {high:.4g}; pnprgm reads float "
                        "images as [0, 1] intensities: rescale it to [0, 1] or save it as an 8- or 16-bit image.")
    return np.ascontiguousarray(array.clip(0, 1).transpose(2, 0, 1), dtype=np.float32)


def image_bits(path: str | Path) -> int:
    """Bits of output an image file deserves: 16 for a 16-bit PNG or TIFF (gray or colour) and for a TIFF of wider
    samples (32-bit floats: written back as 16-bit PNG), else 8. ``pnprgm restore`` writes 16-bit output for such
    input."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _bits_of(Path(path), image.format)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        # Pillow cannot open a float colour TIFF, which read_image reads through tifffile
        return _bits_of(Path(path), "TIFF") if Path(path).suffix.lower() in (".tif", ".tiff") else 8


def _bits_of(path: Path, fmt: str | None) -> int:
    if fmt == "PNG":  # IHDR comes first: 8-byte signature, length, type, width, height, then the bit depth
        with open(path, "rb") as handle:
            header = handle.read(26)
        return 16 if len(header) == 26 and header[12:16] == b"IHDR" and header[24] == 16 else 8
    if fmt == "TIFF":
        opened = _tiff_first_page(path, read_if=lambda head: False)
        if opened is None:
            return 8
        head = opened[0]
        # float samples ([0, 1], see _read_wide_tiff) keep more than 8 bits through a restoration too
        return 16 if (head.bits == 16 and head.kind == "u") or head.kind == "f" else 8
    if fmt == "PPM":  # a PGM or PPM whose maxval is above 255 opens in a 32-bit integer mode
        from PIL import Image

        with Image.open(path) as image:
            return 16 if image.mode.startswith("I") else 8
    return 8


def _read_colour16(path: Path, fmt: str) -> np.ndarray:
    """A 16-bit colour PNG or TIFF as an (H, W, C) uint16 array, C = 3 or 4 (alpha), or 2 (gray + alpha)."""
    if fmt == "PNG":
        import torchvision.io as tvio

        decoded = tvio.decode_png(tvio.read_file(str(path)), mode=tvio.ImageReadMode.UNCHANGED)
        return decoded.numpy().transpose(1, 2, 0)
    # Pillow has already opened it and said if it has several pages
    opened = _tiff_first_page(path, read_if=lambda head: True, pages_warning=False)
    if opened is None:
        raise ValueError("tifffile cannot read its samples")
    return opened[1]


def _drop_alpha(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) -> (H, W, 3) or (H, W, 1): alpha dropped with a warning."""
    if array.shape[-1] in (2, 4):
        warnings.warn(f"{path.name}: alpha channel dropped", stacklevel=4)
        array = array[..., :-1]
    return array


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, ...) array turned upright by its EXIF orientation (as ``PIL.ImageOps.exif_transpose``)."""
    turned = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(int(orientation))
    return np.ascontiguousarray(turned(array)) if turned is not None else array


def _pil_to_array(image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in _GRAY16_MODES:
        array = np.asarray(image, dtype=np.float64)
        # Pillow scales a PGM's samples to 65535 whatever its maxval above 255: its full scale is not in the content
        scale = 65535.0 if array.max() > 255 or mode.startswith("I;16") or image.format == "PPM" else 255.0
        array = (array / scale)[None]
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
            warnings.warn(f"{path.name}: alpha channel dropped", stacklevel=3)
        if mode in ("L", "LA", "1"):
            array = np.asarray(image.convert("L"), dtype=np.float64)[None] / 255.0
        else:
            raw = np.asarray(image)
            if raw.dtype == np.uint16 and raw.ndim == 3:
                array = raw[..., :3].astype(np.float64).transpose(2, 0, 1) / 65535.0
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255.0
    return np.ascontiguousarray(array, dtype=np.float32)


def image_to_uint(image: torch.Tensor, bits: int = 8) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W) or (H, W, 3) unsigned integer array (values clipped)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError("write one image at a time")
        image = image[0]
    maximum = 255 if bits == 8 else 65535
    array = image.detach().float().clamp(0, 1).mul(maximum).round().cpu().numpy()
    array = array.astype(np.uint8 if bits == 8 else np.uint16)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def atomic_write(path: str | Path, writer: Callable[[Path], None], *, protect: Iterable[str | Path] = ()) -> Path:
    """Write ``path`` through ``writer(tmp_path)`` then rename; never overwrite a path in ``protect``."""
    path = Path(path)
    tmp = stage(path, writer, protect=protect)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def stage(path: str | Path, writer: Callable[[Path], None], *, protect: Iterable[str | Path] = ()) -> Path:
    """Write the content of ``path`` to a temporary beside it (``.NAME.pnprgm-XXXXXXXX.tmp``) and return the temporary;
    :func:`commit` renames staged files into place. Never stages a path in ``protect`` (the inputs)."""
    path = Path(path)
    refuse_inputs([path], protect)
    tmp = _temporary_beside(path)
    try:
        writer(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; a written file gets what open() would give it
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def refuse_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path], *, option: str = "-o") -> None:
    """A :class:`UserError` when one of ``outputs`` is one of the files this run reads (``inputs``): never written,
    even with --overwrite. Called before any work where the outputs are known, and by :func:`stage` for each file;
    ``option`` is the output option the message asks to change."""
    inputs = list(inputs)
    read = {Path(p).resolve() for p in inputs}
    identities: Optional[set[tuple[int, int]]] = None  # stat'ed only when an output exists (stage calls this per file)
    for path in outputs:
        info = _stat_or_none(path)
        if info is not None and identities is None:
            # the same file by another name: a hard link, or Photo.PNG for photo.png on a case-blind disk
            identities = {(i.st_dev, i.st_ino) for i in map(_stat_or_none, inputs) if i is not None}
        if Path(path).resolve() in read or (info is not None and (info.st_dev, info.st_ino) in identities):
            raise UserError(f"refusing to overwrite {path}, which this run reads (an input, or a file its operator or "
                            f"model reads); choose another {option}.")


def _stat_or_none(path: str | Path) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def refuse_folders(paths: Iterable[str | Path]) -> None:
    """A :class:`UserError` when an output name is taken by a folder: checked before any file is written, so a batch
    never commits some outputs (a record) and then fails to rename another onto the folder."""
    for path in paths:
        if Path(path).is_dir():
            raise UserError(f"{path} is a folder where an output file goes; move it or choose another -o.")


def _temporary_beside(path: Path) -> Path:
    """A new empty ``.NAME.pnprgm-XXXXXXXX.tmp`` in ``path``'s folder (made if needed): what :func:`sweep_temps`
    recognises as this tool's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMP_TAG}", suffix=".tmp")
    os.close(handle)
    return Path(name)


def commit(staged: list[tuple[Path, Path]]) -> list[Path]:
    """Rename staged ``(tmp, path)`` pairs into place, in order (put the file that vouches for the others, such as
    a record listing their sha256, first); the temporaries left by a failure are removed."""
    done = 0
    try:
        for tmp, path in staged:
            os.replace(tmp, path)
            done += 1
    finally:
        for tmp, _ in staged[done:]:
            tmp.unlink(missing_ok=True)
    return [path for _, path in staged]


def discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove staged temporaries that will not be committed."""
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)


#: the temporaries of :func:`stage`: ``.NAME.pnprgm-`` + mkstemp's 8 random characters + ``.tmp``; the tag keeps a
#: user's own ``.NAME.XXXXXXXX.tmp`` (an editor's or another tool's) out of :func:`sweep_temps`
TEMP_TAG = "pnprgm-"
_TEMP_NAME = re.compile(rf"^\.(?P<name>.+)\.{re.escape(TEMP_TAG)}[A-Za-z0-9_]{{8}}\.tmp$")


def sweep_temps(folder: str | Path, *, names: Iterable[str] = (), older_than: float = 3600.0) -> list[Path]:
    """Remove temporaries a killed run left in ``folder``: those of the files ``names`` (about to be written
    again) whatever their age, and any other older than ``older_than`` seconds (a live run's are recent)."""
    import time

    folder, names = Path(folder), set(names)
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        match = _TEMP_NAME.match(path.name)
        if match is None or not path.is_file() or path.is_symlink():
            continue
        try:
            if match["name"] in names or now - path.stat().st_mtime > older_than:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def file_mode() -> int:
    """Permissions of a new file under the process's umask (0644 for the usual umask 022)."""
    try:  # Linux: read it without changing it (os.umask sets it, which races with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_image(path: str | Path, image: torch.Tensor, *, bits: int = 8, protect: Iterable[str | Path] = ()) -> Path:
    """Atomically write a (C, H, W) [0, 1] tensor as an image (PNG keeps 16 bits when ``bits=16``)."""
    return atomic_write(path, image_writer(path, image, bits), protect=protect)


def image_writer(path: str | Path, image: torch.Tensor, bits: int = 8,
                 icc: Optional[bytes] = None) -> Callable[[Path], None]:
    """``writer(tmp)`` saving ``image`` in the format of ``path``'s suffix (for :func:`atomic_write` or :func:`stage`),
    with the colour profile ``icc`` embedded when it fits the image's channels (:func:`icc_profile`)."""
    from PIL import Image

    array = image_to_uint(image, bits)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}.get(Path(path).suffix.lower(), "PNG")
    icc = icc if icc and _icc_space(icc) == ("RGB " if array.ndim == 3 else "GRAY") and fmt != "BMP" else None
    profile = {"icc_profile": icc} if icc else {}

    def writer(tmp: Path) -> None:
        if bits == 16 and array.ndim == 2 and fmt in ("PNG", "TIFF"):
            Image.fromarray(array.astype(np.uint16)).save(tmp, format=fmt, **profile)
        elif bits == 16 and fmt == "PNG":  # Pillow writes colour PNG in 8 bits only
            write_png16(tmp, array, icc=icc)
        elif bits == 16 and fmt == "TIFF":
            import tifffile

            tifffile.imwrite(tmp, array, photometric="rgb", iccprofile=icc)
        elif bits == 16:  # JPEG and BMP hold 8 bits
            Image.fromarray(((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)).save(tmp, format=fmt,
                                                                                                     **profile)
        else:
            Image.fromarray(array).save(tmp, format=fmt, **profile)

    return writer


def icc_profile(path: str | Path) -> Optional[bytes]:
    """The colour profile (ICC) embedded in the image at ``path``, or None. A restoration keeps the input's pixel
    values' colour space, so its output carries the same profile (a Display P3 photo written without it would be
    shown as sRGB, its colours muted)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            icc = image.info.get("icc_profile")
    except Exception:  # unreadable: read_image says so in its own words
        return None
    return bytes(icc) if icc else None


def _icc_space(icc: bytes) -> str:
    """The data colour space of an ICC profile (header bytes 16-19: ``"RGB "``, ``"GRAY"``, ``"CMYK"``...)."""
    return icc[16:20].decode("ascii", errors="replace") if len(icc) >= 20 else ""


def write_png16(path: str | Path, array: np.ndarray, icc: Optional[bytes] = None) -> None:
    """Write an (H, W, 3) uint16 array as a 16-bit RGB PNG (Pillow cannot): each row with the PNG "Up" filter
    (the byte difference to the row above, vectorised), zlib-compressed, big-endian samples; ``icc``: a colour
    profile for its iCCP chunk."""
    import struct
    import zlib

    array = np.asarray(array)
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"write_png16 takes an (H, W, 3) uint16 array, not {array.dtype} {array.shape}")
    height, width, _ = array.shape
    rows = np.ascontiguousarray(array.astype(">u2")).view(np.uint8).reshape(height, width * 6)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG filters do
    data = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, truecolour, deflate, no interlace
    with open(path, "wb") as handle:
        # iCCP: a profile name, a zero byte, compression method 0 (deflate), the compressed profile; before IDAT
        profile = chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)) if icc else b""
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + profile + chunk(b"IDAT", zlib.compress(data, 6))
                     + chunk(b"IEND", b""))


def json_writer(data: Any) -> Callable[[Path], None]:
    """``writer(tmp)`` of :func:`write_json`."""
    text = json.dumps(data, indent=2, default=_json_default) + "\n"
    return lambda tmp: tmp.write_text(text)


def write_json(path: str | Path, data: Any, *, protect: Iterable[str | Path] = ()) -> Path:
    """Atomically write JSON (indent 2, sorted keys off so configs keep their order)."""
    return atomic_write(path, json_writer(data), protect=protect)


def open_for_append(path: str | Path, newline: Optional[str] = None):
    """``open(path, "a")`` of a log this tool keeps, never through a symbolic link left at its name (that would
    write into a file elsewhere, which the tool did not write): the link itself is replaced by a new file."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    return open(path, "a", newline=newline)


def write_bytes(path: str | Path, data: bytes, *, protect: Iterable[str | Path] = ()) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), protect=protect)


def refuse_foreign(path: str | Path, *, owned: Callable[[Path], bool], tool: str, overwrite: bool = False) -> None:
    """A :class:`UserError` when ``path`` exists and ``owned(path)`` is false (a file ``tool`` did not write) unless
    ``overwrite``; a folder in its place is always refused. ``owned`` reads the file and returns a bool, never raises."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name.")
    if not overwrite and not owned(path):
        raise UserError(f"{path} already exists and was not written by {tool}; pass --overwrite to replace it, "
                        f"or choose another name.")


def refuse_taken(folder: str | Path, names: Iterable[str], *, overwrite: bool = False) -> None:
    """A :class:`UserError` when ``folder`` already holds any of ``names`` (what a new run would write there), unless
    ``overwrite``: a run never replaces an earlier run's files, or a user's, unasked."""
    folder = Path(folder)
    taken = [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]
    if taken and not overwrite:
        raise UserError(f"{folder} already holds {', '.join(taken)}, which a new run would replace; choose another "
                        "--out, or pass --overwrite to replace them.")


def check_writable(path: str | Path, *, option: str = "") -> None:
    """A :class:`UserError` now, before any work, when ``path`` cannot be written (its folder cannot be made or
    written to): probes with a tagged temporary that :func:`sweep_temps` would remove if this process died. The
    folders the probe had to make are removed again (a run refused later leaves no empty folder behind).

    :param option: the option that named the path (``--out``), for the message."""
    path = Path(path)
    made = [folder for folder in path.parents if not folder.exists()]  # deepest first
    blocking = next((folder for folder in path.parents if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():  # mkdir's "File exists" would not say which
        raise UserError(f"cannot write {path}: {blocking} is a file, not a folder; choose another "
                        f"{option + ' ' if option else ''}path.")
    try:
        _temporary_beside(path).unlink()
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror or err}); choose another "
                        f"{option + ' ' if option else ''}path.") from None
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except FileNotFoundError:  # never made (mkdir failed below it): the ones above may have been
                continue
            except OSError:  # not empty: it and those above stay
                break


#: Largest difference between the channels of an RGB image read as gray (a kernel or mask drawing, a black-and-white
#: photo stored as RGB) with a little slack for editors that round colour conversions (Pillow's JPEG of a gray
#: picture keeps its channels exactly equal); a colour picture's channels differ far more.
CHANNEL_TOLERANCE = 4 / 255


def channel_kind(count: int) -> str:
    """The word for images of ``count`` channels in messages and reports: gray, colour, else N-channel."""
    return {1: "gray", 3: "colour"}.get(int(count), f"{int(count)}-channel")


def centre_crop(image: torch.Tensor, height: int, width: Optional[int] = None) -> torch.Tensor:
    """The centre ``height x width`` (default square) window of a (..., H, W) image, as a view; on an odd margin the
    extra row or column is left at the bottom or right."""
    width = height if width is None else width
    top, left = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
    if top < 0 or left < 0:
        raise ValueError(f"a {height}x{width} crop of a {image.shape[-2]}x{image.shape[-1]} image")
    return image[..., top : top + height, left : left + width]


def looks_gray(image: torch.Tensor, tolerance: float = CHANNEL_TOLERANCE) -> bool:
    """Whether a (C, H, W) image is gray content: one channel, or RGB whose channels differ by at most ``tolerance``
    at every pixel (a gray photo saved as RGB; JPEG's colour rounding leaves a few levels)."""
    if image.shape[-3] != 3:
        return image.shape[-3] == 1
    return image.numel() == 0 or channel_spread(image) <= tolerance


def channel_spread(image: torch.Tensor) -> float:
    """Largest difference between the channels of a (C, H, W) image at any pixel: 0 for a one-channel image."""
    return float((image.amax(-3) - image.amin(-3)).max())


#: First bytes of NumPy's array files: .npy's own header; .npz's zip archive (a local file header, or the end
#: record alone for an archive of no arrays, as an operator without arrays writes).
NUMPY_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}


def load_numpy(path: str | Path, what: str, fix: str) -> Any:
    """The array of a .npy file, or ``{name: array}`` of a .npz, never unpickled; anything else is a one-line
    :class:`UserError` saying ``{what} file {path} ...; {fix}``. Why not plain ``np.load``: its errors for a file
    that is not NumPy's, or holds Python objects, advise loading it unsafely (unpickling can run code)."""
    path = Path(path)
    magics = NUMPY_MAGIC[path.suffix.lower()]
    with open(path, "rb") as handle:
        if not handle.read(max(map(len, magics))).startswith(magics):
            raise UserError(f"{what} file {path} is not a {path.suffix.lower()} file (it lacks NumPy's header); {fix}.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if path.suffix.lower() == ".npz":
            with loaded:
                return {key: loaded[key] for key in loaded.files}
        return loaded
    except ValueError as err:
        if "pickle" in str(err):  # object arrays: pnprgm never unpickles a file
            raise UserError(f"{what} file {path} holds Python objects, which pnprgm never loads; {fix}.") from None
        raise UserError(f"cannot read {what} file {path}: {first_line(err)}; {fix}.") from None
    except Exception as err:  # zipfile and numpy raise several types for corrupt files
        detail = first_line(err).rstrip(".")
        raise UserError(f"cannot read {what} file {path}: {detail}; {fix}.") from None


def is_write_failure(err: OSError, folder: str | Path) -> bool:
    """Whether ``err`` is a failed write into ``folder``: a full disk or read-only file system, or a file under it."""
    import errno

    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    names = [n for n in (err.filename, getattr(err, "filename2", None)) if n]
    try:
        return any(Path(os.fsdecode(n)).resolve().is_relative_to(Path(folder).resolve()) for n in names)
    except (OSError, ValueError, TypeError):
        return False


def cannot_write_into(folder: str | Path, err: OSError, option: str = "-o") -> str:
    """One line for a failed write into the output ``folder`` (named by ``option``), whose fix fits the cause: a full
    disk wants space, a refused permission or read-only file system another folder."""
    return f"cannot write into {folder} ({err.strerror or err}); {file_system_fix(err, option) or f'check the folder or choose another {option}'}."


def file_system_fix(err: OSError, option: Optional[str] = None) -> Optional[str]:
    """The fix for an OSError whose cause is the file system's state (full, read-only, refused, a name too long),
    naming ``option`` (``-o``) where one chose the place; None for other errors."""
    import errno

    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free space or choose another {option or 'folder'}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"choose a folder you may write to{f' with {option}' if option else ''}"
    if err.errno == errno.ENAMETOOLONG:  # the temporary beside an output adds 20 characters to its name
        return "shorten the file name or the folder path (an output's temporary adds 20 characters to its name)"
    return None


def file_system_refusal(err: OSError) -> Optional[str]:
    """One line for an OSError the file system caused (:func:`file_system_fix`), naming the file meant, not the
    temporary it was being written through; None for other errors."""
    fix = file_system_fix(err)
    if fix is None:
        return None
    name = os.fsdecode(err.filename) if err.filename is not None else None
    if name is not None:
        match = _TEMP_NAME.match(Path(name).name)
        name = str(Path(name).with_name(match["name"])) if match else name
    return f"cannot write {name if name else 'a file'} ({err.strerror or err}); {fix}."


#: the largest text file (JSON, YAML) pnprgm reads: far above any results file or config it writes (a benchmark's
#: results JSON of thousands of records is a few MB), far below what would exhaust a machine's memory
MAX_TEXT_BYTES = 256 * 2**20


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a regular file of at most :data:`MAX_TEXT_BYTES`: OSError when it cannot be read, ValueError
    when it is not UTF-8, too large or not a regular file (``/dev/zero`` or a pipe would be read until memory ran
    out)."""
    import stat

    # asked before opening: opening a pipe without a writer blocks
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file (a device, pipe or socket)")
    with open(path, "rb") as handle:
        data = handle.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise ValueError(f"larger than {MAX_TEXT_BYTES // 2**20} MiB, more than any file pnprgm writes or reads")
    # utf-8-sig: a leading byte-order mark (Windows Notepad writes one) is dropped, not a parse error
    return data.decode("utf-8-sig")  # UnicodeDecodeError is a ValueError


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``: OSError when it cannot be read, ValueError when it is not UTF-8 JSON (or not a
    regular file of at most :data:`MAX_TEXT_BYTES`).

    Why not plain ``json.loads``: a file nested a few thousand levels deep raises RecursionError there, which no
    caller expects from a damaged file (a one-line error, not a traceback, and the other inputs still processed).
    """
    return parse_json(read_text(path))


def parse_json(text: str) -> Any:
    """``json.loads(text)``, with a nesting too deep for Python's parser a ValueError like any other damage."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def read_json_object(path: str | Path) -> dict | None:
    """The JSON object in ``path``, or None when it is unreadable, not JSON or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def torch_save(obj: Any, path: str | Path) -> Path:
    """Atomically ``torch.save`` (checkpoints hold only tensors and plain containers: weights_only loadable)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True`` (never executes pickled code); errors name the file."""
    path = Path(path)
    if not path.is_file():
        what = ("is a folder" if path.is_dir() else "is not a regular file (a device or pipe)" if path.exists()
                else "does not exist")
        raise UserError(f"checkpoint {path} {what}; check the path.")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types (KeyError, IndexError, EOFError...) for foreign files
        raise UserError(refusal(path, err)) from None


def refusal(path: str | Path, err: BaseException) -> str:
    """The one-line refusal of a file ``torch.load(weights_only=True)`` failed on: never torch's advice to load it
    with ``weights_only=False`` (which would run the code a hostile file holds)."""
    import re

    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    fix = ("give a model.pt or checkpoint written by pnprgm train, a shipped model name (pnprgm models) "
           "or an official RGM checkpoint as PATH#CONFIG")
    if unsafe:
        return (f"refused {path}: it holds pickled Python objects ({unsafe.group(1)}), not only weights, and pnprgm "
                f"never unpickles objects (they can run code); {fix}.")
    return f"refused {path}: it is not a pnprgm or official model file (torch cannot read it as weights); {fix}."


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions() -> dict[str, str]:
    """Versions of the packages that decide numerical results (written into every run record)."""
    import importlib.metadata as metadata
    import platform

    found = {"python": platform.python_version()}
    for name in ("pnprgm", "torch", "deepinv", "numpy", "scikit-image", "lpips", "pillow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
