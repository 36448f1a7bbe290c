"""Which packages are installed, and from which folder (everything else is declared in setup.cfg).

The checkout keeps ``operators/``, ``cli/`` and ``pretrained/`` as top-level folders, but they are installed inside
the ``pnprgm`` namespace (``pnprgm.operators``, ``pnprgm.cli``, ``pnprgm.pretrained``) so that ``pnprgm`` is the only
name this project puts into site-packages. The list is computed here because setup.cfg's ``find:`` cannot rename
what it finds, and a hand-written list would silently drop a subpackage added later.
"""
from setuptools import find_packages, setup

FOLDERS = ("operators", "cli", "pretrained")  # top-level folder F is installed as pnprgm.F

setup(
    packages=find_packages(include=["pnprgm", "pnprgm.*"])
    + [f"pnprgm.{name}" for name in find_packages(include=[p for f in FOLDERS for p in (f, f"{f}.*")])],
    package_dir={f"pnprgm.{folder}": folder for folder in FOLDERS},
)
