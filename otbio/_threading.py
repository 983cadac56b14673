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
import os
from contextlib import contextmanager

import numba

__all__ = ["num_threads", "one_blas_thread", "threading_layer_name", "tune_malloc"]

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def threading_layer_name() -> str:
    """Name of the configured Numba threading layer (before or after the first launch)."""
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
