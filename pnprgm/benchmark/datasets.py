"""Image sets for benchmarks: ``public`` (photos shipped inside pip packages), a folder, or deepinv's sets.

``public`` needs no download: scikit-image's ``skimage.data`` photos, scikit-learn's sample images and
matplotlib's ``grace_hopper.jpg`` (a package that is not installed is skipped with a note). deepinv's standard
sets (Set14, CBSD68, Kodak24, Urban100) are downloaded by deepinv on first use, so they need a connection once.

Every image is centre-cropped to ``crop`` (then trimmed to a multiple of :data:`ALIGN`) so runs are comparable
and fast; RGB images whose three channels are equal are treated as gray.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from pnprgm import io
from pnprgm.errors import UserError, first_line
from pnprgm.registry import Registry

#: Crops are trimmed to a multiple of this, so every SR factor up to 8 divides the image.
ALIGN = 8

#: Public images that are in the training set of the shipped models (../shared/data/train/MANIFEST.tsv lists
#: ``scikit-image-0-26__hubble_deep_field.png``, ``__ihc.png`` and ``__retina.png``): never benchmarked.
EXCLUDED_TRAINING = frozenset({"hubble_deep_field", "ihc", "immunohistochemistry", "retina"})


@dataclass(frozen=True)
class ImageSource:
    """One benchmark image, loaded on demand (so an unreadable file is skipped, not fatal).

    :param name: unique name in the set (used in records).
    :param origin: where it comes from (package and version, folder, dataset).
    :param path: the file, when there is one (its sha256 goes into the report).
    :param loader: how to load it when there is no file.
    """

    name: str
    origin: str
    path: Optional[Path] = None
    loader: Optional[Callable[[], torch.Tensor]] = field(default=None, compare=False, repr=False)

    def load(self) -> torch.Tensor:
        """(C, H, W) float32 in [0, 1], C = 1 or 3; a :class:`UserError` names an unreadable image."""
        if self.path is not None:
            image = io.read_image(self.path)
        else:
            try:
                image = self.loader()
            except Exception as err:  # a dataset's own loader: any failure is "unreadable"
                raise UserError(f"cannot read image {self.name} of {self.origin}: {first_line(err, 160)}.") from None
        return as_gray_or_rgb(image)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "origin": self.origin}
        if self.path is not None:
            info["file"] = self.path.name
            try:
                info["sha256"] = io.sha256_file(self.path)
            except OSError:
                info["sha256"] = None
        return info


@dataclass
class Dataset:
    """A resolved image set: its images and notes for the report (skipped packages, ...)."""

    name: str
    images: list[ImageSource]
    notes: list[str] = field(default_factory=list)
    #: names of images left out because a shipped model trained on them (the public set's)
    trained_on: frozenset = frozenset()


def as_gray_or_rgb(image: torch.Tensor) -> torch.Tensor:
    """1 channel for gray content (also RGB files with equal channels), else 3."""
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise UserError(f"expected a gray or RGB image, got a tensor of shape {tuple(image.shape)}.")
    image = image[:3].float()
    if image.shape[0] == 3 and io.looks_gray(image, tolerance=0):  # exactly: the committed results' photo kinds
        image = image[:1]
    return image.contiguous()


def centre_crop(image: torch.Tensor, crop: Optional[int], align: int = ALIGN) -> torch.Tensor:
    """Centre crop to at most ``crop`` x ``crop`` (None or 0: the whole image), both sides trimmed to a multiple of ``align``."""
    _, height, width = image.shape
    limit_h = min(height, crop) if crop else height
    limit_w = min(width, crop) if crop else width
    out_h, out_w = limit_h - limit_h % align, limit_w - limit_w % align
    if out_h < align or out_w < align:
        raise UserError(f"image of {height}x{width} px is smaller than {align} px; benchmark images must be larger.")
    return io.centre_crop(image, out_h, out_w).contiguous()


# -- public: photos inside pip packages ---------------------------------------------------------------------

@dataclass(frozen=True)
class PublicImage:
    """A photo shipped inside a pip package.

    :param name: image name.
    :param distribution: the pip distribution (for its version and the install hint).
    :param module: its top-level import name (located without importing it).
    :param path: file path inside the module folder.
    """

    name: str
    distribution: str
    module: str
    path: str


# Natural photos only (text, page, logos, microscopy and synthetic images of skimage.data are left out); colour
# first so that --limit and the figure start with colour images. motorcycle_right is a near-duplicate of the left view.
PUBLIC_IMAGES: tuple[PublicImage, ...] = (
    PublicImage("astronaut", "scikit-image", "skimage", "data/astronaut.png"),
    PublicImage("chelsea", "scikit-image", "skimage", "data/chelsea.png"),
    PublicImage("coffee", "scikit-image", "skimage", "data/coffee.png"),
    PublicImage("rocket", "scikit-image", "skimage", "data/rocket.jpg"),
    PublicImage("motorcycle_left", "scikit-image", "skimage", "data/motorcycle_left.png"),
    PublicImage("china", "scikit-learn", "sklearn", "datasets/images/china.jpg"),
    PublicImage("flower", "scikit-learn", "sklearn", "datasets/images/flower.jpg"),
    PublicImage("grace_hopper", "matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    PublicImage("camera", "scikit-image", "skimage", "data/camera.png"),
    PublicImage("coins", "scikit-image", "skimage", "data/coins.png"),
    PublicImage("moon", "scikit-image", "skimage", "data/moon.png"),
    PublicImage("brick", "scikit-image", "skimage", "data/brick.png"),
    PublicImage("grass", "scikit-image", "skimage", "data/grass.png"),
    PublicImage("gravel", "scikit-image", "skimage", "data/gravel.png"),
)


def _module_folder(module: str) -> Optional[Path]:
    """Folder of an installed top-level package, found without importing it (None if not installed)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def public_set() -> Dataset:
    """The ``public`` set: :data:`PUBLIC_IMAGES` whose package is installed (the others named in the notes)."""
    images: list[ImageSource] = []
    missing: dict[str, list[str]] = {}
    for entry in PUBLIC_IMAGES:
        folder = _module_folder(entry.module)
        if folder is None or not (folder / entry.path).is_file():
            missing.setdefault(entry.distribution, []).append(entry.name)
            continue
        origin = f"{entry.distribution} {_version(entry.distribution)} ({entry.path})"
        images.append(ImageSource(entry.name, origin, folder / entry.path))
    notes = [
        f"{distribution} is not installed (or lacks the files): {', '.join(names)} skipped; pip install {distribution}"
        for distribution, names in missing.items()
    ]
    return Dataset("public", images, notes, frozenset(EXCLUDED_TRAINING))


