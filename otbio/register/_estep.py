"""E-step of BCPD / DET: the posterior match probabilities, accumulated without an M x N matrix.

With the scaled points :math:`z^x_n = [x_n/\\sigma, f^x_n/h]` and :math:`z^y_m = [y_m/\\sigma,
f^y_m/h]`, the match kernel is :math:`K_{mn} = \\exp(-|z^x_n - z^y_m|^2 / 2)`, i.e. the engine's
squared-Euclidean kernel at ``eps = 2``. Two streamed passes of the engine's backend
(:func:`otbio.ot.logsumexp`, :func:`otbio.ot.kernel_apply`; Numba on the CPU, CuPy with
``device="cuda"``) give

- the column normaliser :math:`\\log\\big(\\sum_m \\tfrac1M K_{mn} + c_n\\big)` (``logsumexp``);
- :math:`\\nu_m = \\sum_n P_{mn}`, :math:`PX_m = \\sum_n P_{mn} x_n`,
  :math:`PF_m = \\sum_n P_{mn} f^x_n` (``kernel_apply`` with ``V = [x, f^x]``);

and :math:`\\hat f_n = \\sum_m P_{mn}` follows from the normaliser. Once sigma is small the
neighbour-restricted variant (:func:`estep_local`) keeps only each target's nearest sources
(scipy ``cKDTree``), which turns the cost from O(MN) into O(Nk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from otbio.ot._geometry import PointCloud

__all__ = ["EStep", "estep_dense", "estep_local"]


@dataclass
class EStep:
    """Sufficient statistics of one E-step (numpy arrays)."""

    nu: np.ndarray  # (M,)
    px: np.ndarray  # (M, D)
    pf: np.ndarray  # (M, D')
    fn: np.ndarray  # (N,)
    n_pairs: int  # pairs evaluated (M * N for the dense pass)
    log_norm: float = 0.0  # sum_n log(sum_m K_mn / M + c_n): the data log-likelihood


@numba.njit(parallel=True, cache=True)
def _neighbour_feature_sq(fx, fy, nb, inv):  # pragma: no cover - compiled
    """``out[i, j] = sum_c ((fx[i, c] - fy[nb[i, j], c]) * inv[c])^2`` without an (n, k, D')
    temporary."""
    n, k = nb.shape
    dp = fx.shape[1]
    out = np.empty((n, k))
    for i in numba.prange(n):
        for j in range(k):
            mm = nb[i, j]
            acc = 0.0
            for c in range(dp):
                dl = (fx[i, c] - fy[mm, c]) * inv[c]
                acc += dl * dl
            out[i, j] = acc
    return out


@numba.njit(cache=True)
def _scatter_posterior(p, nb, v, m):  # pragma: no cover - compiled
    """``nu[m] = sum P[n, j]`` and ``acc[m] = sum P[n, j] v[n]`` over pairs with nb[n, j] = m."""
    n, k = nb.shape
    w = v.shape[1]
    nu = np.zeros(m)
    acc = np.zeros((m, w))
    for i in range(n):
        for j in range(k):
            mm = nb[i, j]
            pij = p[i, j]
            nu[mm] += pij
            for c in range(w):
                acc[mm, c] += pij * v[i, c]
    return nu, acc


def _scaled(pts, feats, sigma, h):
    parts = [pts / sigma]
    if feats is not None and feats.shape[1]:
        parts.append(feats / h[None, :])
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def estep_dense(x, fx, y, fy, sigma, h, log_c, *, device="cpu") -> EStep:
    """Full E-step over all (m, n) pairs, streamed by the engine's backend.

    Args:
        x: target points (N, D); fx: target features (N, D') or None.
        y: current source points (M, D); fy: source features (M, D') or None.
        sigma: spatial scale; h: feature scales (D',).
        log_c: log outlier constant per target (N,), ``-inf`` when omega = 0.
        device: ``cpu`` (Numba) or ``cuda`` (CuPy).
    """
    from otbio.ot import kernel_apply, logsumexp

    m = y.shape[0]
    zx = _scaled(x, fx, sigma, h)
    zy = _scaled(y, fy, sigma, h)
    geom_xy = PointCloud(zx, zy)  # rows: targets
    log_m = -np.log(m)
    lse = logsumexp(geom_xy, np.full(m, log_m), 2.0, device=device)
    log_den = np.logaddexp(lse, log_c)
    fn = np.exp(lse - log_den)
    fn[~np.isfinite(fn)] = 0.0
    beta = -log_den
    beta[~np.isfinite(beta)] = -np.inf
    geom_yx = PointCloud(zy, zx)  # rows: sources
    v = x if fx is None or not fx.shape[1] else np.concatenate([x, fx], axis=1)
    out = kernel_apply(geom_yx, np.full(m, log_m), beta, 2.0, v, device=device)
    dot, nu = out["dot"], out["sum"]
    d = x.shape[1]
    pf = dot[:, d:] if dot.shape[1] > d else np.zeros((m, 0))
    ln = float(log_den[np.isfinite(log_den)].sum())
    return EStep(nu=nu, px=dot[:, :d], pf=pf, fn=fn, n_pairs=m * x.shape[0], log_norm=ln)


def estep_local(x, fx, y, fy, sigma, h, log_c, *, k=16) -> EStep:
    """E-step restricted to each target's ``k`` nearest sources (scipy ``cKDTree``).

    Used once sigma is small: for a target whose nearest source is at distance
    :math:`d_1`, a source beyond its k-th neighbour (distance :math:`d_k`) carries at most
    :math:`e^{-(d_k^2 - d_1^2)/2\\sigma^2}` of the weight of the nearest one, so dropping it
    changes nothing while :math:`d_k - d_1` spans several sigma. Every target keeps its
    nearest sources, as in the full E-step (whose normaliser runs over all sources).
    Cost O((M + N) log M + N k D').
    """
    from scipy.spatial import cKDTree

    m, d = y.shape
    n = x.shape[0]
    k = min(k, m)
    dist, nb = cKDTree(y).query(x, k=k)
    dist = dist.reshape(n, k)
    nb = nb.reshape(n, k)
    logk = -0.5 * (dist / sigma) ** 2 - np.log(m)
    has_f = fx is not None and fx.shape[1] > 0
    if has_f:
        logk -= 0.5 * _neighbour_feature_sq(
            np.ascontiguousarray(fx), np.ascontiguousarray(fy), nb.astype(np.int64), 1.0 / h
        )
    mx = logk.max(1)
    lse = mx + np.log(np.exp(logk - mx[:, None]).sum(1))
    log_den = np.logaddexp(lse, log_c)
    fn = np.exp(lse - log_den)
    p = np.exp(logk - log_den[:, None])
    dp = fx.shape[1] if has_f else 0
    v = np.ascontiguousarray(np.concatenate([x, fx], axis=1) if has_f else x)
    nu, acc = _scatter_posterior(p, nb.astype(np.int64), v, m)
    px, pf = acc[:, :d], acc[:, d : d + dp]
    ln = float(log_den[np.isfinite(log_den)].sum())
    return EStep(nu=nu, px=px, pf=pf, fn=fn, n_pairs=n * k, log_norm=ln)
