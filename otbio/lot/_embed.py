"""The LOT embedding: transport the reference onto every sample, keep the projection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from otbio._contract import clean_params
from otbio._errors import InputError
from otbio.lot._format import (
    EMB_KEY,
    collect_samples,
    dim_names,
    reference_arrays,
    representation_mismatch,
)
from otbio.ot._defaults import SINKHORN_DEFAULTS as _SD

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

__all__ = ["SampleFit", "embed", "embed_arrays", "lot_vector", "to_cloud"]

log = logging.getLogger("otbio")
Solver = Literal["exact", "sinkhorn"]


@dataclass(frozen=True)
class SampleFit:
    """Per-sample result: the map ``t`` (k, d) and how the solver ended."""

    t: np.ndarray
    converged: bool
    n_iter: int
    marginal_error: float
    cost: float
    epsilon: float


def lot_vector(t: np.ndarray, z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """:math:`v = ((T(z_k) - z_k)\\sqrt{r_k})_k` flattened row-major, length k*d."""
    return ((t - z) * np.sqrt(r)[:, None]).ravel()


def to_cloud(
    v: np.ndarray, z: np.ndarray, r: np.ndarray, *, raw_map: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Map a LOT vector back to a point cloud: support ``z + v / sqrt(r)``, weights ``r``.

    ``v`` has length k*d (or shape (k, d)); with ``raw_map`` it is the map T itself.
    Reference points of zero weight are left at ``z``.
    """
    z = np.asarray(z, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64).reshape(z.shape)
    if raw_map:
        return v.copy(), r.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(r > 0, 1.0 / np.sqrt(r), 0.0)
    return z + v * scale[:, None], r.copy()


