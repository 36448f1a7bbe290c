"""Shipped and user model files: the ``pretrained/`` index as a registry, and what a model string names.

``pretrained/index.json`` lists each shipped file with its sha256, channels, role and training record; the
file itself embeds its config, so it rebuilds without this index. :func:`resolve` is the one reader of a model
string (shipped name, family, ``default``, an old name of one, ``PATH`` or ``PATH#CONFIG``);
:mod:`pnprgm.denoisers.rgm` registers the shipped models as denoisers.
"""
from __future__ import annotations

import re
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

import torch

from pnprgm import io, pretrained
from pnprgm.errors import UserError
from pnprgm.registry import Registry, announce_rename

PRETRAINED_DIR = Path(pretrained.__file__).resolve().parent  # checkout: pretrained/; installed: pnprgm/pretrained/
INDEX = PRETRAINED_DIR / "index.json"
#: The denoiser name of the shipped default: the colour or gray default model, picked from the input's channels.
DEFAULT_DENOISER = "default"
#: Old names -> today's, for the models (and the family) that were called ``rgm-*`` although no active RGM prior
#: trained them (MSE or MSE + LPIPS-alex, ``lmbda`` 0 or a discriminator at chance; ``pnprgm models`` shows each
#: objective), and for ``rgm``, the denoiser name of the shipped default (a DRUNet since 2026-12-04). Registered
#: below as aliases of the model and the denoiser registries: accepted everywhere, with a one-line notice.
RENAMED: Mapping[str, str] = MappingProxyType({
    "rgm-denoiser-color": "unet-denoiser-color",
    "rgm-denoiser-gray": "unet-denoiser-gray",
    "rgm-denoiser-color-perceptual": "unet-denoiser-color-lpips",
    "rgm-denoiser-gray-perceptual": "unet-denoiser-gray-lpips",
    "rgm-denoiser-color-v1": "unet-denoiser-color-v1",
    "rgm-perceptual": "unet-lpips",
    "rgm": DEFAULT_DENOISER,
})
WHY_RENAMED = "trained without an active RGM prior"


def why_renamed(new: str) -> str:
    """The reason shown in the notice of an old name of ``new`` (:data:`RENAMED`)."""
    return "it picks the shipped default, a DRUNet" if new == DEFAULT_DENOISER else WHY_RENAMED


@dataclass(frozen=True)
class ModelEntry:
    """One shipped model.

    :param name: registry name.
    :param file: file name inside ``pretrained/``.
    :param sha256: hash of the file (checked on load).
    :param role: ``denoiser`` (PnP, any sigma) or ``sr`` (RGM block-mean super-resolution).
    :param channels: 1 (gray) or 3 (colour).
    :param default: True for the model the ``default`` denoiser picks for its channel count.
    :param family: a denoiser name shared by a colour and a gray model (``unet-lpips``): it picks this model for
        images with its channel count, as ``default`` picks the defaults; None: no family.
    :param summary: one line for listings.
    :param record: training record (command, steps, hardware, files, losses, validation PSNR).
    """

    name: str
    file: str
    sha256: str
    role: str
    channels: int
    default: bool = False
    family: Optional[str] = None
    summary: str = ""
    record: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return PRETRAINED_DIR / self.file


registry: Registry[ModelEntry] = Registry("model")


def read_index(index: Path) -> list[ModelEntry]:
    """The entries of a model index (``index.json``: ``{"models": [entry, ...]}``), none when it is missing; a damaged
    one is a :class:`UserError` with the fix."""
    try:
        models = io.read_json(index)["models"] if index.is_file() else []
        if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str)
                                                   for m in models):
            raise ValueError("not a list of model entries")
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise UserError(f"cannot read the model index {index} ({type(err).__name__}: {str(err)[:80]}); restore it "
                        f"from git (git checkout -- {index}).") from None
    entries = []
    for entry in models:
        try:
            entries.append(ModelEntry(**entry))
        except TypeError as err:  # a key ModelEntry lacks, or one missing
            raise UserError(f"cannot read the model index {index}: entry {entry['name']!r} does not fit ({err}); "
                            f"restore it from git (git checkout -- {index}).") from None
    return entries


