"""Deformation solve of BCPD / DET and Gaussian-process interpolation of the displacement.

The non-rigid update solves, with :math:`c = \\lambda \\sigma^2 / s^2` and
:math:`D = \\mathrm{diag}(\\sqrt{\\nu})`,

.. math:: (G + c\\,\\mathrm{diag}(1/\\nu)) W = E \\iff
          W = D (D G D + c I)^{-1} D E, \\qquad v = G W,

which stays well conditioned when some :math:`\\nu_m` vanish. For large M the Nystrom
approximation :math:`G \\approx C G_{kk}^{-1} C^T` (``C = G[:, landmarks]``, rank k) and the
Woodbury identity give :math:`(c I + U G_{kk}^{-1} U^T)^{-1} = \\tfrac1c\\big(I - U (c G_{kk} +
U^T U)^{-1} U^T\\big)` with :math:`U = D C`, which simplifies to
:math:`v = C (c G_{kk} + U^T U)^{-1} U^T D E`, in O(M k^2) per iteration.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["DeformSolver", "gauss_kernel", "interpolate_displacement"]


def gauss_kernel(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """Dense Gaussian kernel :math:`\\exp(-|a_i - b_j|^2 / 2\\beta^2)` (small blocks only)."""
    from otbio.ot import PointCloud

    return np.exp(-PointCloud(a, b).cost_matrix() / (2.0 * beta * beta))


class DeformSolver:
    """Solve :math:`(G + c\\,\\mathrm{diag}(1/\\nu)) W = E` repeatedly for one fixed source.

    Args:
        y0: undeformed (normalised) source points (M, D).
        beta: kernel width.
        rank: Nystrom rank; ``None`` or ``>= M`` solves exactly (Cholesky).
        rng: generator for the landmark choice.
    """

    def __init__(self, y0: np.ndarray, beta: float, rank: int | None, rng) -> None:
        m = y0.shape[0]
        self.beta = beta
        self.exact = rank is None or rank >= m
        if self.exact:
            self.g = gauss_kernel(y0, y0, beta)
            self.centres = y0
        else:
            idx = np.sort(rng.choice(m, size=rank, replace=False))
            self.centres = y0[idx]
            self.c = gauss_kernel(y0, y0[idx], beta)  # (M, k)
            gkk = self.c[idx]
            self.gkk = gkk + 1e-8 * np.eye(rank)

    def solve(self, nu: np.ndarray, e: np.ndarray, cval: float) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(W, v)``: ``v(p) = sum_j k(p, centres_j) W_j`` and ``v`` on the source.

        Exact: ``centres`` is the source and ``v = G W``. Nystrom: ``centres`` are the k
        landmark columns and ``W = (c G_kk + U^T U)^{-1} U^T D E``, so that
        ``v = C W`` equals the Woodbury solution of the low-rank system.
        """
        dn = np.sqrt(np.maximum(nu, 0.0))
        cval = max(cval, 1e-8 * float(nu.max()), 1e-12)  # G is numerically low-rank
        de = dn[:, None] * e
        if self.exact:
            from otbio._threading import one_blas_thread

            a = dn[:, None] * self.g * dn[None, :]
            a[np.diag_indices_from(a)] += cval
            # a small factorisation gains nothing from BLAS threads and loses a lot when
            # they compete with Numba's or another process's threads
            with one_blas_thread():
                z = cho_solve(cho_factor(a, lower=True, check_finite=False), de)
            w = dn[:, None] * z
            return w, self.g @ w
        # v = C (c G_kk + U^T U)^{-1} U^T D E: no 1/c cancellation as sigma -> 0
        u = dn[:, None] * self.c  # (M, k)
        alpha = np.linalg.solve(cval * self.gkk + u.T @ u, u.T @ de)
        return alpha, self.c @ alpha


def interpolate_displacement(
    pts: np.ndarray, centres: np.ndarray, w: np.ndarray, beta: float, *, device: str = "cpu"
) -> np.ndarray:
    """Gaussian-process interpolation :math:`v(p) = \\sum_m k(p, y_m) W_m`, streamed.

    Uses the engine's backend with the squared-Euclidean cost at ``eps = 2 beta^2``, so no
    (points x centres) matrix is stored.
    """
    from otbio.ot import PointCloud, kernel_apply

    geom = PointCloud(np.ascontiguousarray(pts), np.ascontiguousarray(centres))
    n, m = geom.shape
    return kernel_apply(geom, np.zeros(n), np.zeros(m), 2.0 * beta * beta, w, device=device)["dot"]
