"""``pnprgm.operators``, ``pnprgm.cli`` and ``pnprgm.pretrained`` in a source checkout, and their old names.

The repository keeps ``operators/``, ``cli/`` and ``pretrained/`` as top-level folders next to ``pnprgm/``; setup.py
installs them as ``pnprgm.operators``, ``pnprgm.cli`` and ``pnprgm.pretrained`` (a wheel puts them inside
``pnprgm/``). In a checkout they are not inside ``pnprgm/``, so :func:`find_siblings` maps each of them to the folder
next to the ``pnprgm/`` that was imported. The editable install's own finder also maps them, but to the checkout that
was installed, which need not be the one imported (a second worktree on ``PYTHONPATH`` would silently get the first
one's operators), and it does not exist when a checkout is used without installing (``PYTHONPATH=checkout``).

They used to be installed as the top-level packages ``operators``, ``cli`` and ``pretrained``. Those
names still import where the folders are on ``sys.path`` (a script run from the checkout root), with a
``DeprecationWarning``, as the new packages (:func:`redirect_old_name`). A regular install has no such names.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from pathlib import Path

FOLDERS = ("operators", "cli", "pretrained")  # top-level folder F of the checkout is the package pnprgm.F


class _SiblingFolders(importlib.abc.MetaPathFinder):
    """Finds ``pnprgm.F`` in the folder ``F`` next to the imported ``pnprgm/``, and nothing else."""

    def __init__(self, folders: dict[str, Path]):
        self.folders = folders

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def find_siblings(init_file: str) -> None:
    """Resolve ``pnprgm.F`` from the folder ``F`` next to ``pnprgm/`` (the folder of ``init_file``) in a checkout;
    nothing to do in a regular install, where ``F`` is inside ``pnprgm/``."""
    package_dir = Path(init_file).resolve().parent
    folders = {f"pnprgm.{name}": package_dir.parent / name for name in FOLDERS
               if not (package_dir / name).exists() and (package_dir.parent / name / "__init__.py").is_file()}
    if folders:
        # First on sys.meta_path: ahead of an editable install's finder that may point at another checkout.
        sys.meta_path.insert(0, _SiblingFolders(folders))


def redirect_old_name(old: str) -> None:
    """Make the pre-namespace name ``old`` (``operators``, ``cli``, ``pretrained``) the module ``pnprgm.<old>``, and
    ``old.X`` each ``pnprgm.<old>.X`` already imported; called from the folder's ``__init__`` imported as ``old``.

    ``pnprgm.operators`` imports all its modules, so old operator imports share the registry and the classes. A
    module first imported under an old name afterwards is a second copy of its file: ``cli.main`` must be one, for
    ``python -m cli.main`` (runpy runs the file under the name it was given). The rest of the calling ``__init__``
    then runs once more in the discarded module; it only binds names already imported.
    """
    new = f"pnprgm.{old}"
    # stacklevel 3: the user's import line (importlib's frames are skipped by the warnings module).
    warnings.warn(f"'import {old}' is deprecated and works only from a source checkout: "
                  f"use 'import {new}' (or 'from pnprgm import {old}')", DeprecationWarning, stacklevel=3)
    importlib.import_module(new)
    for name, module in list(sys.modules.items()):
        if name == new or name.startswith(new + "."):
            sys.modules[old + name[len(new):]] = module
