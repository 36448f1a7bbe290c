"""Old home of the shipped-model index, now :mod:`pnprgm.rgm.models`: importing this name warns and gives that
module itself (``models.publish`` and ``models.registry`` in users' scripts keep working)."""
import importlib
import sys
import warnings

warnings.warn("pnprgm.models is now pnprgm.rgm.models; import that instead.", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("pnprgm.rgm.models")
