"""Point-cloud geometry: two weighted clouds and a cost evaluated online."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from otbio._errors import InputError

__all__ = ["COSTS", "PointCloud"]

CostName = Literal["sqeuclidean", "l1", "hinge"]
COSTS: dict[str, int] = {"sqeuclidean": 0, "l1": 1, "hinge": 2}


#: Largest cost accepted in float32: sums and exponents of larger ones overflow (max 3.4e38).
FLOAT32_MAX_COST = float(np.finfo(np.float32).max) / 1e4


def _check_float32_range(x: np.ndarray, y: np.ndarray, cost: str) -> None:
    """Raise InputError when costs between float32 points could overflow float32."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        msg = "float32 points hold NaN or infinite values (too large for float32?)"
        raise InputError(msg)
    big = float(max(np.abs(x).max(initial=0.0), np.abs(y).max(initial=0.0)))
    d = x.shape[1]
    bound = (2.0 * big) ** 2 * d if cost == "sqeuclidean" else 2.0 * big * d
    if bound > FLOAT32_MAX_COST:
        msg = (
            f"float32 points reach {big:.3g}: their {cost} costs (up to {bound:.3g}) "
            f"overflow float32; use `dtype` float64 or rescale the coordinates"
        )
        raise InputError(msg)


@dataclass(frozen=True)
class PointCloud:
    """Two point clouds ``x`` (n, d) and ``y`` (m, d) and a ground cost between them.

    The online kernels recompute :math:`c(x_i, y_j)` on the fly, so memory is O((n + m) d).
    Small problems take the dense Sinkhorn route, which computes the cost matrix once and
    keeps it with the geometry (:meth:`dense_cost`); :meth:`cost_matrix` returns a new one.

    Parameters
    ----------
    x, y
        Points, C-contiguous float32 or float64 (converted once here).
    cost
        ``"sqeuclidean"`` :math:`|x_i - y_j|^2`, ``"l1"`` :math:`\\sum_k |x_{ik} - y_{jk}|`,
        or ``"hinge"`` :math:`\\sum_k \\max(0, x_{ik} - y_{jk})` (PLASMA's containment cost).
    reversed_hinge
        The hinge seen from ``y``: :math:`\\sum_k \\max(0, y_{jk} - x_{ik})` (set by
        :meth:`transpose`, so that the cost of the transposed geometry is the transpose).
    """

    x: np.ndarray
    y: np.ndarray
    cost: CostName = "sqeuclidean"
    reversed_hinge: bool = False
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cost not in COSTS:
            msg = f"unknown cost '{self.cost}'; choose one of {', '.join(COSTS)}"
            raise InputError(msg)
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        dtype = np.float32 if (x.dtype == np.float32 and y.dtype == np.float32) else np.float64
        x = np.ascontiguousarray(x, dtype=dtype)
        y = np.ascontiguousarray(y, dtype=dtype)
        if x.ndim != 2 or y.ndim != 2:
            msg = f"points must be 2-D arrays, got shapes {x.shape} and {y.shape}"
            raise InputError(msg)
        if x.shape[1] != y.shape[1]:
            msg = f"dimension mismatch: x has {x.shape[1]} dimensions, y has {y.shape[1]}"
            raise InputError(msg)
        if x.shape[0] == 0 or y.shape[0] == 0:
            msg = "a point cloud is empty"
            raise InputError(msg)
        if dtype == np.float32:
            _check_float32_range(x, y, self.cost)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape[0], self.y.shape[0]

    @property
    def code(self) -> int:
        return COSTS[self.cost]

    def transpose(self) -> PointCloud:
        """The same geometry seen from ``y`` (hinge becomes the reversed hinge)."""
        key = "T"
        if key not in self._cache:
            self._cache[key] = PointCloud(self.y, self.x, self.cost, not self.reversed_hinge)
        return self._cache[key]

    @property
    def kernel_code(self) -> int:
        """Kernel cost code, 3 for a hinge seen from the other side."""
        if self.cost == "hinge" and self.reversed_hinge:
            return 3
        return self.code

    def sq_norms(self) -> tuple[np.ndarray, np.ndarray]:
        if "sq" not in self._cache:
            self._cache["sq"] = (
                np.einsum("ij,ij->i", self.x, self.x),
                np.einsum("ij,ij->i", self.y, self.y),
            )
        return self._cache["sq"]

    def cost_matrix(self, dtype: np.dtype | type | None = None) -> np.ndarray:
        """The dense n x m cost matrix (a new array), for small problems.

        Squared Euclidean through a matrix product (BLAS); L1 and hinge costs with the serial
        Numba kernel ``cost_dense`` (no n x m x d temporary), summed in the points' dtype.
        ``dtype``: of the result (default: the points' dtype).
        """
        x, y = self.x, self.y
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        if self.cost == "sqeuclidean":
            xx, yy = self.sq_norms()
            c = xx[:, None] + yy[None, :] - 2.0 * (x @ y.T)
            return np.maximum(c, 0.0).astype(dtype, copy=False)
        from otbio.ot._kernels import cost_dense

        out = np.empty(self.shape, dtype=dtype)
        cost_dense(x, y, self.kernel_code, out)
        return out

    def dense_cost(self) -> np.ndarray:
        """The cost matrix in float64, computed once and kept (read-only) with the geometry.

        Used by the dense Sinkhorn route; :meth:`hstack` reuses it.
        """
        c = self._cache.get("dense_cost")
        if c is None:
            c = np.ascontiguousarray(self.cost_matrix(np.float64))
            c.flags.writeable = False
            self._cache["dense_cost"] = c
        return c

    def hstack(self, other: PointCloud) -> PointCloud:
        """The clouds with the columns of ``other`` appended: ``[x, x']`` and ``[y, y']``.

        Every cost here is a sum over columns, so the cost of the result is the sum of the
        two costs; when this geometry's dense cost is already known (:meth:`dense_cost`),
        the result's is that plus ``other``'s, not recomputed over all columns.
        """
        if (other.cost, other.reversed_hinge) != (self.cost, self.reversed_hinge):
            msg = "hstack needs two geometries with the same cost"
            raise InputError(msg)
        if other.shape != self.shape:
            msg = f"hstack needs the same numbers of points, got {self.shape} and {other.shape}"
            raise InputError(msg)
        out = PointCloud(
            np.hstack([self.x, other.x.astype(self.dtype)]),
            np.hstack([self.y, other.y.astype(self.dtype)]),
            self.cost,
            self.reversed_hinge,
        )
        base = self._cache.get("dense_cost")
        if base is not None:
            c = base + other.dense_cost()
            c.flags.writeable = False
            out._cache["dense_cost"] = c
        return out

    def mean_cost(self, a: np.ndarray, b: np.ndarray) -> float:
        """Weighted mean cost :math:`\\sum_{ij} a_i b_j c_{ij}` (exact, no n x m matrix)."""
        a = a / a.sum()
        b = b / b.sum()
        if self.cost == "sqeuclidean":
            xx, yy = self.sq_norms()
            return float(a @ xx + b @ yy - 2.0 * (a @ self.x) @ (b @ self.y))
        total = 0.0
        step = max(1, 2_000_000 // self.y.shape[0])
        for s in range(0, self.x.shape[0], step):
            sub = PointCloud(self.x[s : s + step], self.y, self.cost, self.reversed_hinge)
            total += float(a[s : s + step] @ (sub.cost_matrix() @ b))
        return total

    def max_cost(self) -> float:
        """Largest cost over all pairs, computed online."""
        from otbio.ot._backend import get_backend

        return get_backend("cpu").max_cost(self)