for _entry in read_index(INDEX):
    registry.add(_entry.name, _entry, _entry.summary)
for _old, _new in RENAMED.items():
    if _new in registry:
        registry.alias(_old, _new, WHY_RENAMED)


def old_names(name: str) -> list[str]:
    """The former names of a shipped model, family or denoiser name (still accepted, with a notice)."""
    return [old for old, new in RENAMED.items() if new == name]


def load_generator_file(path: str | Path, *, device: str | torch.device = "cpu", official_config: Optional[str] = None):
    """An RGM generator from our model file, or from an official checkpoint when ``official_config`` is given."""
    if official_config is not None:
        from pnprgm.rgm.official import load_generator

        return load_generator(path, config=official_generator_config(official_config), device=device)
    from pnprgm.rgm.model_file import load_model

    return load_model(path, device=device)


def official_generator_config(official_config: str) -> Any:
    """What ``--model-config`` names, checked: a registered config's name, or the argument dict of a .json/.yaml
    file; anything else is a :class:`UserError` (checked before a batch, so that it is said once)."""
    from pnprgm.rgm.official.configs import CONFIGS

    if str(official_config).endswith((".json", ".yaml", ".yml")):  # the official argument dict, as a file
        from pnprgm.config import read_config_file

        return _official_arguments(official_config, read_config_file(official_config))
    if Path(official_config).suffix or Path(official_config).exists():  # a file, not a registered name
        raise UserError(f"official config {official_config}: a file of the official arguments is .json, .yaml or "
                        f".yml; rename it, or give a config name: {', '.join(CONFIGS.names())}.")
    CONFIGS.get(official_config)  # an unknown name: the choices
    return official_config


def _official_arguments(source: str, config: dict) -> dict:
    """An official argument dict read from ``source``; every key must be one of the official train.py arguments (a
    typo in a generator argument would otherwise show only as a layout that does not fit): the others are an error
    naming each, with the argument it may stand for."""
    import difflib

    from pnprgm.rgm.official.configs import CONFIGS, known_arguments

    known = known_arguments()
    unknown = sorted(str(key) for key in config if key not in known)  # YAML keys may be numbers
    if unknown and len(unknown) == len(config):
        raise UserError(f"{source} holds none of the official RGM train.py arguments (it has {', '.join(unknown[:5])}); "
                        f"give that argument dict (image_size, num_channels_dae, ch_mult...) or a config name: "
                        f"{', '.join(CONFIGS.names())}.")
    if unknown:
        hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, known, n=1)) else key
                 for key in unknown]
        raise UserError(f"{source}: {', '.join(hints)} {'is not an argument' if len(unknown) == 1 else 'are not arguments'} "
                        f"of the official RGM train.py; correct or remove {'it' if len(unknown) == 1 else 'them'}.")
    return config


def canonical(name: str) -> str:
    """Today's name of a shipped model, family or ``default`` (an old name is announced once, on stderr)."""
    if name not in RENAMED:
        return name
    new = RENAMED[name]
    announce_rename("model" if new in registry else "denoiser", name, new, why_renamed(new))
    return new


@dataclass(frozen=True)
class ModelSource:
    """What a model string names (:func:`resolve`).

    :param name: today's name of the shipped model, or the string as given for a file.
    :param path: the model file.
    :param entry: the shipped model's index entry; None for a file.
    :param official_config: for ``PATH#CONFIG``, the official generator config (``celebahq256``, ``cifar10`` or a
        JSON/YAML file of the official arguments); None for our model files.
    """

    name: str
    path: Path
    entry: Optional[ModelEntry] = field(default=None, repr=False)
    official_config: Optional[str] = None

    @property
    def sha256(self) -> str:
        return self.entry.sha256 if self.entry is not None else io.sha256_file(self.path)

    @property
    def files_read(self) -> list[Path]:
        """The model file and its official config file (``PATH#cfg.yaml``): outputs must never replace them."""
        config = Path(self.official_config) if self.official_config is not None else None
        return [self.path] + ([config] if config is not None and config.is_file() else [])


