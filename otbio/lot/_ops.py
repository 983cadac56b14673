"""Operations on LOT embeddings: join shards, group barycenters, pairwise distances."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from otbio._compat import renamed_kwargs
from otbio._contract import clean_params
from otbio._errors import InputError, not_found
from otbio.lot._embed import to_cloud
from otbio.lot._format import (
    BARY_KEY,
    EMB_KEY,
    check_same_reference,
    collect_embedded,
    embedding_entry,
    representation_mismatch,
    same_value,
)

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

__all__ = ["barycenter", "concat", "distance_matrix", "distances", "embedding_arrays"]

log = logging.getLogger("otbio")


def embedding_arrays(emb: AnnData, *, name: str = "the embedding") -> tuple[np.ndarray, ...]:
    """``(V (n, k*d), z (k, d), r (k,))`` of an embedding AnnData, checked.

    The one validator of every LOT analysis (distances, barycenter, generate, classify):
    raises InputError for an embedding with no samples, a non-finite LOT vector, or a
    non-finite or negative stored reference.
    """
    from otbio.io import check_points, check_weights

    u = embedding_entry(emb, name=name)
    z = check_points(np.asarray(u["reference"]), name=f"{name}: the stored reference points")
    r = check_weights(
        np.asarray(u["reference_weights"]), z.shape[0], name=f"{name}: the reference weights"
    )
    if emb.n_obs == 0:
        msg = f"{name} holds 0 samples; embed at least one sample with `otbio embed`"
        raise InputError(msg)
    try:
        v = np.asarray(emb.X.toarray() if hasattr(emb.X, "toarray") else emb.X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        msg = f"{name}: X is not numeric ({exc})"
        raise InputError(msg) from None
    if v.ndim != 2 or v.shape[1] != z.size:
        msg = f"{name}: X has {v.shape[1]} columns but the reference has k*d = {z.size}"
        raise InputError(msg)
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        ids = [str(i) for i in np.asarray(emb.obs_names)[bad][:3]]
        more = f" and {int(bad.sum()) - 3} more" if bad.sum() > 3 else ""
        msg = (
            f"{name}: the LOT vectors of {int(bad.sum())} sample(s) ({', '.join(ids)}{more}) "
            "hold NaN or infinite values; embed those samples again"
        )
        raise InputError(msg)
    if bool(u["params"].get("raw_map", False)):  # stored T itself: convert to v
        v = (v.reshape(-1, *z.shape) - z) * np.sqrt(r)[None, :, None]
        v = v.reshape(emb.n_obs, -1)
    return v, z, r


def concat(embs: Sequence[AnnData], *, names: Sequence[str] | None = None) -> AnnData:
    """Join embedding shards made against the same reference (same ``reference_id``).

    Rows keep the order of the shards; ``uns['lot']`` is the first shard's with the
    per-sample arrays (``convergence``, ``epsilon_abs``) joined (in the current layout, with
    the parameters under ``uns['lot']['params']``, also for shards written before it). Raises InputError for
    shards from different references or solvers, or a sample found in two shards.
    """
    import anndata as ad

    embs = list(embs)
    names = list(names) if names is not None else [f"shard {i}" for i in range(len(embs))]
    if not embs:
        msg = "no embeddings to join"
        raise InputError(msg)
    entries = [embedding_entry(e, name=name) for e, name in zip(embs, names)]
    check_same_reference([str(u.get("reference_id", "")) for u in entries], names)
    u0 = entries[0]
    p0 = u0["params"]
    for u, name in zip(entries[1:], names[1:]):
        same = np.array_equal(
            np.asarray(u["reference"]), np.asarray(u0["reference"])
        ) and np.array_equal(
            np.asarray(u["reference_weights"]), np.asarray(u0["reference_weights"])
        )
        if not same:
            msg = f"{name} stores another reference than {names[0]}; re-embed it"
            raise InputError(msg)
        p = u["params"]
        rep = representation_mismatch(p, p0)
        if rep is not None:
            mine, first = rep.split(" / ")
            msg = f"{name} was embedded from {mine}, {names[0]} from {first}"
            raise InputError(msg)
        for key in ("solver", "epsilon", "relative_epsilon", "raw_map"):
            a, b = p0.get(key), p.get(key)
            if not same_value(a, b):
                msg = f"{name} was embedded with {key}={b!r}, {names[0]} with {a!r}"
                raise InputError(msg)
    all_ids = [str(i) for e in embs for i in e.obs_names]
    dup = (
        sorted({i for i in all_ids if all_ids.count(i) > 1})
        if len(set(all_ids)) < len(all_ids)
        else []
    )
    if dup:
        msg = f"sample '{dup[0]}' appears in more than one shard"
        raise InputError(msg)
    out = ad.concat(embs, axis=0, join="outer", merge="same")
    out.var = embs[0].var.copy()
    uns = dict(u0)
    uns["epsilon_abs"] = np.concatenate([np.asarray(u["epsilon_abs"]) for u in entries])
    conv = {}
    for key in u0["convergence"]:
        conv[key] = np.concatenate([np.asarray(u["convergence"][key]) for u in entries])
    uns["convergence"] = conv
    out.uns = {EMB_KEY: uns}
    return out


def distance_matrix(v: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances between the rows of ``v`` (the LOT distances)."""
    sq = (v * v).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (v @ v.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def distances(
    emb: AnnData,
    *,
    exact: bool = False,
    cells: AnnData | Sequence[AnnData] | None = None,
    jobs: int = 1,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Pairwise LOT distances :math:`\\|v_i - v_j\\|` between the samples of ``emb``.

    With ``exact=True`` (needs the ``cells`` the embedding was made from) the table also
    holds the exact :math:`W_2` between every pair of samples (``ot.emd``; quadratic in the
    number of samples: for small cohorts, to show the approximation error).

    Returns a DataFrame with ``sample_a``, ``sample_b``, ``lot`` (and ``exact_w2``), one row
    per unordered pair. ``progress`` reports the exact pairs on stderr.
    """
    import pandas as pd

    v, _, _ = embedding_arrays(emb)
    dm = distance_matrix(v)
    ids = [str(i) for i in emb.obs_names]
    ia, ib = np.triu_indices(len(ids), k=1)
    df = pd.DataFrame(
        {"sample_a": [ids[i] for i in ia], "sample_b": [ids[j] for j in ib], "lot": dm[ia, ib]}
    )
    if exact:
        if cells is None:
            msg = "exact W2 needs the cells: pass `cells` CELLS.h5ad"
            raise InputError(msg)
        clouds = _clouds_for(emb, cells, names)
        w2 = exact_w2_matrix(clouds, jobs=jobs, progress=progress)
        df["exact_w2"] = w2[ia, ib]
    return df


def _clouds_for(emb, cells, names):
    u = embedding_entry(emb)["params"]
    if not isinstance(cells, (list, tuple)):
        cells = [cells]
    ids = [str(i) for i in emb.obs_names]
    s = collect_embedded(cells, u, samples=ids, names=names)
    d = embedding_arrays(emb)[1].shape[1]
    if s.points and s.points[0].shape[1] != d:
        msg = (
            f"the cells have {s.points[0].shape[1]} dimensions but the embedding's reference "
            f"has {d}; pass the cells (and representation) the embedding was made from"
        )
        raise InputError(msg)
    return list(zip(s.points, s.weights))


def exact_w2_matrix(clouds, *, jobs: int = 1, progress: bool = False) -> np.ndarray:
    """Exact :math:`W_2` between every pair of ``(points, weights)`` clouds (``ot.emd``).

    ``progress`` reports the pairs done on stderr.
    """
    import otbio.ot as O
    from otbio._progress import progress as progress_bar

    n = len(clouds)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    out = np.zeros((n, n))

    def one(p):
        i, j = p
        return O.emd(clouds[i][0], clouds[j][0], clouds[i][1], clouds[j][1]).cost

    step = max(1, jobs) * 4

    def done():  # batches of pairs in threads; progress counts pairs, not batches
        for s in range(0, len(pairs), step):
            ch = pairs[s : s + step]
            yield from zip(ch, O.map_batch(one, ch, jobs=jobs, threads=True))

    bar = progress_bar(done(), total=len(pairs), desc="exact W2 pairs", show=progress)
    for (i, j), c in bar:
        out[i, j] = out[j, i] = np.sqrt(max(c, 0.0))
    return out


@renamed_kwargs({"weights": "weight_key"})
def barycenter(
    emb: AnnData,
    *,
    groupby: str,
    weight_key: str | None = None,
    n_cells: int | None = None,
    exact: bool = False,
    cells: AnnData | Sequence[AnnData] | None = None,
    seed: int = 0,
    max_iter: int = 20,
    jobs: int = 1,
    names: Sequence[str] | None = None,
) -> AnnData:
    """LOT barycenter of each group of samples, mapped back to cells.

    The LOT barycenter of a group is the (weighted) mean of its embeddings
    :math:`\\bar v = \\sum_i \\lambda_i v_i`, mapped back to the support
    :math:`z_k + \\bar v_k / \\sqrt{r_k}` with mass :math:`r_k`.

    Parameters
    ----------
    emb
        An embedding from :func:`embed`.
    groupby
        obs column of ``emb`` defining the groups (e.g. ``condition``).
    weight_key
        Optional obs column of ``emb`` with non-negative sample weights :math:`\\lambda_i`
        within each group (``weights=`` before 0.2).
    n_cells
        Resample each group's barycenter to ``n_cells`` cells (drawn with replacement by
        mass, seeded) instead of returning the weighted support.
    exact
        Also compute the exact free-support Wasserstein barycenter of each group (from the
        ``cells``, started at the reference), rows with ``obs['method'] == 'exact'``.

    Returns
    -------
    The barycenter AnnData documented in :mod:`otbio.lot`.
    """
    import pandas as pd

    v, z, r = embedding_arrays(emb)
    u = embedding_entry(emb)
    if groupby not in emb.obs:
        raise not_found("obs column", groupby, "the embedding", emb.obs.columns, "`groupby`")
    grp = emb.obs[groupby]
    if grp.isna().any():
        msg = f"obs column '{groupby}' has missing values"
        raise InputError(msg)
    grp = grp.astype(str).to_numpy()
    lam_all = _sample_weights(emb, weight_key)
    groups = list(dict.fromkeys(grp))
    if exact and cells is None:
        msg = "`exact` needs the cells: pass `cells` CELLS.h5ad"
        raise InputError(msg)
    clouds = _clouds_for(emb, cells, names) if exact else None
    rng = np.random.default_rng(seed)
    xs, obs_rows = [], []
    n_per = {}
    gaps: dict[str, float] = {}
    for g in groups:
        sel = np.flatnonzero(grp == g)
        lam = lam_all[sel]
        if not lam.sum() > 0:
            msg = f"sample weights of group '{g}' sum to zero; give a positive weight in weight_key"
            raise InputError(msg)
        lam = lam / lam.sum()
        n_per[g] = int(sel.size)
        vbar = lam @ v[sel]
        pts, mass = to_cloud(vbar, z, r)
        results = [("lot", pts, mass)]
        if exact:
            group_clouds = [clouds[i] for i in sel]  # type: ignore[index]
            ex_x, ex_a, gaps[g] = _exact_barycenter(
                g, group_clouds, lam, z, r, pts, mass, max_iter=max_iter, seed=seed, jobs=jobs
            )
            results.append(("exact", ex_x, ex_a))
        for method, p, m in results:
            if n_cells is not None:
                idx = rng.choice(p.shape[0], size=n_cells, replace=True, p=m / m.sum())
                p = p[idx]
                m = np.full(n_cells, 1.0 / n_cells)
            xs.append(p)
            obs_rows.append(
                pd.DataFrame(
                    {"group": [g] * p.shape[0], "weight": m, "method": [method] * p.shape[0]}
                )
            )
    params = {"groupby": groupby, "weight_key": weight_key, "n_cells": n_cells, "exact": exact}
    params.update(seed=seed, max_iter=max_iter)
    return _barycenter_adata(xs, obs_rows, groups, n_per, gaps, u, z.shape[1], params)


def _sample_weights(emb: AnnData, weight_key: str | None) -> np.ndarray:
    """The sample weights :math:`\\lambda` (n_samples,) from ``emb.obs[weight_key]`` (checked
    finite and non-negative), or ones."""
    import pandas as pd

    if weight_key is None:
        return np.ones(emb.n_obs)
    if weight_key not in emb.obs:
        cols = emb.obs.columns
        raise not_found("obs column", weight_key, "the embedding", cols, "weight_key")
    lam_all = pd.to_numeric(emb.obs[weight_key], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(lam_all).all() or (lam_all < 0).any():
        msg = f"sample weights '{weight_key}' contain NaN or negative values; fix weight_key"
        raise InputError(msg)
    return lam_all


def _exact_barycenter(
    g: str,
    clouds: list,
    lam: np.ndarray,
    z: np.ndarray,
    r: np.ndarray,
    pts: np.ndarray,
    mass: np.ndarray,
    *,
    max_iter: int,
    seed: int,
    jobs: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The exact free-support barycenter of group ``g``'s ``clouds`` with weights ``lam``,
    started at the reference ``(z, r)``. Returns its support, weights and the W2 distance to
    the LOT barycenter ``(pts, mass)`` (logged)."""
    import otbio.ot as O

    out = O.barycenter(
        clouds,
        weights=lam,
        init=z,
        init_weights=r,
        solver="exact",
        max_iter=max_iter,
        tol=1e-6,
        seed=seed,
        jobs=jobs,
    )
    gap = float(np.sqrt(max(O.emd(pts, out.x, mass, out.a).cost, 0.0)))
    log.info(
        "exact barycenter of '%s': %d iterations; W2 to the LOT barycenter %.4g",
        g,
        out.n_iter,
        gap,
    )
    return out.x, out.a, gap


def _barycenter_adata(
    xs: list[np.ndarray],
    obs_rows: list[pd.DataFrame],
    groups: list[str],
    n_per: dict[str, int],
    gaps: dict[str, float],
    u: dict,
    d: int,
    params: dict,
) -> AnnData:
    """The barycenter AnnData documented in :mod:`otbio.lot` from the rows ``xs`` / ``obs_rows``
    of every group and method, the embedding's entry ``u`` and the options ``params``."""
    import anndata as ad
    import pandas as pd

    exact = params["exact"]
    use_rep = u["params"].get("use_rep")
    x = np.concatenate(xs)
    obs = pd.concat(obs_rows, ignore_index=True)
    obs.index = [f"b{i}" for i in range(len(obs))]
    obs["group"] = pd.Categorical(obs["group"], categories=groups)
    obs["method"] = pd.Categorical(obs["method"])
    dims = list(u.get("dims", [])) or [f"dim{j}" for j in range(d)]
    out_ad = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=dims))
    if use_rep and use_rep != "X":
        out_ad.obsm[str(use_rep)] = x.copy()
    out_ad.uns[BARY_KEY] = {
        "reference_id": str(u.get("reference_id", "")),
        "groups": groups,
        "n_samples": np.array([n_per[g] for g in groups], dtype=np.int64),
        "params": clean_params(
            {
                "groupby": params["groupby"],
                "weight_key": params["weight_key"],
                "n_cells": params["n_cells"],
                "exact": bool(exact),
                "seed": int(params["seed"]),
                "max_iter": int(params["max_iter"]) if exact else None,
            }
        ),
    }
    if exact:
        out_ad.uns[BARY_KEY]["w2_lot_to_exact"] = np.array([gaps[g] for g in groups])
    return out_ad
