"""Choose a Numba threading layer that does not fight OpenBLAS.

Numba's default OpenMP layer keeps its worker threads spinning after a parallel kernel
returns; on a small machine they then compete with OpenBLAS threads and BLAS-based code
(matrix products, POT's dense solvers) runs 7-40x slower right after an otbio kernel.
The ``workqueue`` layer has no spinning workers and removes the effect, so otbio selects it
unless the user asked for a layer explicitly with ``NUMBA_THREADING_LAYER``.

The ``workqueue`` layer must not be entered from two Python threads at once, so otbio runs
independent problems side by side only in code that does not launch parallel kernels (POT's
network simplex releases the GIL), and runs its own parallel kernels one problem at a time.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
import threading
from contextlib import contextmanager

__all__ = [
    "check_environment",
    "num_threads",
    "apply_pending_threads",
    "one_blas_thread",
    "threading_layer_name",
    "tune_malloc",
    "use_threads",
]

# Numba costs about 0.3 s to import and is needed only when a kernel module is imported, so
# ``import otbio`` does not import it. What otbio must set before Numba's first use (the
# threading layer, the fail-soft on-disk cache of otbio._numba_cache, the command line's
# thread count) is applied by a one-shot import hook the moment Numba is imported, by otbio or
# by anyone else, or at once when Numba was imported before otbio.

_LOCK = threading.Lock()
_PENDING_THREADS: list[int] = []  # the command line's --jobs, applied when Numba is imported


def _on_numba(numba) -> None:
    """Set-up that must precede the first kernel: cache fallback, threading layer, threads."""
    from otbio._numba_cache import install

    install()
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
    with _LOCK:
        pending = _PENDING_THREADS[-1:]
        _PENDING_THREADS.clear()
    if pending:
        _set_threads(numba, pending[0])


class _NumbaImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`_on_numba` right after ``numba/__init__`` has executed (one shot)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "numba":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("numba")  # the real finder (this hook is gone)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_configure(module):
            exec_module(module)
            _on_numba(module)

        spec.loader.exec_module = exec_then_configure
        return spec


def _remove_hook() -> None:
    with _LOCK:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _NumbaImportHook)]


def _install_hook() -> None:
    """Called once by ``otbio/__init__``: configure Numba now if imported, else on import."""
    if "numba" in sys.modules:
        _on_numba(sys.modules["numba"])
        return
    with _LOCK:
        if not any(isinstance(f, _NumbaImportHook) for f in sys.meta_path):
            sys.meta_path.insert(0, _NumbaImportHook())


def _set_threads(numba, n: int) -> None:
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def use_threads(n: int) -> None:
    """Process tuning for the command line: Numba kernels use ``n`` threads.

    Applied at once when Numba is loaded, else when it is first imported (by the thread that
    imports it, the main thread in every command), so that commands that run no kernel never
    pay for Numba's import.
    """
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "set_num_threads"):
        _set_threads(numba, n)
        return
    with _LOCK:
        _PENDING_THREADS[:] = [int(n)]


def apply_pending_threads() -> None:
    """Import Numba now, in this thread, when a :func:`use_threads` count still waits for it.

    Numba's thread count belongs to the thread that sets it. Code about to run work in a pool
    of threads (:func:`otbio.ot.map_batch`) calls this first, so that a worker importing Numba
    does not take the command line's ``--jobs`` away from the calling thread.
    """
    with _LOCK:
        pending = bool(_PENDING_THREADS)
    if pending:
        import numba  # noqa: F401  (the import hook applies the count in this thread)


def expected_threads() -> int:
    """Numba's thread count for kernels launched from this thread, without importing Numba."""
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "get_num_threads"):
        return int(numba.get_num_threads())
    env = os.environ.get("NUMBA_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        cap = int(env)
    else:  # Numba's default: the CPUs this process may run on
        try:
            cap = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS
            cap = os.cpu_count() or 1
    with _LOCK:
        return max(1, min(_PENDING_THREADS[0], cap)) if _PENDING_THREADS else cap


def threading_layer_name() -> str:
    """Name of the configured Numba threading layer (before or after the first launch)."""
    numba = sys.modules.get("numba")
    if numba is None or not hasattr(numba, "threading_layer"):  # chosen when Numba loads
        return os.environ.get("NUMBA_THREADING_LAYER", "workqueue")
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return str(numba.config.THREADING_LAYER)


@contextmanager
def num_threads(n: int | None):
    """Set Numba's thread count for a block and restore it afterwards, even on error."""
    if n is None or n <= 0:
        yield
        return
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """Context manager: BLAS limited to one thread for a block (cheap after the first call).

    For BLAS work that runs beside other threads or Numba kernels (problems side by side in
    :func:`otbio.ot.map_batch`, small factorisations), and wherever the rounding of a matrix
    product must not depend on how many BLAS threads it got.
    """
    return _blas_controller().limit(limits=1, user_api="blas")


_MALLOC_TUNED = False


def tune_malloc() -> None:
    """Keep 16 MiB of freed heap memory instead of returning it to the OS at every free.

    Process tuning, called by the command line (``otbio align``), never by the library: an
    alignment allocates and frees many arrays of 10-200 kB; with glibc's default policy the
    heap is trimmed after each and its pages are faulted in again by the next, which made
    alignments of 150-residue chains 1.7x slower. Once per process, with glibc only, and not
    when the user set any ``MALLOC_*`` variable or ``OTBIO_MALLOC_TUNING=0``. Python callers
    who want the same speed call it themselves.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if os.environ.get("OTBIO_MALLOC_TUNING", "1") == "0" or any(
        k.startswith("MALLOC_") for k in os.environ
    ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-2, 16 << 20)  # M_TOP_PAD
    except (OSError, AttributeError):  # not glibc
        pass


_LAYERS = {  # NUMBA_THREADING_LAYER -> the backends Numba may load for it (on Linux)
    "default": ("tbb", "omp", "workqueue"),
    "workqueue": ("workqueue",),
    "tbb": ("tbb",),
    "omp": ("omp",),
    "safe": ("tbb",),
    "threadsafe": ("tbb", "omp"),
    "forksafe": ("tbb", "workqueue")
    if sys.platform.startswith("linux")
    else ("tbb", "omp", "workqueue"),
}


def _backend_loads(name: str) -> bool:
    """Whether Numba's threading backend ``name`` can load, without importing Numba."""
    import ctypes
    import glob
    import importlib.util

    if name == "workqueue":
        return True
    try:
        if name == "tbb":  # as Numba checks it: libtbb.so.12, interface version >= 12060
            lib = ctypes.CDLL({"darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}.get(
                sys.platform, "libtbb.so.12"))  # fmt: skip
            lib.TBB_runtime_interface_version.restype = ctypes.c_int
            if lib.TBB_runtime_interface_version() < 12060:
                return False
        spec = importlib.util.find_spec("numba")
        where = os.path.join(os.path.dirname(spec.origin), "np", "ufunc") if spec else ""
        found = glob.glob(os.path.join(where, f"{name}pool*"))
        if not found:
            return False
        ctypes.CDLL(found[0])
    except (OSError, AttributeError, ImportError):
        return False
    return True


def check_environment() -> None:
    """Refuse, before any work, Numba settings of the environment that would fail later:
    ``NUMBA_NUM_THREADS`` that is not a positive whole number, ``NUMBA_THREADING_LAYER`` that
    is unknown or names a layer whose library (TBB, OpenMP) is missing. Raises InputError."""
    from otbio._errors import InputError

    n = os.environ.get("NUMBA_NUM_THREADS")
    if n is not None and not (n.strip().isdigit() and int(n) > 0):
        msg = f"NUMBA_NUM_THREADS must be a positive whole number, got '{n}'; unset it to use every CPU"
        raise InputError(msg)
    layer = os.environ.get("NUMBA_THREADING_LAYER")
    if layer is None:
        return
    want = layer.strip().lower()
    if want not in _LAYERS:
        msg = (
            f"NUMBA_THREADING_LAYER '{layer}' is not a Numba threading layer; use one of "
            f"{', '.join(_LAYERS)}, or unset it (otbio picks workqueue)"
        )
        raise InputError(msg)
    if not any(_backend_loads(b) for b in _LAYERS[want]):
        need = " or ".join({"tbb": "Intel TBB 2021.6 or later (pip install tbb)",
                            "omp": "OpenMP"}[b] for b in _LAYERS[want])  # fmt: skip
        msg = (
            f"NUMBA_THREADING_LAYER={layer} needs {need}, which cannot be loaded; install it "
            "or unset NUMBA_THREADING_LAYER (otbio picks workqueue)"
        )
        raise InputError(msg)