def resolve(source: str | Path, channels: int = 3, *, what: str = "model", required: bool = True) -> Optional[ModelSource]:
    """The model file a string names, the one reader of model strings: a shipped model by name, the member of a
    family or of ``default`` for ``channels``-channel images, an old name of any of these, or a file ``PATH``
    (``PATH#CONFIG``: an official checkpoint with its generator config). Shipped files are checked against their
    sha256. Anything else is a :class:`UserError` naming ``what``, or None when not ``required``."""
    text = str(source)
    if not text.strip():  # Path("") is the current folder: "model  is a folder" named nothing the user typed
        raise UserError(f"the {what} name is empty; give a shipped model by name ({', '.join(registry.names())}) or "
                        f"the path of a model file.")
    name = canonical(text)
    entry = None
    if name == DEFAULT_DENOISER:
        entry = default_model(channels)
    elif name in families():
        entry = family_model(name, channels)
    elif name in registry:
        entry = registry.get(name)
    if entry is not None:
        verify(entry)
        return ModelSource(entry.name, entry.path, entry)
    file, official = split_official(text)
    if Path(file).is_file():
        return ModelSource(text, Path(file), None, official)
    if not required:
        return None
    missing = missing_file(text)
    if missing:
        raise UserError(f"{what} {missing}; give the path of a model file, or a shipped model by name "
                        f"({', '.join(registry.names())}).")
    raise UserError(f"{what} {text!r} is neither a shipped model ({', '.join(registry.names())}) nor a file; "
                    f"give a model name or the path of a model.pt.")


#: Suffixes of model files: a name that ends so is meant as a file, not as a shipped model's name.
MODEL_SUFFIXES = (".pt", ".pth")


def missing_file(text: str) -> Optional[str]:
    """``"PATH does not exist"`` / ``"PATH is a folder"`` (or a shipped name given a ``#CONFIG``) when ``text`` is
    meant as a model file (it has a folder part, a ``#CONFIG`` or a model file's suffix) and no such file is there;
    None otherwise (a file, or a name)."""
    file, official = split_official(text)
    path = Path(file)
    if path.is_file():
        return None
    if official is not None and resolve(file, required=False) is not None:
        return (f"{file}#{official}: {file} is a shipped model, and #CONFIG is only for an official checkpoint file "
                f"(netG_*.pth#celebahq256)")
    if path.is_dir():
        return f"{file} is a folder"
    meant_as_file = official is not None or path.suffix.lower() in MODEL_SUFFIXES or len(path.parts) > 1
    return f"{file} does not exist" if meant_as_file else None


def split_official(text: str) -> tuple[str, Optional[str]]:
    """``PATH#CONFIG`` (an official checkpoint with its generator config) -> ``(PATH, CONFIG)``; ``PATH`` ->
    ``(PATH, None)``."""
    file, _, official = str(text).partition("#")
    return file, official or None


def training_photos(source: str | Path, channels: int = 3) -> tuple[set[str], list[str]]:
    """The sha256 of every photo that trained ``source`` or a model it was fine-tuned from, and the lineage steps
    that could not be followed (a model file that is gone, a record without its file list).

    Follows the records: their ``files`` (``pnprgm train``) or ``data.train_files`` (the GPU recipe), then
    ``init_from``: its ``source`` while that resolves to the file it recorded (same sha256), else the ``init_from``
    record nested in it (which keeps no file list). A benchmark that promises photos no model saw leaves out those whose sha256 is here."""
    seen: set[str] = set()
    unknown: list[str] = []
    visited: set[str] = set()
    todo: list[tuple[str, Optional[Mapping[str, Any]]]] = [(str(source), None)]
    while todo:
        name, nested = todo.pop()
        found = resolve(RENAMED.get(name, name), channels, required=False)  # a record's old name: no notice
        recorded = (nested or {}).get("sha256")
        if found is not None and recorded and recorded != (found.entry.sha256 if found.entry is not None
                                                            else io.sha256_file(found.path)):
            # the name now holds another file (a model continued under its own name): its record is not this one's
            unknown.append(f"{name} (an earlier version, sha256 {str(recorded)[:16]}...)")
            parent = nested.get("init_from")
        elif found is None:  # gone: only its nested record (no file list) can lead further back
            unknown.append(name)
            parent = (nested or {}).get("init_from")
        else:
            key = str(found.path.resolve())
            if key in visited:
                continue
            visited.add(key)
            if found.official_config is not None:  # an official checkpoint: trained on CelebA-HQ, not on our photos
                continue
            record = (found.entry.record if found.entry is not None else
                      model_file_record(found.path)) or {}
            files = training_files(record)
            if not files:
                unknown.append(f"{name} (its record lists no training photos)")
            seen.update(f["sha256"] for f in files if isinstance(f, Mapping) and f.get("sha256"))
            parent = record.get("init_from")
        if isinstance(parent, Mapping) and parent.get("source"):
            todo.append((str(parent["source"]), parent))
        elif isinstance(parent, str) and parent:
            todo.append((parent, None))
    return seen, unknown