# -- a folder -----------------------------------------------------------------------------------------------

def folder_set(folder: str | Path) -> Dataset:
    """Every image file in ``folder`` (not recursive); an empty folder is a :class:`UserError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--data {folder}: not a folder; give public, {', '.join(n for n in registry.names() if n != 'public')} or a folder of images.")
    files = io.list_images([folder])
    if not files:
        raise UserError(f"folder {folder} holds no images ({', '.join(io.READ_SUFFIXES)}); add some or use --data public.")
    names = [path.stem for path in files]
    while len(set(names)) < len(names):  # a.png and a.jpg: their file names; then a.png and a.png.png: likewise
        names = [path.name if names.count(name) > 1 else name for name, path in zip(names, files)]
    # a folder that a set's name spells (./public) is named as a folder, not taken for the set
    label = f"./{folder}" if str(folder) in registry and not folder.is_absolute() else str(folder)
    return Dataset(label, [ImageSource(name, f"folder {folder}", path) for name, path in zip(names, files)])


# -- deepinv's standard sets (downloaded on first use) -----------------------------------------------------

@dataclass(frozen=True)
class DeepinvSet:
    """A deepinv dataset class, downloaded into deepinv's cache by deepinv itself on first use.

    :param cls: class name in ``deepinv.datasets``.
    :param label: name in messages.
    """

    cls: str
    label: str

    def __call__(self) -> Dataset:
        import deepinv.datasets

        dataset_cls = getattr(deepinv.datasets, self.cls)
        try:
            dataset = dataset_cls(download=True, transform=None)
        except Exception as err:  # DownloadError, ImportError of optional deps, connection errors
            host = re.search(r"host='([^']+)'", str(err))
            why = f"{type(err).__name__}" + (f": cannot reach {host.group(1)}" if host else f": {first_line(err, 160)}")
            raise UserError(
                f"dataset {self.label} could not be loaded or downloaded by deepinv ({why}); it needs a connection "
                "the first time: offline, use --data public or --data FOLDER."
            ) from None
        paths = getattr(dataset, "x_paths", None)
        images = []
        for index in range(len(dataset)):
            name = Path(paths[index]).stem if paths is not None else f"{self.label.lower()}-{index:03d}"
            images.append(ImageSource(name, f"deepinv {self.cls}", None, loader=_item_loader(dataset, index)))
        return Dataset(self.label, images)


def _item_loader(dataset, index: int) -> Callable[[], torch.Tensor]:
    return lambda: _to_tensor(dataset[index])


def _to_tensor(item: Any) -> torch.Tensor:
    """A deepinv dataset item (PIL image, array or tensor; alone, in a tuple or a dict) -> (C, H, W) in [0, 1]."""
    if isinstance(item, dict):
        item = item["x"]
    if isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, torch.Tensor):
        tensor = item.float()
        return tensor / 255.0 if item.dtype == torch.uint8 else tensor
    array = np.asarray(item.convert("RGB") if hasattr(item, "convert") else item)
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / scale


registry: Registry[Callable[[], Dataset]] = Registry("benchmark dataset")
registry.add("public", public_set, "photos shipped inside pip packages (scikit-image, scikit-learn, matplotlib); offline")
registry.add("set14", DeepinvSet("Set14HR", "Set14"), "Set14 (deepinv; downloaded on first use)")
registry.add("cbsd68", DeepinvSet("CBSD68", "CBSD68"), "CBSD68 (deepinv; downloaded on first use, needs the datasets package)")
registry.add("kodak24", DeepinvSet("Kodak24", "Kodak24"), "Kodak24 (deepinv; downloaded on first use)")
registry.add("urban100", DeepinvSet("Urban100HR", "Urban100"), "Urban100 (deepinv; downloaded on first use)")


def resolve(data: str) -> Dataset:
    """The set named ``data`` (``public``, a deepinv set) or the folder at that path."""
    if data in registry:
        if Path(data).is_dir():  # the name wins; say so rather than benchmark other photos than the user meant
            import warnings

            warnings.warn(f"--data {data} is the {data} data set, not the folder {data}/ here; give ./{data} for the "
                          f"folder.", stacklevel=2)
        return registry.get(data)()
    if Path(data).exists():
        return folder_set(data)
    raise UserError(f"--data {data!r} is neither a known set ({', '.join(registry.names())}) nor a folder; give one of those.")


def select(dataset: Dataset, names: Optional[tuple[str, ...]]) -> list[ImageSource]:
    """The images named in ``names`` (in that order; all if None), minus training images (the runner takes the
    first ``--limit`` of them that it can use)."""
    by_name = {image.name: image for image in dataset.images}
    if names:
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise UserError(f"no image {', '.join(map(repr, unknown))} in {dataset.name}; valid: {', '.join(by_name)}.")
        chosen = [by_name[name] for name in names]
    else:
        chosen = list(dataset.images)
    chosen = [image for image in chosen if image.name not in dataset.trained_on]
    return chosen
