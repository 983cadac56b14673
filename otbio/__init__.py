"""otbio: optimal transport for biology.

One engine (:mod:`otbio.ot`) of Numba-parallel log-domain Sinkhorn kernels with an
optional CuPy twin, and three applications on top of it:

- :mod:`otbio.lot`: linearized optimal transport (LOT) embeddings of single-cell samples;
- :mod:`otbio.register`: elastic registration of spatial-transcriptomics slices;
- :mod:`otbio.align`: protein substructure alignment via Sinkhorn.

The arrows run one way: ``cli -> {lot, register, align} -> ot``.
"""

from __future__ import annotations

from otbio import _threading
from otbio._errors import ConvergenceWarning, InputError, OtbioError

# Numba is not imported here (0.3 s); the threading layer and the fail-soft Numba cache
# (otbio._numba_cache) are set up by an import hook the moment Numba is first imported.
_threading._install_hook()

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "InputError", "OtbioError", "__version__"]

_SUBMODULES = {"ot", "lot", "register", "align", "plot", "io"}


def __getattr__(name: str):
    """Import the subpackages on first use (``otbio.register(...)``, ``otbio.lot.embed``)."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"otbio.{name}")
    msg = f"module 'otbio' has no attribute '{name}'"
    raise AttributeError(msg)
