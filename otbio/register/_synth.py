"""Known warps and synthetic tissues for tests and benchmarks.

:func:`known_warp` applies a random smooth map (Gaussian-process displacement field plus a
rotation and a translation) to real coordinates, so that every cell's true position is known.
:func:`synthetic_tissue` makes a tissue of ``n`` cells with smooth expression features.
"""

from __future__ import annotations

import numpy as np

__all__ = ["known_warp", "smooth_warp", "synthetic_tissue", "warped_pair"]


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


def smooth_warp(
    ref: np.ndarray,
    *,
    seed: int = 0,
    amp: float = 0.1,
    length: float = 1.0 / 3.0,
    angle: float = 25.0,
    shift: float = 0.1,
):
    """A random smooth map whose sizes are relative to the extent of ``ref``.

    The extent is the longest side of the bounding box of ``ref``; ``amp`` is the RMS length
    of the displacement vector (each of the D components has standard deviation
    ``amp / sqrt(D)``), ``length`` the length scale of the
    Gaussian-process field, ``shift`` the translation, all as fractions of the extent;
    ``angle`` is in degrees (its sign drawn at random). Returns a function that maps any
    points (n, D) of the same frame, so that a consecutive section's cells can be carried by
    the same warp as the target's.
    """
    ref = np.asarray(ref, dtype=np.float64)
    rng = np.random.default_rng(seed)
    d = ref.shape[1]
    mu = ref.mean(0)
    ext = float((ref.max(0) - ref.min(0)).max()) or 1.0
    n_basis = 200
    om = rng.normal(size=(n_basis, d)) / length
    ph = rng.uniform(0, 2 * np.pi, n_basis)
    coef = rng.normal(size=(n_basis, d)) * np.sqrt(2.0 / (n_basis * d))
    th = np.deg2rad(angle) * rng.choice([-1, 1])
    rot = np.eye(d)
    rot[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    t = rng.normal(size=d)
    t = shift * t / np.linalg.norm(t)

    def warp(points: np.ndarray) -> np.ndarray:
        p = (np.asarray(points, dtype=np.float64) - mu) / ext
        p = p + amp * np.cos(p @ om.T + ph) @ coef
        return (p @ rot.T + t) * ext + mu

    return warp


def warped_pair(
    adata,
    *,
    seed: int = 0,
    amp: float = 0.1,
    length: float = 1.0 / 3.0,
    angle: float = 25.0,
    jitter: float = 0.45,
    drop: float = 0.1,
    thin: float = 0.5,
    size: int | None = None,
    crop: float = 1.0,
    spatial_key: str = "spatial",
):
    """A known-warp pair made from one real slice, as a consecutive section would look.

    The source keeps the slice's counts but its spots move off the lattice by up to
    ``jitter`` of the median spot spacing (uniform in a disc); the target is the warped
    lattice (:func:`smooth_warp`), counts thinned binomially by ``thin``, ``drop`` of its
    spots removed. ``size`` first subsamples the slice to that many spots (a smaller,
    sparser section); ``crop`` < 1 keeps only that share of the source's spots, those on
    one side of a random straight cut (partial overlap: the target's other spots have no
    partner). Returns ``(source, target, truth)`` with ``truth`` (M, D) the true
    position of every source cell in the target frame.
    """
    import anndata as ad
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    if size is not None and size < adata.n_obs:
        pick = np.random.default_rng(seed + 104729).choice(adata.n_obs, size, replace=False)
        adata = adata[np.sort(pick)].copy()
    rng = np.random.default_rng(seed + 7919)
    lat = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    spacing = float(np.median(cKDTree(lat).query(lat, k=2)[0][:, 1]))
    d = lat.shape[1]
    dirs = rng.normal(size=lat.shape)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rad = jitter * spacing * rng.uniform(0, 1, lat.shape[0]) ** (1.0 / d)
    y = lat + dirs * rad[:, None]
    warp = smooth_warp(lat, seed=seed, amp=amp, length=length, angle=angle)
    truth = warp(y)
    src = adata.copy()
    src.obsm[spatial_key] = y
    src.obs["spot"] = np.arange(adata.n_obs)  # lattice index: the target's names are w<spot>
    keep = np.sort(rng.choice(adata.n_obs, int(round((1 - drop) * adata.n_obs)), replace=False))
    counts = sp.csr_matrix(adata.X).astype(np.int64)
    counts.data = rng.binomial(counts.data, thin)
    tgt = ad.AnnData(X=sp.csr_matrix(counts[keep], dtype=np.float32), var=adata.var.copy())
    tgt.obs_names = [f"w{i}" for i in keep]
    tgt.obsm[spatial_key] = warp(lat[keep])
    if crop < 1.0:  # the source keeps the spots on one side of a random straight cut
        ang = np.random.default_rng(seed + 15485863).uniform(0, 2 * np.pi)
        u = np.zeros(d)
        u[:2] = np.cos(ang), np.sin(ang)
        proj = lat @ u
        inside = np.flatnonzero(proj <= np.quantile(proj, crop))
        src = src[inside].copy()
        truth = truth[inside]
    return src, tgt, truth
