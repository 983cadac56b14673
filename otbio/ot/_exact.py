"""Exact optimal transport through POT's network simplex, and many problems side by side."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from otbio._errors import ConvergenceWarning, InputError
from otbio.ot._geometry import CostName, PointCloud

__all__ = ["ExactOutput", "emd", "map_batch"]

log = logging.getLogger("otbio")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExactOutput:
    """Exact OT plan (dense, (n, m)) with the same reductions as :class:`SinkhornOutput`."""

    geom: PointCloud
    a: np.ndarray
    b: np.ndarray
    matrix: np.ndarray
    cost: float
    converged: bool

    def plan(self) -> np.ndarray:
        return self.matrix

    def plan_dot(self, v: np.ndarray, axis: int = 1) -> np.ndarray:
        return (self.matrix if axis == 1 else self.matrix.T) @ v

    def marginals(self) -> tuple[np.ndarray, np.ndarray]:
        return self.matrix.sum(1), self.matrix.sum(0)

    def barycentric_projection(self, axis: int = 1) -> np.ndarray:
        p = self.matrix if axis == 1 else self.matrix.T
        pts = self.geom.y if axis == 1 else self.geom.x
        mass = p.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (p @ pts) / mass[:, None]

    def plan_argmax(self, axis: int = 1) -> np.ndarray:
        return self.matrix.argmax(axis=axis)


def emd(
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    *,
    cost: CostName = "sqeuclidean",
    max_iter: int = 1_000_000,
) -> ExactOutput:
    """Exact OT between two weighted clouds with POT's network simplex (``ot.emd``).

    .. math::
        \\min_{P \\ge 0,\\ P 1 = a,\\ P^T 1 = b} \\langle P, C \\rangle

    The cost matrix is dense (n x m, float64): use it up to a few thousand points a side.
    ``b`` is rescaled to the mass of ``a``. POT releases the GIL inside the solver, so
    :func:`map_batch` runs several problems in threads.

    References
    ----------
    Bonneel et al. (2011), displacement interpolation using Lagrangian mass transport;
    Flamary et al. (2021), POT: Python Optimal Transport.
    """
    import ot

    from otbio.io import check_weights

    geom = PointCloud(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), cost)
    n, m = geom.shape
    a = check_weights(a, n, name="weights a")
    b = check_weights(b, m, name="weights b")
    b = b * (a.sum() / b.sum())
    c = np.ascontiguousarray(geom.cost_matrix(), dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, info = ot.emd(a, b, c, numItermax=max_iter, log=True)
    converged = info.get("result_code", 1) == 1
    if not converged:
        msg = f"ot.emd stopped: {info.get('warning', 'iteration limit')}; raise max_iter"
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    for w in caught:
        if not issubclass(w.category, UserWarning):
            warnings.warn(w.message, w.category, stacklevel=2)
    return ExactOutput(geom, a, b, plan, float(info["cost"]), converged)


def map_batch(
    fn: Callable[[T], R], items: Iterable[T] | Sequence[T], *, jobs: int = 1, threads: bool = True
) -> list[R]:
    """Apply ``fn`` to every item, ``jobs`` at a time, and return results in order.

    With ``threads=True`` the items run in a thread pool: use it for code that releases the
    GIL without launching Numba parallel kernels (POT's ``emd``). Otherwise items run one
    after the other, each using every core through the engine's parallel kernels.
    """
    items = list(items)
    if jobs <= 1 or len(items) <= 1 or not threads:
        return [fn(it) for it in items]
    if jobs < 1:
        msg = "jobs must be >= 1"
        raise InputError(msg)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items))