def embed_arrays(
    z: np.ndarray,
    r: np.ndarray,
    points: Sequence[np.ndarray],
    weights: Sequence[np.ndarray] | None = None,
    *,
    solver: Solver = "exact",
    epsilon: float = _SD.epsilon,
    relative_epsilon: Literal["mean", "max"] | None = _SD.relative_epsilon,
    tol: float = _SD.tol,
    max_iter: int = _SD.max_iter,
    epsilon_scaling: float | None = _SD.epsilon_scaling,
    jobs: int = 1,
    device: str = "cpu",
    warm_start: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, list[SampleFit]]:
    """LOT maps of many samples against one reference: ``T`` of shape (n_samples, k, d).

    ``solver="exact"``: the exact plan per sample (:func:`otbio.ot.emd`: POT's sparse network
    simplex by column generation, certified optimal against the whole cost matrix, or the
    dense ``ot.emd`` for small problems), ``jobs`` samples at a time in threads (both
    release the GIL). ``solver="sinkhorn"``: the engine's log-domain
    Sinkhorn, one sample after the other (each uses every core), ``epsilon`` relative to the
    mean cost by default, reached by adaptive ``epsilon_scaling`` (halving from the mean cost
    when the target epsilon is not easy), or warm-started from the previous sample's
    reference potential with ``warm_start``.

    .. math::
        T(z_k) = \\frac{\\sum_j P_{kj} x_j}{\\sum_j P_{kj}}

    Returns ``(T, fits)``: the maps and one :class:`SampleFit` per sample.
    """

    z = np.ascontiguousarray(z, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if weights is None:
        weights = [None] * len(points)
    for i, p in enumerate(points):
        if p.shape[1] != z.shape[1]:
            msg = (
                f"the reference has {z.shape[1]} dimensions but sample {i} has {p.shape[1]}; "
                "embed with the representation the reference was made from"
            )
            raise InputError(msg)
    if solver == "exact":
        fits = _maps_exact(z, r, points, weights, jobs=jobs, progress=progress)
    elif solver == "sinkhorn":
        fits = _maps_sinkhorn(
            z,
            r,
            points,
            weights,
            epsilon=epsilon,
            relative_epsilon=relative_epsilon,
            tol=tol,
            max_iter=max_iter,
            epsilon_scaling=epsilon_scaling,
            device=device,
            warm_start=warm_start,
            progress=progress,
        )
    else:
        msg = f"unknown solver '{solver}'; choose exact or sinkhorn"
        raise InputError(msg)
    t_all = np.stack([f.t for f in fits])  # type: ignore[union-attr]
    return t_all, fits  # type: ignore[return-value]


def _maps_exact(
    z: np.ndarray,
    r: np.ndarray,
    points: Sequence[np.ndarray],
    weights: Sequence[np.ndarray | None],
    *,
    jobs: int,
    progress: bool,
) -> list[SampleFit]:
    """Exact LOT maps (:func:`otbio.ot.emd`), ``jobs`` samples at a time in threads, in
    batches of ``4 * jobs`` (progress per batch). Returns one :class:`SampleFit` per sample.

    Runs in :func:`otbio.ot.map_batch` worker threads: nothing here may enter
    ``warnings.catch_warnings`` (map_batch catches once in the caller).
    """
    import otbio.ot as O
    from otbio._progress import progress as progress_bar

    n = len(points)
    items = list(range(n))
    fits: list[SampleFit | None] = [None] * n
    f_first: list[np.ndarray] = []  # the first sample's reference potential

    def one(i: int) -> SampleFit:
        # samples after the first batch start their column generation from the first
        # sample's reference potential instead of a coarse problem (same reference; the
        # optimum is certified anyway; the first batch runs cold, so the start never
        # depends on thread timing); only where the coarse problem would run (m >= 2n):
        # with fewer cells the potential of another sample chose worse first arcs
        # (benchmarks/lot_exact.py)
        warm = f_first and i >= chunk and len(points[i]) >= 2 * max(len(z), 250)
        f0 = f_first[0] if warm else None
        out = O.emd(z, points[i], r, weights[i], f0=f0)
        if i == 0 and out.f is not None:
            f_first.append(out.f)
        mass = out.marginals()[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = out.plan_dot(points[i]) / mass[:, None]
        t = np.where(mass[:, None] > 0, t, z)  # reference points of zero weight stay put
        return SampleFit(t, bool(out.converged), 0, 0.0, float(out.cost), 0.0)

    jobs = max(1, int(jobs))
    chunk = 4 * jobs  # samples per batch of threads; progress is reported per batch

    def run():
        for s0 in range(0, n, chunk):
            ch = items[s0 : s0 + chunk]
            yield from zip(ch, O.map_batch(one, ch, jobs=jobs, threads=True))

    done = run()
    if progress:
        done = progress_bar(done, total=n, desc="embedding (exact)")
    for i, f in done:
        fits[i] = f
    return fits  # type: ignore[return-value]


def _maps_sinkhorn(
    z: np.ndarray,
    r: np.ndarray,
    points: Sequence[np.ndarray],
    weights: Sequence[np.ndarray | None],
    *,
    epsilon: float,
    relative_epsilon: Literal["mean", "max"] | None,
    tol: float,
    max_iter: int,
    epsilon_scaling: float | None,
    device: str,
    warm_start: bool,
    progress: bool,
) -> list[SampleFit]:
    """Entropic LOT maps (the engine's log-domain Sinkhorn), one sample after the other,
    epsilon resolved per sample, optionally warm-started from the previous sample's reference
    potential. Returns one :class:`SampleFit` per sample."""
    import otbio.ot as O
    from otbio._progress import progress as progress_bar

    n = len(points)
    items = list(range(n))
    fits: list[SampleFit | None] = [None] * n
    f_prev = None
    it = progress_bar(items, total=n, desc="embedding (sinkhorn)") if progress else items
    for i in it:
        geom = O.PointCloud(z, points[i])
        w = (
            np.full(points[i].shape[0], 1.0 / points[i].shape[0])
            if weights[i] is None
            else weights[i]
        )
        eps = O.resolve_epsilon(geom, r, w, epsilon, relative_epsilon)
        init = None
        if warm_start and f_prev is not None:
            init = O.warm_start(geom, f_prev, r, eps, device=device)
        out = O.Sinkhorn(
            epsilon=eps,  # already resolved against this sample's mean cost
            relative_epsilon=None,
            tol=tol,
            max_iter=max_iter,
            epsilon_scaling=epsilon_scaling if init is None else None,
            device=device,
            warn=False,
        )(geom, r, w, init=init)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = out.barycentric_projection()
        t = np.where((r > 0)[:, None] & np.isfinite(t), t, z)
        f_prev = out.f
        fits[i] = SampleFit(
            t,
            bool(out.converged),
            int(out.n_iter),
            float(out.marginal_error),
            float(out.cost),
            eps,
        )
    return fits  # type: ignore[return-value]


def embed(
    adatas: AnnData | Sequence[AnnData],
    ref: AnnData,
    *,
    sample_key: str | None,
    use_rep: str | None = None,
    vars: Sequence[str] | None = None,
    weight_key: str | None = None,
    samples: Sequence[str] | None = None,
    solver: Solver = "exact",
    epsilon: float = _SD.epsilon,
    relative_epsilon: Literal["mean", "max"] | None = _SD.relative_epsilon,
    tol: float = _SD.tol,
    max_iter: int = _SD.max_iter,
    epsilon_scaling: float | None = _SD.epsilon_scaling,
    raw_map: bool = False,
    jobs: int = 1,
    device: str = "cpu",
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> AnnData:
    """Embed every sample of the cells into LOT space against the reference ``ref``.

    Parameters
    ----------
    adatas
        One AnnData with all cells, or several (e.g. one file per sample).
    ref
        A reference AnnData from :func:`reference`.
    sample_key
        obs column naming the sample of each cell (None: each AnnData is one sample).
    use_rep, vars
        Cell coordinates; by default those the reference was made from.
    weight_key
        Optional obs column of non-negative cell weights (uniform otherwise).
    samples
        Embed only these sample ids (to shard a cohort; join shards with :func:`concat`).
    solver, epsilon, relative_epsilon, tol, max_iter
        ``"exact"`` (network simplex) or ``"sinkhorn"`` with ``epsilon`` (relative to the
        mean cost when ``relative_epsilon="mean"``). Smaller epsilon is closer to exact and
        slower; raise ``max_iter`` or epsilon when samples do not converge.
        ``epsilon_scaling`` (factor in (0, 1), None for off) starts at the mean cost.
    raw_map
        Store the map :math:`T(z)` instead of :math:`(T(z) - z)\\sqrt{r}`.

    Returns
    -------
    The embedding AnnData documented in :mod:`otbio.lot` (``X`` (n_samples, k*d), sample-level
    ``obs``, ``uns['lot']`` with the parameters under ``uns['lot']['params']``).
    """
    import anndata as ad

    z, r, ref_entry = reference_arrays(ref)
    ref_params = ref_entry["params"]
    use_rep, vars = _representation(ref_params, use_rep, vars, z.shape[1])
    if not isinstance(adatas, (list, tuple)):
        adatas = [adatas]
    s = collect_samples(
        adatas,
        sample_key=sample_key,
        use_rep=use_rep,
        vars=vars,
        weight_key=weight_key,
        samples=samples,
        names=names,
    )
    d = s.points[0].shape[1] if s.points else z.shape[1]
    if d != z.shape[1]:  # an older reference without its record: the widths tell
        msg = (
            f"the reference has {z.shape[1]} dimensions but use_rep '{use_rep}' has {d}; embed "
            "with the representation the reference was made from"
        )
        raise InputError(msg)
    if solver == "sinkhorn" and not (epsilon > 0 and np.isfinite(epsilon)):
        msg = f"`epsilon` must be positive, got {epsilon}"
        raise InputError(msg)
    log.info(
        "embedding %d samples against reference %s (%d x %d) with %s%s",
        len(s.ids),
        ref_entry.get("reference_id", "?"),
        z.shape[0],
        z.shape[1],
        solver,
        f" (epsilon {epsilon}, relative {relative_epsilon})" if solver == "sinkhorn" else "",
    )
    solver_kw = dict(solver=solver, epsilon=epsilon, relative_epsilon=relative_epsilon)
    solver_kw.update(epsilon_scaling=epsilon_scaling, tol=tol, max_iter=max_iter)
    run_kw = dict(jobs=jobs, device=device, progress=progress)
    t, fits = embed_arrays(z, r, s.points, s.weights, **solver_kw, **run_kw)
    x = _lot_matrix(t, z, r, raw_map=raw_map)
    dims = dim_names(use_rep, vars, z.shape[1])
    ref_dims = [str(v) for v in ref.var_names]
    if len(ref_dims) == z.shape[1]:
        dims = ref_dims
    obs = _embedding_obs(s.obs, fits, solver)
    rep = {"use_rep": use_rep, "vars": [str(v) for v in vars] if vars else None}
    keys = {"sample_key": sample_key, "weight_key": weight_key}
    params = {**rep, **keys, **solver_kw, "raw_map": raw_map}
    uns = _embedding_uns(ref, z, r, ref_entry, dims, s.ids, fits, params)
    out = ad.AnnData(X=x, obs=obs, var=_embedding_var(z.shape[0], dims))
    out.uns[EMB_KEY] = uns
    return out


def _representation(
    ref_params: dict, use_rep: str | None, vars: Sequence[str] | None, width: int
) -> tuple[str | None, list[str] | Sequence[str] | None]:
    """The representation to read the cells in: the reference's (``ref_params``) when
    neither ``use_rep`` nor ``vars`` is given, else the one given, checked against the
    reference's record (InputError when they differ; a logged note for older references that
    record only their ``width``). Returns ``(use_rep, vars)``."""
    recorded = bool(ref_params.get("use_rep")) or np.size(ref_params.get("vars", [])) > 0
    if use_rep is None and not vars:
        use_rep = ref_params.get("use_rep") or None
        vars = list(ref_params.get("vars", [])) or None
    elif recorded:
        mine = {"use_rep": use_rep, "vars": [str(v) for v in vars] if vars else None}
        rep = representation_mismatch(mine, ref_params)
        if rep is not None:
            given, made = rep.split(" / ")
            msg = (
                f"the cells are given by {given} but the reference was made from {made}; "
                "embed with the representation of the reference (leave `use_rep` out)"
            )
            raise InputError(msg)
    else:
        log.info(
            "the reference does not record its representation (an older file): only its "
            "width (%d dimensions) is checked against %s",
            width,
            f"use_rep {use_rep}" if use_rep is not None else "vars",
        )
    return use_rep, vars


def _lot_matrix(t: np.ndarray, z: np.ndarray, r: np.ndarray, *, raw_map: bool) -> np.ndarray:
    """The embedding matrix (n_samples, k*d) from the maps ``t`` (n_samples, k, d): the LOT
    vectors :math:`(T(z_k) - z_k)\\sqrt{r_k}`, or ``t`` itself with ``raw_map``."""
    n = t.shape[0]
    k, d = z.shape
    x = t.reshape(n, k * d) if raw_map else (t - z) * np.sqrt(r)[None, :, None]
    return np.ascontiguousarray(x.reshape(n, k * d), dtype=np.float64)


def _embedding_var(k: int, dims: list[str]) -> pd.DataFrame:
    """``var`` of the embedding: one row ``z{k}:{dim}`` per reference point and dimension."""
    import pandas as pd

    return pd.DataFrame(
        {
            "ref_point": np.repeat(np.arange(k), len(dims)).astype(np.int64),
            "dim": np.tile(np.asarray(dims, dtype=object), k),
        },
        index=[f"z{kk}:{dd}" for kk in range(k) for dd in dims],
    )


def _embedding_obs(obs: pd.DataFrame, fits: list[SampleFit], solver: str) -> pd.DataFrame:
    """The samples' ``obs`` plus ``lot_converged``, ``lot_n_iter`` (sinkhorn) and ``lot_cost``
    from the ``fits``; warns when some samples did not converge."""
    obs = obs.copy()
    obs["lot_converged"] = np.array([f.converged for f in fits], dtype=bool)
    if solver == "sinkhorn":  # the exact solver has no iterations to report
        obs["lot_n_iter"] = np.array([f.n_iter for f in fits], dtype=np.int64)
    obs["lot_cost"] = np.array([f.cost for f in fits], dtype=np.float64)
    n_bad = int((~obs["lot_converged"]).sum())
    if n_bad:
        log.warning(
            "%d of %d samples did not converge (see obs['lot_converged']); "
            "raise max_iter or `epsilon`",
            n_bad,
            len(fits),
        )
    return obs


def _embedding_uns(
    ref: AnnData,
    z: np.ndarray,
    r: np.ndarray,
    ref_entry: dict,
    dims: list[str],
    ids: list[str],
    fits: list[SampleFit],
    params: dict,
) -> dict:
    """``uns['lot']`` of the embedding (documented in :mod:`otbio.lot`): the reference, its
    labels and loadings, per-sample convergence and ``params`` (the solver's options only for
    sinkhorn)."""
    from otbio import __version__

    sink = params["solver"] == "sinkhorn"
    uns = {
        "reference": z,
        "reference_weights": r,
        "reference_id": str(ref_entry.get("reference_id", "")),
        "reference_params": clean_params(ref_entry["params"]),
        "dims": list(dims),
        "epsilon_abs": np.array([f.epsilon for f in fits], dtype=np.float64),
        "convergence": _convergence(ids, fits),
        "otbio_version": __version__,
        "params": clean_params(
            {
                **params,
                "epsilon": float(params["epsilon"]) if sink else None,
                "relative_epsilon": params["relative_epsilon"] if sink else None,
                "epsilon_scaling": params["epsilon_scaling"] if sink else None,
                "tol": float(params["tol"]) if sink else None,
                "max_iter": int(params["max_iter"]) if sink else None,
                "raw_map": bool(params["raw_map"]),
            }
        ),
    }
    labels = {
        str(c): ref.obs[c].astype(str).to_numpy().astype(object)
        for c in ref.obs.columns
        if c != "weight"
    }
    if labels:
        uns["reference_labels"] = labels
    if "loadings" in ref_entry:
        uns["loadings"] = np.asarray(ref_entry["loadings"])
        uns["genes"] = list(ref_entry["genes"])
    return uns


def _convergence(ids, fits) -> dict:
    return {
        "sample": np.asarray(ids, dtype=object).astype(str),
        "converged": np.array([f.converged for f in fits], dtype=bool),
        "n_iter": np.array([f.n_iter for f in fits], dtype=np.int64),
        "marginal_error": np.array([f.marginal_error for f in fits], dtype=np.float64),
        "cost": np.array([f.cost for f in fits], dtype=np.float64),
    }
