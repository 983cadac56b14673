"""Numba kernels of the engine: plain functions over C-contiguous arrays.

Every kernel walks rows ``i`` of ``x`` in parallel (``prange`` over row blocks, one scratch
row per block) and, for each row, fills a score buffer over all columns ``j``

.. math:: s_{ij} = h_j - c(x_i, y_j) / \\varepsilon

from the cost code, then reduces it (log-sum-exp, weighted sums, argmax, top-k). Nothing of
size n x m is ever allocated: memory is O((n + m) d) plus one row per thread.

Cost codes (the ``code`` argument), with ``yt`` the transposed columns (d x m):

- ``0`` squared Euclidean through a dot product: the caller passes ``yt = 2 y^T / eps`` and
  folds ``-|y_j|^2 / eps`` into ``h`` and ``-|x_i|^2 / eps`` into the row offset;
- ``1`` L1 (cityblock): ``sum_k |x_ik - y_jk|``;
- ``2`` hinge ``sum_k max(0, x_ik - y_jk)`` (PLASMA's query-containment cost);
- ``3`` reversed hinge ``sum_k max(0, y_jk - x_ik)`` (the hinge seen from the other side).

Small problems (n x m up to a few million entries) take a dense route instead, serial and
without the GIL (``nogil``) so that independent problems can run side by side in threads:
:func:`cost_dense` fills the cost matrix once and :func:`dense_sinkhorn` runs the whole
Sinkhorn loop in one call, as matrix-vector products on a log-stabilised kernel.

``exp`` is a polynomial with range reduction that vectorises (Numba's ``math.exp`` compiles
to a scalar library call, about 7x slower). Fast-math is limited to
``{"reassoc", "contract", "arcp"}`` so that ``log(0) = -inf`` from zero weights survives.

The kernels live in three modules by job: :mod:`otbio.ot._exp` (the polynomial exp),
:mod:`otbio.ot._online` (the online row kernels) and :mod:`otbio.ot._dense` (the dense
route); this module gathers them and silences Numba's spurious IR warning around their
compilation only.
"""

from __future__ import annotations

import warnings

from numba.core.errors import NumbaIRAssumptionWarning

from otbio.ot._dense import (
    _dense_rebase,  # noqa: F401  (called from _sinkhorn as K._dense_rebase)
    cost_dense,
    dense_first_g,
    dense_plan_scaled,
    dense_sinkhorn,
)
from otbio.ot._exp import FASTMATH, exp_f32, exp_f64
from otbio.ot._online import apply_rows, lse_rows, min_score_rows, topk_rows

__all__ = [
    "FASTMATH",
    "apply_rows",
    "cost_dense",
    "dense_first_g",
    "dense_plan_scaled",
    "dense_sinkhorn",
    "exp_f32",
    "exp_f64",
    "lse_rows",
    "min_score_rows",
    "topk_rows",
]


def _quiet_compile(dispatcher):
    """Compile ``dispatcher`` with Numba's spurious IR warning silenced, in that scope only.

    Numba's internal SSA check warns ("variable ... is not in scope") when it first compiles
    a kernel that inlines the exp overload; the code is correct (tested against NumPy). The
    filter is installed around the compilation only, never process-wide.
    """
    compile_ = dispatcher.compile

    def compile(sig):
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"(?s).*_exp_ov", category=NumbaIRAssumptionWarning
            )
            return compile_(sig)

    dispatcher.compile = compile
    return dispatcher


for _name in (*__all__[1:], "_dense_rebase"):
    _quiet_compile(globals()[_name])