def training_files(record: Mapping[str, Any]) -> list:
    """The training photos a record lists (name, sha256...): ``files`` of a ``pnprgm train`` run, ``data.train_files``
    of the GPU recipe; [] when it lists none."""
    return list(record.get("files") or (record.get("data") or {}).get("train_files") or [])


def model_file_record(path: Path) -> dict[str, Any]:
    """The training record stored in one of our model files ({} when it has none)."""
    from pnprgm.rgm.model_file import read_model_file

    return dict(read_model_file(path).get("record") or {})


def model_path(source: str | Path, *, what: str = "model") -> Path:
    """The file of a shipped model name (hash-checked) or of a path (``PATH#CONFIG``: the part before ``#``)."""
    return resolve(source, what=what).path


def source_info(source: str) -> tuple[int, str]:
    """``(channels, sha256)`` of a shipped model name, one of our model files, or ``PATH#CONFIG`` (official)."""
    found = resolve(source)
    if found.entry is not None:
        return found.entry.channels, found.entry.sha256
    config = dict(getattr(load_generator_file(found.path, official_config=found.official_config), "config", {}) or {})
    channels = config.get("channels", config.get("num_channels"))
    if channels not in (1, 3):
        raise UserError(f"model {source!r} does not say how many channels it takes; give one of our model files.")
    return int(channels), found.sha256


#: ``(path, size, mtime)`` of shipped files already checked in this process (a changed file is checked again).
_VERIFIED: set[tuple[str, int, int]] = set()


