"""Public streamed reductions of the engine, for the applications (lot, register, align).

They evaluate the cost online (no n x m matrix) on the chosen device and return NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from otbio.ot._backend import get_backend
from otbio.ot._geometry import PointCloud

__all__ = ["kernel_apply", "kernel_topk", "logsumexp", "warm_start"]


def logsumexp(
    geom: PointCloud, log_weights: np.ndarray, epsilon: float, *, device: str = "cpu"
) -> np.ndarray:
    """Row-wise ``log sum_j exp(log_weights[j] - c(x_i, y_j) / epsilon)`` over the target cloud.

    ``log_weights`` has one entry per target point (``geom.shape[1]``); the result has one per
    source point. This is the soft-min at the heart of every Sinkhorn half-update and of the
    E-step of coherent point drift.
    """
    be = get_backend(device)
    return be.to_numpy(be.lse(geom, be.asarray(np.asarray(log_weights, dtype=geom.dtype)), epsilon))


def warm_start(
    geom: PointCloud, f: np.ndarray, a: np.ndarray, epsilon: float, *, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """``(f, g)`` for ``Sinkhorn(...)(geom, a, b, init=...)`` from a source potential ``f``.

    ``g`` is the exact half-update from ``f`` (balanced): use it when a previous problem on
    the same source cloud (same ``a``) left a good ``f``, e.g. successive samples against one
    LOT reference.
    """
    f = np.asarray(f, dtype=np.float64)
    with np.errstate(divide="ignore"):
        loga = np.log(np.asarray(a, dtype=np.float64))
    g = -epsilon * logsumexp(geom.transpose(), f / epsilon + loga, epsilon, device=device)
    return f, np.asarray(g, dtype=np.float64)


def kernel_topk(
    geom: PointCloud,
    alpha: np.ndarray,
    beta: np.ndarray,
    epsilon: float,
    k: int,
    *,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Per source point, the ``k`` largest ``alpha_i + beta_j - c_ij / epsilon`` (log scale).

    Returns ``(idx (n, k), value (n, k))``, best first, streamed over the targets.
    """
    be = get_backend(device)
    dt = geom.dtype
    idx, val = be.topk(
        geom,
        be.asarray(np.asarray(alpha, dtype=dt)),
        be.asarray(np.asarray(beta, dtype=dt)),
        epsilon,
        k,
    )
    return be.to_numpy(idx), be.to_numpy(val)


def kernel_apply(
    geom: PointCloud,
    alpha: np.ndarray,
    beta: np.ndarray,
    epsilon: float,
    v: np.ndarray | None = None,
    *,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Streamed sums of the kernel ``K_ij = exp(alpha_i + beta_j - c_ij / epsilon)``.

    Returns ``{"sum": K 1 (n,), "dot": K v (n, k) or None, "argmax": argmax_j K_ij (n,)}``;
    with ``alpha``, ``beta`` the scaled potentials of a Sinkhorn output, ``K`` is its plan.
    """
    be = get_backend(device)
    dt = geom.dtype
    vv = None if v is None else be.asarray(np.ascontiguousarray(v))
    out = be.apply(
        geom,
        be.asarray(np.asarray(alpha, dtype=dt)),
        be.asarray(np.asarray(beta, dtype=dt)),
        epsilon,
        vv,
    )
    return {k: (None if val is None else be.to_numpy(val)) for k, val in out.items()}
