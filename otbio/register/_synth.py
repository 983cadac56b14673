"""Known warps and synthetic tissues for tests and benchmarks.

:func:`known_warp` applies a random smooth map (Gaussian-process displacement field plus a
rotation and a translation) to real coordinates, so that every cell's true position is known.
:func:`synthetic_tissue` makes a tissue of ``n`` cells with smooth expression features.
"""

from __future__ import annotations

import numpy as np

__all__ = ["known_warp", "synthetic_tissue"]


def _gp_field(pts, rng, length, amp, n_basis=200, out_dim=None):
    """Smooth random field: random Fourier features of a Gaussian kernel (length scale)."""
    d = pts.shape[1]
    om = rng.normal(size=(n_basis, d)) / length
    ph = rng.uniform(0, 2 * np.pi, n_basis)
    coef = rng.normal(size=(n_basis, out_dim or d)) * np.sqrt(2.0 / n_basis)
    return amp * np.cos(pts @ om.T + ph) @ coef


def known_warp(
    pts: np.ndarray,
    *,
    seed: int = 0,
    amp: float = 0.08,
    length: float = 0.5,
    angle: float = 25.0,
    shift: float = 0.3,
) -> np.ndarray:
    """Warped copy of ``pts``: GP displacement then rotation (degrees) and translation.

    ``amp``, ``length`` and ``shift`` are relative to the RMS radius of ``pts``.
    """
    rng = np.random.default_rng(seed)
    mu = pts.mean(0)
    rad = float(np.sqrt(((pts - mu) ** 2).sum(1).mean()))
    p = (pts - mu) / rad
    p = p + _gp_field(p, rng, length, amp)
    d = pts.shape[1]
    th = np.deg2rad(angle) * rng.choice([-1, 1])
    rot = np.eye(d)
    rot[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    t = rng.normal(size=d)
    t = shift * t / np.linalg.norm(t)
    return (p @ rot.T + t) * rad + mu


def synthetic_tissue(n: int, n_features: int = 20, *, dim: int = 2, seed: int = 0):
    """``(coords (n, dim), features (n, n_features))``: a disc-like tissue of n cells whose
    features are smooth spatial fields plus noise."""
    rng = np.random.default_rng(seed)
    r = np.sqrt(rng.uniform(0, 1, n)) if dim == 2 else np.cbrt(rng.uniform(0, 1, n))
    v = rng.normal(size=(n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pts = v * r[:, None] * np.array([1.3, 1.0, 0.8][:dim])
    f = _gp_field(pts, rng, 0.3, 1.0, n_basis=400, out_dim=n_features)
    f = f + 0.1 * rng.normal(size=f.shape)
    return pts * 100.0, f