def verify(entry: ModelEntry) -> None:
    """Check a shipped file against its recorded sha256 (once per process while the file is unchanged)."""
    if not entry.path.is_file():
        raise UserError(f"shipped model {entry.name!r} is missing ({entry.path}); reinstall pnprgm.")
    stat = entry.path.stat()
    key = (str(entry.path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    if io.sha256_file(entry.path) != entry.sha256:
        raise UserError(f"shipped model {entry.name!r} does not match its sha256 in pretrained/index.json; reinstall pnprgm.")
    _VERIFIED.add(key)


def default_model(channels: int, role: str = "denoiser") -> ModelEntry:
    """The shipped default for ``channels`` (colour vs gray picked from the input)."""
    for entry in registry.entries():
        model = entry.obj
        if model.default and model.role == role and model.channels == channels:
            return model
    for entry in registry.entries():  # a colour model denoises gray images channel-replicated, and vice versa
        if entry.obj.default and entry.obj.role == role:
            return entry.obj
    raise UserError(f"no shipped {role} model for {channels}-channel images; pass --denoiser nlm or a model file.")


def families() -> dict[str, dict[int, ModelEntry]]:
    """Shipped denoiser families: name -> {channels: model}."""
    found: dict[str, dict[int, ModelEntry]] = {}
    for entry in registry.entries():
        model = entry.obj
        if model.family and model.role == "denoiser":
            found.setdefault(model.family, {})[model.channels] = model
    return found


def family_model(family: str, channels: int) -> ModelEntry:
    """The member of a shipped family for ``channels`` (else its other member, channel-adapted by the caller)."""
    members = families().get(family)
    if not members:
        raise UserError(f"no shipped model family {family!r}; `pnprgm models` lists the shipped models.")
    return members.get(channels) or next(iter(members.values()))


def shipped_entry(name: str, channels: int) -> Optional[ModelEntry]:
    """The shipped model a denoiser name (or an old name of it) loads for ``channels``-channel images; None for
    any other name (:func:`resolve`)."""
    name = canonical(name)
    if name == DEFAULT_DENOISER or name in families() or name in registry:
        return resolve(name, channels).entry
    return None


def model_behind(denoiser: str, channels: int) -> Optional[dict[str, str]]:
    """Name and sha256 of the model file a denoiser name loads for ``channels``-channel images (a shipped one or a
    file, :func:`resolve`); None for the others (``tv``, ``nlm``...)."""
    found = resolve(denoiser, channels, required=False)
    return None if found is None else {"name": found.name, "sha256": found.sha256}


#: what a published model's name may be: it is also a file name in the shipped folder, so no path separators
PUBLISHED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")

#: the forward processes a model of each role may have been trained on (a file without one: RGM's ddpm, as
#: :class:`pnprgm.denoisers.rgm.RGMDenoiser` reads it)
ROLE_PROCESSES = {"denoiser": ("denoise", "ddpm"), "sr": ("sr",)}


def publish(source: str | Path, name: str, *, role: str = "denoiser", default: Optional[bool] = None, summary: str = "",
            family: Optional[str] = None, directory: str | Path = PRETRAINED_DIR, replace: bool = False) -> ModelEntry:
    """Ship a trained model: write ``directory/NAME.pt`` (EMA weights, config and training record, from a model
    file or a training checkpoint) and record it, with its sha256, in ``directory/index.json``.

    :param source: ``RUN_DIR/model.pt`` or a checkpoint (``RUN_DIR/last.pt``).
    :param name: registry name (also the file name).
    :param role: ``denoiser`` (PnP, any sigma) or ``sr``.
    :param default: make it the default for its channel count and role (others of that kind lose the flag); None:
        as the model it replaces (``replace``), else not the default. Replacing the default keeps it the default.
    :param summary: one line for ``pnprgm models``.
    :param family: denoiser family name (:class:`ModelEntry`); another model of that family with the same channel
        count leaves it. None: the family of the model it replaces, if any.
    :param directory: where the shipped files and the index live.
    :param replace: replace a model already published as ``name`` (default: refuse, so that a new model never
        silently takes the place of a shipped one).
    """
    from pnprgm.denoisers import registry as denoiser_registry
    from pnprgm.rgm.model_file import read_model_file, save_model

    if role not in ROLE_PROCESSES:
        raise UserError(f"role must be denoiser or sr; got {role!r}.")
    if not isinstance(name, str) or not PUBLISHED_NAME.fullmatch(name) or name.endswith(".pt"):
        raise UserError(f"a published model's name is also its file name: letters, digits, '.', '_', '+' and '-', "
                        f"starting with a letter or digit, without '.pt' (e.g. unet-denoiser-color-2); got {name!r}.")
    if name in RENAMED or family in RENAMED:
        raise UserError(f"{name if name in RENAMED else family!r} is the old name of "
                        f"{RENAMED.get(name) or RENAMED.get(family)!r} (pnprgm.rgm.models.RENAMED); choose another name.")
    taken = family in denoiser_registry.names() and family not in families()  # "default", "tv", a model name...
    if family is not None and (role != "denoiser" or taken or not PUBLISHED_NAME.fullmatch(str(family))):
        raise UserError(f"family {family!r} must name denoisers (letters, digits, '.', '_', '+', '-') and not be taken "
                        f"by another denoiser; choose a new name.")
    shipped_names = {entry.name for entry in registry.entries()}
    if name in denoiser_registry.names() and name not in shipped_names:  # tv, nlm, default, a family...
        raise UserError(f"{name!r} names a denoiser pnprgm has (pnprgm denoisers); a published model needs a name of "
                        f"its own.")
    if len(name) > 200:  # it is a file name too, with room for the temporary written first
        raise UserError(f"a published model's name is also its file name: at most 200 characters; got {len(name)}.")
    if "\n" in summary or "\r" in summary:
        raise UserError("summary is one line for pnprgm models; remove its line breaks.")
    content = read_model_file(source)
    trained_on = (content.get("process") or {}).get("name") or "ddpm"
    if trained_on not in ROLE_PROCESSES[role]:
        fits = next((r for r, names in ROLE_PROCESSES.items() if trained_on in names), None)
        raise UserError(f"{source} was trained on the {trained_on} process, and a {role} model needs "
                        f"{' or '.join(ROLE_PROCESSES[role])}"
                        + (f"; publish it with role={fits!r}." if fits else
                           f"; such a model runs with `pnprgm sample`, not as a shipped {role}."))
    directory = Path(directory)
    blocking = next((folder for folder in (directory, *directory.parents) if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"cannot publish into {directory}: {blocking} is a file, not a folder; give a folder.")
    index = directory / "index.json"
    models = read_index(index)  # read before writing anything: a damaged index must not leave a model file it does not list
    # case-blind: on macOS and Windows disks Mine.pt is mine.pt
    same_letters = [m.name for m in models if m.name.casefold() == name.casefold()]
    if same_letters and name not in same_letters:
        raise UserError(f"{name!r} differs from the published {same_letters[0]!r} only in letter case, which some "
                        f"file systems do not tell apart; choose another name.")
    if not replace and (same_letters or (directory / f"{name}.pt").exists()):
        raise UserError(f"a model named {name!r} is already in {directory}; choose another name, or pass "
                        f"replace=True to replace it.")
    generator = content["generator"]
    channels = int(generator["config"]["channels"])
    replaced = next((m for m in models if m.name == name), None)
    if replaced is not None and replaced.role == role and replaced.channels == channels:
        # a new file for a shipped name keeps its place unless told otherwise (only where it is the same kind of
        # model: a gray file under a colour default's name must not take the gray default's place)
        default = replaced.default if default is None else default
        family = replaced.family if family is None else family
    default = bool(default)
    record = content.get("record") or {}
    target = save_model(directory / f"{name}.pt", generator["state_dict"], generator["config"], content["process"], record)
    entry = ModelEntry(name=name, file=target.name, sha256=io.sha256_file(target), role=role,
                       channels=channels, default=default, family=family, summary=summary,
                       record=record)
    kept = []
    for other in models:
        if other.name == name:
            continue
        if default and other.role == role and other.channels == entry.channels:
            other = dataclasses.replace(other, default=False)
        if family and other.family == family and other.channels == entry.channels:
            other = dataclasses.replace(other, family=None)
        kept.append(other)
    io.write_json(index, {"models": [describe(m) for m in sorted(kept + [entry], key=lambda m: m.name)]})
    return entry


def objective(record: dict) -> str:
    """What trained a model, in words, from its training record: the recipe's own statement, or the loss terms of
    a ``pnprgm train`` run (``train`` section; records written before ``prior_weight`` existed ran with weight 1)."""
    if record.get("objective"):
        return str(record["objective"])
    train = record.get("train") or {}
    if not train:
        return "unknown (no training record)"
    terms = []
    if float(train.get("supervised") or 0) > 0:
        terms.append(f"MSE to the clean image (x{train['supervised']:g})")
    if float(train.get("perceptual") or 0) > 0:
        terms.append(f"LPIPS-alex (x{train['perceptual']:g})")
    if float(train.get("lmbda") or 0) > 0:
        terms.append(f"RGM fidelity (lmbda {train['lmbda']:g})")
    prior_weight = 1.0 if train.get("prior_weight") is None else float(train["prior_weight"])
    if prior_weight > 0:
        terms.append(f"RGM {train.get('prior', 'kld')} prior (weight {prior_weight:g})")
    text = " + ".join(terms) or "nothing"
    return text if prior_weight > 0 else text + "; no RGM prior"


def describe(entry: ModelEntry) -> dict[str, Any]:
    """The index form of an entry (also the JSON of listings)."""
    return {"name": entry.name, "file": entry.file, "sha256": entry.sha256, "role": entry.role,
            "channels": entry.channels, "default": entry.default, "family": entry.family, "summary": entry.summary, "record": entry.record}
