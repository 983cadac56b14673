"""Reference measures for LOT: k-means, Wasserstein barycenter, subsample or Gaussian."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from otbio._contract import clean_params
from otbio._errors import ConvergenceWarning, InputError, not_found
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
    strata: Sequence[np.ndarray] | None = None,
    min_points: int = 4,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference support ``z`` (k, d) and weights ``r`` (k,) from samples' point clouds.

    Every sample contributes the same number of cells (``cells_per_sample``, default the
    smallest sample, capped so that at most 50,000 cells are pooled) and the same total mass.

    - ``kmeans``: k-means centres of the pooled cells (weighted), ``r`` = cluster mass.
    - ``barycenter``: free-support W2 barycenter of the samples' pooled cells (uniform
      weights over samples) started from the k-means reference, with its weights kept.
    - ``sample``: ``size`` pooled cells drawn at random, uniform weights.
    - ``gaussian``: ``size`` draws from the pooled mean and covariance, uniform weights.

    ``strata`` (one label array per sample, e.g. cell types; ``kmeans`` and ``barycenter``
    only): the support is split over the labels, each getting a share of ``size`` in
    proportion to its pooled mass but at least ``min_points`` (or its number of pooled cells),
    ``size`` in all (:func:`allocate`), and k-means runs within each label, so that a small population keeps enough points for
    a change inside it to show. Weights stay the pooled cluster masses.

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
    lab = codes = None
    if strata is not None:
        points, codes = _with_strata(points, strata, method)
    x, w, per_sample = _pool(points, weights, cells_per_sample, rng)
    if strata is not None:
        lab = x[:, -1].astype(np.int64)
        x = np.ascontiguousarray(x[:, :-1])
        per_sample = [(pp[:, :-1], ww) for pp, ww in per_sample]
    _check_scale(x)
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
        z, r = _kmeans_support(x, w, lab, codes, size=size, min_points=min_points, seed=seed)
        if method == "barycenter":
            z = _barycenter_support(per_sample, z, r, max_iter=max_iter, seed=seed, jobs=jobs)
    if z.shape[0] < size:
        _warn_short(x, z.shape[0], size)
    return (
        np.ascontiguousarray(z, dtype=np.float64),
        np.asarray(r, dtype=np.float64),
        int(cells_per_sample),
    )


def _with_strata(
    points: Sequence[np.ndarray], strata: Sequence[np.ndarray], method: str
) -> tuple[list[np.ndarray], np.ndarray]:
    """Check ``strata`` (one label array per sample) and append the label codes to the cells
    as an extra column, so that pooling draws cells and labels together. Returns the
    extended points and the distinct labels (``codes``)."""
    if method not in ("kmeans", "barycenter"):
        msg = f"a stratified reference needs method kmeans or barycenter, not '{method}'"
        raise InputError(msg)
    if len(strata) != len(points) or any(len(a) != p.shape[0] for a, p in zip(strata, points)):
        msg = "strata must give one label per cell of every sample"
        raise InputError(msg)
    # pool the labels with the cells: the same draw, labels as an extra column
    codes, inv = np.unique(
        np.concatenate([np.asarray(a, dtype=str) for a in strata]), return_inverse=True
    )
    bounds = np.cumsum([0] + [p.shape[0] for p in points])
    points = [np.column_stack([p, inv[bounds[i] : bounds[i + 1]]]) for i, p in enumerate(points)]
    return points, codes


def _kmeans_support(
    x: np.ndarray,
    w: np.ndarray,
    lab: np.ndarray | None,
    codes: np.ndarray | None,
    *,
    size: int,
    min_points: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted k-means of the pooled cells ``(x, w)`` (within each label of ``lab`` when
    stratified). Returns the centres and their masses, empty clusters dropped, masses summing
    to one."""
    from sklearn.cluster import KMeans

    if lab is None:
        km = KMeans(n_clusters=size, n_init=1, random_state=seed, max_iter=100)
        _quiet_fit(km, x, w)
        z = np.asarray(km.cluster_centers_, dtype=np.float64)
        r = np.bincount(km.labels_, weights=w, minlength=size)
    else:
        z, r = _stratified_kmeans(x, w, lab, codes, size, min_points, seed)
    keep = r > 0
    if not keep.all():  # empty clusters carry no mass: drop them
        z, r = z[keep], r[keep]
    return z, r / r.sum()


