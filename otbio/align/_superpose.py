"""Kabsch superposition, RMSD and TM-score over matched CA atoms."""

from __future__ import annotations

import numpy as np

__all__ = ["kabsch", "tm_d0", "tm_superpose"]


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
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    w = w / w.sum()
    cx = w @ x
    cy = w @ y
    h = (x - cx).T @ ((y - cy) * w[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, cy - r @ cx


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
    r, t = kabsch(x, y)
    d = np.linalg.norm(x @ r.T + t - y, axis=1)
    rmsd = float(np.sqrt(np.mean(d**2)))
    d0 = tm_d0(length)
    best = (float(np.sum(1.0 / (1.0 + (d / d0) ** 2)) / length), r, t)
    for _ in range(n_iter):
        w = 1.0 / (1.0 + (d / d0) ** 2)
        if w.sum() <= 1e-12:
            break
        r, t = kabsch(x, y, w)
        d = np.linalg.norm(x @ r.T + t - y, axis=1)
        tm = float(np.sum(1.0 / (1.0 + (d / d0) ** 2)) / length)
        if tm > best[0] + 1e-9:
            best = (tm, r, t)
        else:
            break
    return rmsd, best[0], best[1], best[2]
