"""Reference measures for LOT: k-means, Wasserstein barycenter, subsample or Gaussian."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from otbio._errors import InputError
from otbio.lot._format import REF_KEY, collect_samples, dim_names, reference_id

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["reference", "reference_from_arrays"]

log = logging.getLogger("otbio")
Method = Literal["kmeans", "barycenter", "sample", "gaussian"]
METHODS = ("kmeans", "barycenter", "sample", "gaussian")
MAX_POOLED = 50_000


def _pool(points, weights, cells_per_sample, rng):
    """Equal numbers of cells from every sample (without replacement), weights equalised."""
    xs, ws, per = [], [], []
    for p, w in zip(points, weights):
        m = min(cells_per_sample, p.shape[0])
        idx = np.sort(rng.choice(p.shape[0], size=m, replace=False)) if m < p.shape[0] else None
        pp = p if idx is None else p[idx]
        ww = w if idx is None else w[idx]
        xs.append(pp)
        ws.append(ww / ww.sum() / len(points))
        per.append((pp, ww / ww.sum()))
    return np.concatenate(xs), np.concatenate(ws), per


def reference_from_arrays(
    points: Sequence[np.ndarray],
    weights: Sequence[np.ndarray] | None = None,
    *,
    method: Method = "kmeans",
    size: int = 512,
    cells_per_sample: int | None = None,
    seed: int = 0,
    max_iter: int = 20,
    jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference support ``z`` (k, d) and weights ``r`` (k,) from samples' point clouds.

    Every sample contributes the same number of cells (``cells_per_sample``, default the
    smallest sample, capped so that at most 50,000 cells are pooled) and the same total mass.

    - ``kmeans``: k-means centres of the pooled cells (weighted), ``r`` = cluster mass.
    - ``barycenter``: free-support W2 barycenter of the samples' pooled cells (uniform
      weights over samples) started from the k-means reference, with its weights kept.
    - ``sample``: ``size`` pooled cells drawn at random, uniform weights.
    - ``gaussian``: ``size`` draws from the pooled mean and covariance, uniform weights.

    Returns ``(z, r, cells_per_sample)``.
    """
    if method not in METHODS:
        msg = f"unknown reference method '{method}'; choose one of {', '.join(METHODS)}"
        raise InputError(msg)
    if size < 1:
        msg = f"`size` must be >= 1, got {size}"
        raise InputError(msg)
    if weights is None:
        weights = [np.full(p.shape[0], 1.0 / p.shape[0]) for p in points]
    n_s = len(points)
    smallest = min(p.shape[0] for p in points)
    if cells_per_sample is None:
        cells_per_sample = max(1, min(smallest, -(-MAX_POOLED // n_s)))
    if cells_per_sample < 1:
        msg = f"cells_per_sample must be >= 1, got {cells_per_sample}"
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    x, w, per_sample = _pool(points, weights, cells_per_sample, rng)
    log.info(
        "reference: %s of size %d from %d cells (%d per sample, %d samples)",
        method,
        size,
        x.shape[0],
        cells_per_sample,
        n_s,
    )
    if method in ("kmeans", "barycenter", "sample") and size > x.shape[0]:
        msg = (
            f"`size` {size} is larger than the {x.shape[0]} pooled cells; "
            "lower `size` or raise cells_per_sample"
        )
        raise InputError(msg)
    if method == "sample":
        idx = rng.choice(x.shape[0], size=size, replace=False, p=w / w.sum())
        z = x[np.sort(idx)]
        r = np.full(size, 1.0 / size)
    elif method == "gaussian":
        mu = (w[:, None] * x).sum(0) / w.sum()
        xc = x - mu
        cov = (w[:, None] * xc).T @ xc / w.sum()
        z = rng.multivariate_normal(mu, cov, size=size, method="eigh")
        r = np.full(size, 1.0 / size)
    else:
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=size, n_init=1, random_state=seed, max_iter=100)
        km.fit(x, sample_weight=w)
        z = np.asarray(km.cluster_centers_, dtype=np.float64)
        r = np.bincount(km.labels_, weights=w, minlength=size)
        keep = r > 0
        if not keep.all():  # empty clusters carry no mass: drop them
            z, r = z[keep], r[keep]
        r = r / r.sum()
        if method == "barycenter":
            from otbio.ot import barycenter as ot_barycenter

            out = ot_barycenter(
                per_sample,
                init=z,
                init_weights=r,
                solver="exact",
                max_iter=max_iter,
                tol=1e-5,
                seed=seed,
                jobs=jobs,
            )
            log.info("barycenter reference: %d iterations, converged=%s", out.n_iter, out.converged)
            z = out.x
    return (
        np.ascontiguousarray(z, dtype=np.float64),
        np.asarray(r, dtype=np.float64),
        int(cells_per_sample),
    )


def reference(
    adatas: AnnData | Sequence[AnnData],
    *,
    sample_key: str | None,
    use_rep: str | None = None,
    vars: Sequence[str] | None = None,
    method: Method = "kmeans",
    size: int = 512,
    cells_per_sample: int | None = None,
    weight_key: str | None = None,
    celltype_key: str | None = None,
    seed: int = 0,
    max_iter: int = 20,
    jobs: int = 1,
    names: Sequence[str] | None = None,
) -> AnnData:
    """Build a LOT reference measure from cells grouped into samples.

    Parameters
    ----------
    adatas
        One AnnData with all cells, or several (e.g. one per sample).
    sample_key
        obs column naming the sample of each cell (None: every AnnData is one sample).
    use_rep, vars
        Cell coordinates: ``obsm[use_rep]`` or the columns ``vars`` of ``X``.
    method, size, cells_per_sample, seed, max_iter
        See :func:`reference_from_arrays`.
    weight_key
        Optional obs column of non-negative cell weights.
    celltype_key
        Optional obs column (e.g. cell type); the reference then records in
        ``obs[celltype_key]`` the majority label of the pooled cells nearest each support point.

    Returns
    -------
    The reference AnnData documented in :mod:`otbio.lot`: ``X`` support (k, d),
    ``obs['weight']``, ``uns['lot_reference']`` with the parameters that made it.
    """
    import anndata as ad
    import pandas as pd

    from otbio import __version__

    if not isinstance(adatas, (list, tuple)):
        adatas = [adatas]
    s = collect_samples(
        adatas,
        sample_key=sample_key,
        use_rep=use_rep,
        vars=vars,
        weight_key=weight_key,
        names=names,
    )
    z, r, cps = reference_from_arrays(
        s.points,
        s.weights,
        method=method,
        size=size,
        cells_per_sample=cells_per_sample,
        seed=seed,
        max_iter=max_iter,
        jobs=jobs,
    )
    d = z.shape[1]
    dims = dim_names(use_rep, vars, d)
    obs = pd.DataFrame({"weight": r}, index=[f"z{k}" for k in range(z.shape[0])])
    if celltype_key is not None:
        obs[celltype_key] = pd.Categorical(
            _nearest_labels(adatas, s, z, sample_key, celltype_key, names)
        )
    params = {
        "reference_id": reference_id(z, r),
        "method": method,
        "size": int(z.shape[0]),
        "use_rep": use_rep or "",
        "vars": [str(v) for v in (vars or [])],
        "sample_key": sample_key or "",
        "seed": int(seed),
        "n_samples": len(s.ids),
        "cells_per_sample": cps,
        "samples": list(s.ids),
        "otbio_version": __version__,
    }
    if s.loadings is not None:
        params["loadings"] = s.loadings
        params["genes"] = s.genes
    out = ad.AnnData(X=z, obs=obs, var=pd.DataFrame(index=dims))
    out.uns[REF_KEY] = params
    log.info("reference %s: %d points in %d dimensions", params["reference_id"], z.shape[0], d)
    return out


def _nearest_labels(adatas, s, z, sample_key, celltype_key, names):
    """Majority label of the cells nearest to each support point (ties: first label)."""
    from collections import Counter

    from scipy.spatial import cKDTree

    labs = []
    for a, name in zip(adatas, names or [f"input {i}" for i in range(len(adatas))]):
        if celltype_key not in a.obs:
            msg = f"obs column '{celltype_key}' not found in {name} (celltype_key)"
            raise InputError(msg)
    # the cells in sample order, as collect_samples grouped them
    for a in adatas:
        if sample_key is None:
            labs.append(a.obs[celltype_key].astype(str).to_numpy())
            continue
        key = a.obs[sample_key].astype(str).to_numpy()
        lab = a.obs[celltype_key].astype(str).to_numpy()
        for sid in s.ids:
            sel = key == sid
            if sel.any():
                labs.append(lab[sel])
    x = np.concatenate(s.points)
    lab = np.concatenate(labs)
    _, near = cKDTree(z).query(x)
    out = []
    for k in range(z.shape[0]):
        c = Counter(lab[near == k])
        out.append(c.most_common(1)[0][0] if c else "")
    return out