def _barycenter_support(
    per_sample: list, z: np.ndarray, r: np.ndarray, *, max_iter: int, seed: int, jobs: int
) -> np.ndarray:
    """The free-support W2 barycenter of the samples ``per_sample`` started at ``(z, r)``
    (weights kept). Returns its support; warns (ConvergenceWarning) when it did not converge."""
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
    if not out.converged:
        warnings.warn(
            f"the barycenter reference did not converge in {out.n_iter} iterations "
            "(support still moving); raise max_iter",
            ConvergenceWarning,
            stacklevel=3,  # the caller of reference_from_arrays, as before the split
        )
    return out.x


def _warn_short(x: np.ndarray, k: int, size: int) -> None:
    """Log why the reference has ``k`` points instead of the ``size`` requested."""
    n_distinct = np.unique(x, axis=0).shape[0]
    why = (
        f"the pooled cells take only {n_distinct} distinct position(s)"
        if n_distinct < size
        else "k-means left clusters empty"
    )
    log.warning(
        "warning: the reference has %d point%s instead of the %d requested: %s",
        k,
        "" if k == 1 else "s",
        size,
        why,
    )


#: Largest distance of a cell from the median, in units of the cells' interquartile range,
#: that k-means resolves: squared distances of farther ones swamp the others in float64.
MAX_SPREAD_RATIO = 1e8


def _check_scale(x: np.ndarray) -> None:
    """Raise InputError when one cell lies so far out that k-means would collapse the rest."""
    if x.shape[0] < 2:
        return
    med = np.median(x, axis=0)
    q25, q75 = np.percentile(x, [25, 75], axis=0)
    spread = float((q75 - q25).max())
    far = float(np.abs(x - med).max())
    if spread > 0 and far > MAX_SPREAD_RATIO * spread:
        msg = (
            f"a cell lies {far:.3g} from the median while the cells spread over {spread:.3g} "
            "(interquartile range): k-means cannot place reference points at both scales; "
            "remove or rescale the outlying cells"
        )
        raise InputError(msg)


