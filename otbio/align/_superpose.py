"""Kabsch superposition, RMSD and TM-score over matched CA atoms."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["kabsch", "tm_d0", "tm_superpose"]


@njit(cache=True, nogil=True)
def _kabsch(x, y, w):
    """Weighted Kabsch (weights ``w`` summing to 1): rotation and translation."""
    n = x.shape[0]
    cx = np.zeros(3)
    cy = np.zeros(3)
    for i in range(n):
        for k in range(3):
            cx[k] += w[i] * x[i, k]
            cy[k] += w[i] * y[i, k]
    h = np.zeros((3, 3))
    for i in range(n):
        for a in range(3):
            xa = x[i, a] - cx[a]
            for b in range(3):
                h[a, b] += xa * ((y[i, b] - cy[b]) * w[i])
    u, _, vt = np.linalg.svd(h)
    # R = V diag(1, 1, d) U^T with d the sign of det(V U^T) = det(V) det(U)
    det = _det3(vt) * _det3(u)
    d = 1.0 if det > 0 else (-1.0 if det < 0 else 1.0)
    r = np.empty((3, 3))
    t = np.empty(3)
    for a in range(3):
        for b in range(3):
            r[a, b] = vt[0, a] * u[b, 0] + vt[1, a] * u[b, 1] + d * vt[2, a] * u[b, 2]
    for a in range(3):
        t[a] = cy[a] - (r[a, 0] * cx[0] + r[a, 1] * cx[1] + r[a, 2] * cx[2])
    return r, t


@njit(cache=True, nogil=True, inline="always")
def _det3(m):
    return (
        m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
        - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
        + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0])
    )


@njit(cache=True, nogil=True)
def _distances(x, y, r, t, out):
    for i in range(x.shape[0]):
        s = 0.0
        for a in range(3):
            p = r[a, 0] * x[i, 0] + r[a, 1] * x[i, 1] + r[a, 2] * x[i, 2] + t[a] - y[i, a]
            s += p * p
        out[i] = np.sqrt(s)


@njit(cache=True, nogil=True)
def _tm_superpose(x, y, length, d0, n_iter):
    n = x.shape[0]
    w = np.full(n, 1.0 / n)
    r, t = _kabsch(x, y, w)
    d = np.empty(n)
    _distances(x, y, r, t, d)
    ss = 0.0
    tm = 0.0
    for i in range(n):
        ss += d[i] * d[i]
        tm += 1.0 / (1.0 + (d[i] / d0) ** 2)
    rmsd = np.sqrt(ss / n)
    best_tm, best_r, best_t = tm / length, r, t
    for _ in range(n_iter):
        tot = 0.0
        for i in range(n):
            w[i] = 1.0 / (1.0 + (d[i] / d0) ** 2)
            tot += w[i]
        if tot <= 1e-12:
            break
        for i in range(n):
            w[i] /= tot
        r, t = _kabsch(x, y, w)
        _distances(x, y, r, t, d)
        tm = 0.0
        for i in range(n):
            tm += 1.0 / (1.0 + (d[i] / d0) ** 2)
        tm /= length
        if tm > best_tm + 1e-9:
            best_tm, best_r, best_t = tm, r, t
        else:
            break
    return rmsd, best_tm, best_r, best_t


def kabsch(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``R`` and translation ``t`` minimising :math:`\\sum_i w_i |R x_i + t - y_i|^2`.

    Parameters
    ----------
    x, y
        Matched points (n, 3).
    w
        Optional non-negative weights (n,).

    Returns
    -------
    R, t
        (3, 3) proper rotation (det +1) and (3,) translation: ``x @ R.T + t`` lies on ``y``.

    References
    ----------
    Kabsch (1976), Acta Cryst. A32, 922-923.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    return _kabsch(x, y, np.ascontiguousarray(w / w.sum()))


def tm_d0(length: int) -> float:
    """TM-score distance scale :math:`d_0 = 1.24 (L - 15)^{1/3} - 1.8` (at least 0.5 A)."""
    if length <= 21:
        return 0.5
    return max(0.5, 1.24 * (length - 15) ** (1.0 / 3.0) - 1.8)


def tm_superpose(
    x: np.ndarray, y: np.ndarray, length: int, *, n_iter: int = 6
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """RMSD after Kabsch, and the TM-score over matched pairs, with its superposition.

    The TM-score (Zhang & Skolnick 2004) is

    .. math:: \\mathrm{TM} = \\frac{1}{L} \\sum_{i} \\frac{1}{1 + (d_i / d_0(L))^2},

    where the sum runs over the matched pairs, :math:`d_i` is the distance of pair i after
    superposition and ``L`` the normalising length (the query's). The superposition starts
    from the Kabsch (least-squares) one and is refined by weighted Kabsch with weights
    :math:`1 / (1 + (d_i/d_0)^2)`; the best TM-score seen is returned, so it is a lower bound
    of the TM-score of this residue correspondence.

    Returns
    -------
    rmsd, tm, R, t
        RMSD (A) of the least-squares superposition; TM-score; rotation and translation of
        the best TM-score superposition (``x @ R.T + t``).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    rmsd, tm, r, t = _tm_superpose(x, y, float(length), tm_d0(length), int(n_iter))
    return float(rmsd), float(tm), r, t
