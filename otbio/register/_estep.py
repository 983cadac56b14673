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
    return EStep(nu=nu, px=dot[:, :d], pf=pf, fn=fn, n_pairs=m * x.shape[0])


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
        inv = 1.0 / h
        step = max(1, (1 << 22) // (k * fx.shape[1]))
        for s in range(0, n, step):
            diff = (fx[s : s + step, None, :] - fy[nb[s : s + step]]) * inv
            logk[s : s + step] -= 0.5 * np.einsum("ijk,ijk->ij", diff, diff)
    mx = logk.max(1)
    lse = mx + np.log(np.exp(logk - mx[:, None]).sum(1))
    log_den = np.logaddexp(lse, log_c)
    fn = np.exp(lse - log_den)
    p = np.exp(logk - log_den[:, None]).ravel()
    mi = nb.ravel()
    nu = np.bincount(mi, weights=p, minlength=m)
    px = np.empty((m, d))
    for c in range(d):
        px[:, c] = np.bincount(mi, weights=p * np.repeat(x[:, c], k), minlength=m)
    dp = fx.shape[1] if has_f else 0
    pf = np.empty((m, dp))
    for c in range(dp):
        pf[:, c] = np.bincount(mi, weights=p * np.repeat(fx[:, c], k), minlength=m)
    return EStep(nu=nu, px=px, pf=pf, fn=fn, n_pairs=n * k)