def _quiet_fit(km, x: np.ndarray, w: np.ndarray) -> None:
    """Fit k-means; its own warnings (fewer distinct points than clusters) are replaced by
    the one line of :func:`reference_from_arrays` on the size of the result."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.fit(x, sample_weight=w)


def allocate(size: int, mass: np.ndarray, count: np.ndarray, min_points: int) -> np.ndarray:
    """Points per label summing to ``size`` (when the cells allow): in proportion to mass,
    at least ``min_points`` each (lowered to ``size // labels`` when ``size`` is too small
    for it), never more than the label's cells."""
    n_lab = mass.size
    floor = min(int(min_points), max(1, int(size) // max(n_lab, 1)))
    n_t = np.minimum(np.maximum(np.floor(size * mass / mass.sum()), floor), count).astype(np.int64)
    # hand out what is left by mass per point, then take back where it is smallest
    while n_t.sum() < size and (n_t < count).any():
        room = np.where(n_t < count, mass / np.maximum(n_t, 1), -1.0)
        n_t[int(room.argmax())] += 1
    while n_t.sum() > size and (n_t > floor).any():
        over = np.where(n_t > floor, mass / np.maximum(n_t, 1), np.inf)
        n_t[int(over.argmin())] -= 1
    return n_t


def _stratified_kmeans(x, w, lab, codes, size, min_points, seed):
    """k-means within each label; points per label by pooled mass, at least ``min_points``."""
    from sklearn.cluster import KMeans

    mass = np.bincount(lab, weights=w, minlength=codes.size)
    count = np.bincount(lab, minlength=codes.size)
    n_t = allocate(size, mass, count, min_points)
    zs, rs = [], []
    for t in range(codes.size):
        if n_t[t] == 0:
            continue
        sel = lab == t
        km = KMeans(n_clusters=int(n_t[t]), n_init=1, random_state=seed, max_iter=100)
        _quiet_fit(km, x[sel], w[sel])
        zs.append(np.asarray(km.cluster_centers_, dtype=np.float64))
        rs.append(np.bincount(km.labels_, weights=w[sel], minlength=int(n_t[t])))
    log.info(
        "stratified reference: %s",
        ", ".join(f"{c} {n}" for c, n in zip(codes, n_t)),
    )
    return np.vstack(zs), np.concatenate(rs)


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
    stratify: bool = False,
    min_points: int = 4,
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
    stratify, min_points
        Split the support over the ``celltype_key`` labels (k-means within each, at least
        ``min_points`` points per label; see :func:`reference_from_arrays`). Off by default: on
        the state-shift benchmark (benchmarks/lot_classify.py) the pooled k-means reference
        classified better (mean balanced accuracy 0.04 higher over 32 cohorts).

    Returns
    -------
    The reference AnnData documented in :mod:`otbio.lot`: ``X`` support (k, d),
    ``obs['weight']``, ``uns['lot_reference']`` (the reference id, the samples pooled, PCA
    loadings) with the parameters that made it under ``uns['lot_reference']['params']``.
    """
    import anndata as ad
    import pandas as pd

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
    labs = None
    if celltype_key is not None:
        labs = _labels_by_sample(adatas, s, sample_key, celltype_key, names)
    if stratify and labs is None:
        msg = "stratify needs celltype_key (the cell-type column)"
        raise InputError(msg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        z, r, cps = reference_from_arrays(
            s.points,
            s.weights,
            method=method,
            size=size,
            cells_per_sample=cells_per_sample,
            seed=seed,
            max_iter=max_iter,
            jobs=jobs,
            strata=labs if stratify else None,
            min_points=min_points,
        )
    converged = True
    for w in caught:  # passed on; the reference records whether its solver converged
        converged = converged and not issubclass(w.category, ConvergenceWarning)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    d = z.shape[1]
    dims = dim_names(use_rep, vars, d)
    obs = pd.DataFrame({"weight": r}, index=[f"z{k}" for k in range(z.shape[0])])
    if celltype_key is not None:
        obs[celltype_key] = pd.Categorical(_nearest_labels(labs, s, z))
    params = {"method": method, "size": size, "cells_per_sample": cells_per_sample}
    params.update(use_rep=use_rep, vars=vars, sample_key=sample_key, weight_key=weight_key)
    params.update(celltype_key=celltype_key, stratify=stratify, min_points=min_points)
    params.update(seed=seed, max_iter=max_iter)
    entry = _reference_entry(z, r, s.ids, cps, converged, params)
    if s.loadings is not None:
        entry["loadings"] = s.loadings
        entry["genes"] = s.genes
    out = ad.AnnData(X=z, obs=obs, var=pd.DataFrame(index=dims))
    out.uns[REF_KEY] = entry
    log.info("reference %s: %d points in %d dimensions", entry["reference_id"], z.shape[0], d)
    return out


def _reference_entry(
    z: np.ndarray,
    r: np.ndarray,
    ids: list[str],
    cps: int,
    converged: bool,
    p: dict,
) -> dict:
    """``uns['lot_reference']`` (documented in :mod:`otbio.lot`, loadings aside) for the
    support ``(z, r)`` pooled from the samples ``ids`` (``cps`` cells each), made with the
    options ``p`` of :func:`reference`."""
    from otbio import __version__

    vars, stratify = p["vars"], p["stratify"]
    return {
        "reference_id": reference_id(z, r),
        "n_samples": len(ids),
        "cells_per_sample": cps,
        "samples": list(ids),
        "converged": bool(converged),
        "otbio_version": __version__,
        "params": clean_params(
            {
                "method": p["method"],
                "size": int(p["size"]),
                "cells_per_sample": p["cells_per_sample"],
                "use_rep": p["use_rep"],
                "vars": [str(v) for v in vars] if vars else None,
                "sample_key": p["sample_key"],
                "weight_key": p["weight_key"],
                "celltype_key": p["celltype_key"],
                "stratify": bool(stratify),
                "min_points": int(p["min_points"]) if stratify else None,
                "seed": int(p["seed"]),
                "max_iter": int(p["max_iter"]),
            }
        ),
    }


def _labels_by_sample(adatas, s, sample_key, celltype_key, names):
    """The ``celltype_key`` labels of every sample's cells, in the order of ``s.points``."""
    for a, name in zip(adatas, names or [f"input {i}" for i in range(len(adatas))]):
        if celltype_key not in a.obs:
            raise not_found("obs column", celltype_key, name, a.obs.columns, "celltype_key")
    by_id: dict[str, np.ndarray] = {}
    for a, name in zip(adatas, names or [str(i) for i in range(len(adatas))]):
        lab = a.obs[celltype_key].astype(str).to_numpy()
        if sample_key is None:
            by_id[str(name)] = lab
            continue
        key = a.obs[sample_key].astype(str).to_numpy()
        for sid in s.ids:
            sel = key == sid
            if sel.any():
                by_id[sid] = lab[sel]
    return [by_id[sid] for sid in s.ids]


def _nearest_labels(labs, s, z):
    """Majority label of the cells nearest to each support point (ties: first label)."""
    from collections import Counter

    from scipy.spatial import cKDTree

    x = np.concatenate(s.points)
    lab = np.concatenate(labs)
    _, near = cKDTree(z).query(x)
    out = []
    for k in range(z.shape[0]):
        c = Counter(lab[near == k])
        out.append(c.most_common(1)[0][0] if c else "")
    return out
