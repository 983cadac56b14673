"""Synthetic samples as convex combinations of LOT embeddings, mapped back to cells.

LOT space is linear: :math:`v = \\sum_i \\lambda_i v_i` with :math:`\\lambda_i \\ge 0`,
:math:`\\sum_i \\lambda_i = 1` is the embedding of a mixture-in-transport of the samples, and
:math:`z_k + v_k / \\sqrt{r_k}` with mass :math:`r_k` is its point cloud.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from otbio._contract import clean_params
from otbio._errors import InputError, not_found
from otbio.lot._embed import embed_arrays, to_cloud
from otbio.lot._format import embedding_entry, reference_id
from otbio.lot._ops import distance_matrix, embedding_arrays

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

__all__ = ["GEN_KEY", "check_synthetic", "generate", "mixing_weights"]

log = logging.getLogger("otbio")
GEN_KEY = "lot_generate"


def _groups(emb: AnnData, groupby: str) -> np.ndarray:
    if groupby not in emb.obs:
        raise not_found("obs column", groupby, "the embedding", emb.obs.columns, "`groupby`")
    col = emb.obs[groupby]
    if col.isna().any():
        msg = f"obs column '{groupby}' has missing values"
        raise InputError(msg)
    return col.astype(str).to_numpy()


def mixing_weights(
    emb: AnnData,
    *,
    groupby: str | None = None,
    n_samples: int = 10,
    alpha: float = 1.0,
    groups: Sequence[str] | None = None,
    between: tuple[str, str] | None = None,
    steps: int = 5,
    weights: Sequence[Mapping[str, float]] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Mixing weights ``W`` (n_synthetic, n_samples), each row on the simplex.

    Exactly one mode: explicit ``weights`` (one mapping sample -> weight per synthetic
    sample, summing to one), ``between=(A, B)`` (``steps`` points on the path between the
    barycenters of groups A and B), or Dirichlet(``alpha``) weights over the samples of each
    group (``n_samples`` per group). Returns ``(W, names, source_group, t)`` (t: path position,
    NaN outside ``between``).
    """
    ids = [str(i) for i in emb.obs_names]
    pos = {s: i for i, s in enumerate(ids)}
    if weights is not None:
        if between is not None:
            msg = "give either `weights` or `between`, not both"
            raise InputError(msg)
        rows = []
        for j, wmap in enumerate(weights):
            row = np.zeros(len(ids))
            for s, val in wmap.items():
                if str(s) not in pos:
                    msg = f"`weights`: sample '{s}' is not in the embedding"
                    raise InputError(msg)
                if not (np.isfinite(val) and val >= 0):
                    msg = f"`weights`: weight of '{s}' must be >= 0 (convex combination), got {val}"
                    raise InputError(msg)
                row[pos[str(s)]] += float(val)
            if abs(row.sum() - 1.0) > 1e-6:
                msg = f"`weights` #{j + 1} sum to {row.sum():.6g}, not 1; rescale them"
                raise InputError(msg)
            rows.append(row / row.sum())
        w = np.array(rows)
        names = [f"synthetic_{j:03d}" for j in range(len(rows))]
        return w, names, ["weights"] * len(rows), np.full(len(rows), np.nan)
    if groupby is None:
        msg = "pass `groupby` (the obs column of the groups), or explicit `weights`"
        raise InputError(msg)
    grp = _groups(emb, groupby)
    present = list(dict.fromkeys(grp))
    if between is not None:
        a, b = (str(x) for x in between)
        for g in (a, b):
            if g not in present:
                msg = f"`between`: group '{g}' not found in '{groupby}' ({', '.join(present[:6])})"
                raise InputError(msg)
        if steps < 2:
            msg = f"`steps` must be >= 2, got {steps}"
            raise InputError(msg)
        ma = (grp == a) / (grp == a).sum()
        mb = (grp == b) / (grp == b).sum()
        t = np.linspace(0.0, 1.0, steps)
        w = (1 - t)[:, None] * ma[None, :] + t[:, None] * mb[None, :]
        names = [f"{a}_to_{b}_{j:03d}" for j in range(steps)]
        return w, names, [f"{a}->{b}"] * steps, t
    if not (alpha > 0 and np.isfinite(alpha)):
        msg = f"`alpha` must be positive, got {alpha}"
        raise InputError(msg)
    if n_samples < 1:
        msg = f"n_samples must be >= 1, got {n_samples}"
        raise InputError(msg)
    use = present if groups is None else [str(g) for g in groups]
    for g in use:
        if g not in present:
            msg = f"group '{g}' not found in '{groupby}' ({', '.join(present[:6])}); check `groups`"
            raise InputError(msg)
    rng = np.random.default_rng(seed)
    rows, names, src = [], [], []
    for g in use:
        sel = np.flatnonzero(grp == g)
        lam = rng.dirichlet(np.full(sel.size, alpha), size=n_samples)
        for j in range(n_samples):
            row = np.zeros(len(ids))
            row[sel] = lam[j]
            rows.append(row)
            names.append(f"{g}_synthetic_{j:03d}")
            src.append(g)
    return np.array(rows), names, src, np.full(len(rows), np.nan)


def generate(
    emb: AnnData,
    *,
    groupby: str | None = None,
    n_samples: int = 10,
    alpha: float = 1.0,
    groups: Sequence[str] | None = None,
    between: tuple[str, str] | None = None,
    steps: int = 5,
    weights: Sequence[Mapping[str, float]] | None = None,
    n_cells: int = 2000,
    to_genes: bool = False,
    seed: int = 0,
) -> AnnData:
    """Synthetic samples from convex combinations of LOT vectors, as cells.

    Each synthetic sample :math:`v = \\sum_i \\lambda_i v_i` (weights from
    :func:`mixing_weights`) is mapped back to the cloud :math:`z_k + v_k/\\sqrt{r_k}` with
    mass :math:`r_k`, then resampled to ``n_cells`` cells (drawn with replacement by mass,
    seeded; so a synthetic sample has at most k distinct cells), or kept as the k weighted
    points with ``n_cells=0``.

    Returns
    -------
    AnnData of cells: ``X`` float64 (cells, d) in the representation's coordinates (also in
    ``obsm[use_rep]`` when the embedding used an obsm representation); with ``to_genes``
    (the coordinates then in ``obsm[use_rep]``, ``X_pca``) ``X`` is ``coords @ loadings.T`` over the genes
    (RECONSTRUCTED from the PCA loadings, centred: no gene means are stored), over the
    genes with finite loadings only (genes left out of the PCA have NaN rows in
    ``varm['PCs']``, cannot be reconstructed and are absent), ``var['reconstructed'] = True``. ``obs``: ``synthetic_sample``, ``source_group``, the
    embedding's sample key and ``groupby`` (so the output can be embedded again),
    ``ref_point`` (reference point of origin), ``weight`` (cell mass within its sample).
    ``uns['lot_generate']``: ``mode``, ``weights`` (n_synthetic, n_samples), ``samples``
    (real ids, columns of weights), ``synthetic``, ``source_group``, ``t``,
    ``reference_id``, ``dims``, ``rep_key`` (the obsm key of the coordinates, ``""`` when
    only in ``X``), ``reconstructed``, and ``params`` (``groupby``, ``n_samples``, ``alpha``,
    ``groups``, ``between``, ``steps``, ``n_cells``, ``to_genes``, ``seed``, ``use_rep``:
    those of the mode used).
    """
    import anndata as ad
    import pandas as pd

    v, z, r = embedding_arrays(emb)
    u = embedding_entry(emb)
    up = u["params"]
    if n_cells < 0:
        msg = f"n_cells must be >= 0, got {n_cells}"
        raise InputError(msg)
    loadings, genes = _gene_loadings(u, z.shape[1]) if to_genes else (None, None)
    w, names, src, t = mixing_weights(
        emb,
        groupby=groupby,
        n_samples=n_samples,
        alpha=alpha,
        groups=groups,
        between=between,
        steps=steps,
        weights=weights,
        seed=seed,
    )
    mode = "weights" if weights is not None else ("between" if between is not None else "dirichlet")
    log.info(
        "generating %d synthetic samples (%s) from %d real samples", len(names), mode, v.shape[0]
    )
    coords, obs_df = _synthetic_cells(w @ v, z, r, names, src, n_cells=n_cells, seed=seed)
    sample_key = up.get("sample_key") or ""
    if sample_key and sample_key not in obs_df:
        obs_df[sample_key] = obs_df["synthetic_sample"]
    if groupby and groupby not in obs_df:
        obs_df[groupby] = obs_df["source_group"]
    for col in ("synthetic_sample", "source_group"):
        obs_df[col] = pd.Categorical(obs_df[col], categories=list(dict.fromkeys(obs_df[col])))
    dims = list(u.get("dims", [])) or [f"dim{j}" for j in range(z.shape[1])]
    if loadings is not None:
        out = ad.AnnData(
            X=coords @ loadings.T,
            obs=obs_df,
            var=pd.DataFrame({"reconstructed": True}, index=pd.Index(genes, dtype=str)),
        )
    else:
        out = ad.AnnData(X=coords, obs=obs_df, var=pd.DataFrame(index=pd.Index(dims, dtype=str)))
    use_rep = up.get("use_rep") or ""
    # the coordinates in the representation: in X, and in obsm[use_rep] (X_pca for a PCA
    # read back to genes) whenever the representation is an obsm key
    rep_key = use_rep if use_rep and use_rep != "X" else ("X_pca" if loadings is not None else "")
    if rep_key:
        out.obsm[rep_key] = coords.copy()
    params = {"groupby": groupby, "n_samples": n_samples, "alpha": alpha, "groups": groups}
    params.update(between=between, steps=steps, n_cells=n_cells, to_genes=to_genes, seed=seed)
    out.uns[GEN_KEY] = _generate_uns(emb, w, names, src, t, z, r, dims, rep_key, loadings, mode)
    out.uns[GEN_KEY]["params"] = _generate_params(params, mode, use_rep)
    return out


def _gene_loadings(u: dict, d: int) -> tuple[np.ndarray, list[str]]:
    """The embedding's PCA loadings (n_genes, d) and genes, the genes with finite loadings
    only; InputError when ``u`` (``uns['lot']``) has none for the ``d`` dimensions."""
    if "loadings" not in u or np.asarray(u["loadings"]).shape[1] != d:
        msg = (
            "to_genes needs PCA loadings in the embedding; build the reference from "
            "cells with varm['PCs'] and use_rep X_pca"
        )
        raise InputError(msg)
    from otbio.lot._format import valid_loadings

    # embeddings written before 0.x kept NaN rows (genes outside the PCA): drop them
    loadings, genes = valid_loadings(
        np.asarray(u["loadings"], dtype=np.float64), [str(g) for g in u["genes"]]
    )
    if loadings is None:
        msg = "--to-genes: no gene has finite PCA loadings in the embedding"
        raise InputError(msg)
    return loadings, genes  # type: ignore[return-value]


def _synthetic_cells(
    vs: np.ndarray,
    z: np.ndarray,
    r: np.ndarray,
    names: list[str],
    src: list[str],
    *,
    n_cells: int,
    seed: int,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Map the synthetic LOT vectors ``vs`` (n_synthetic, k*d) back to clouds and resample
    each to ``n_cells`` cells (seeded; 0: the k weighted points). Returns the coordinates
    (cells, d) and their obs (``synthetic_sample``, ``source_group``, ``ref_point``,
    ``weight``) indexed ``s0, s1, ...``."""
    import pandas as pd

    rng = np.random.default_rng([seed, 1])
    xs, obs = [], []
    for j, name in enumerate(names):
        pts, mass = to_cloud(vs[j], z, r)
        if n_cells > 0:
            idx = rng.choice(z.shape[0], size=n_cells, replace=True, p=mass / mass.sum())
            cw = np.full(n_cells, 1.0 / n_cells)
        else:
            idx = np.arange(z.shape[0])
            cw = mass
        xs.append(pts[idx])
        obs.append(
            pd.DataFrame(
                {"synthetic_sample": name, "source_group": src[j], "ref_point": idx, "weight": cw}
            )
        )
    coords = np.concatenate(xs)
    obs_df = pd.concat(obs, ignore_index=True)
    obs_df.index = [f"s{i}" for i in range(len(obs_df))]
    return coords, obs_df


def _generate_uns(
    emb: AnnData,
    w: np.ndarray,
    names: list[str],
    src: list[str],
    t: np.ndarray,
    z: np.ndarray,
    r: np.ndarray,
    dims: list[str],
    rep_key: str,
    loadings: np.ndarray | None,
    mode: str,
) -> dict:
    """``uns['lot_generate']`` (without ``params``): the mixing weights and where the
    synthetic samples come from."""
    return {
        "mode": mode,
        "weights": w,
        "samples": [str(i) for i in emb.obs_names],
        "synthetic": names,
        "source_group": src,
        "t": t,
        "reference_id": reference_id(z, r),
        "dims": dims,
        "rep_key": rep_key,
        "reconstructed": bool(loadings is not None),
        "X": (
            "genes RECONSTRUCTED as coords @ PCs.T (centred; not measured expression)"
            if loadings is not None
            else "coordinates in the embedding's representation"
        ),
    }


def _generate_params(p: dict, mode: str, use_rep: str) -> dict:
    """``uns['lot_generate']['params']``: the options ``p`` of the ``mode`` used."""
    groups, between = p["groups"], p["between"]
    return clean_params(
        {
            "groupby": p["groupby"],
            "n_samples": int(p["n_samples"]) if mode == "dirichlet" else None,
            "alpha": float(p["alpha"]) if mode == "dirichlet" else None,
            "groups": [str(g) for g in groups] if groups is not None else None,
            "between": [str(g) for g in between] if between is not None else None,
            "steps": int(p["steps"]) if mode == "between" else None,
            "n_cells": int(p["n_cells"]),
            "to_genes": bool(p["to_genes"]),
            "seed": int(p["seed"]),
            "use_rep": use_rep or None,
        }
    )


def check_synthetic(
    emb: AnnData, synth: AnnData, *, reembed: bool = True, jobs: int = 1
) -> pd.DataFrame:
    """How far each synthetic sample lies from the real ones, in LOT distance.

    For synthetic sample s with weights :math:`\\lambda` its "group" is the real samples
    with :math:`\\lambda_i > 0` (its source group for Dirichlet weights); the table gives
    ``lot_to_nearest`` (and ``nearest_real``), ``lot_to_barycenter`` (to the group's
    uniform LOT mean), ``group_median`` (median distance of the group's real samples to that
    mean) and ``inside`` (``lot_to_barycenter < group_median``). With ``reembed`` the
    synthetic cells are embedded again (exact OT against the reference) and
    ``reembedded_to_barycenter`` / ``reembedded_inside`` / ``reembed_error``
    (:math:`\\|v_{re} - v\\|`) are added.
    """
    import pandas as pd

    v, z, r = embedding_arrays(emb)
    if GEN_KEY not in synth.uns:
        msg = "the synthetic AnnData has no uns['lot_generate']; make it with `otbio generate`"
        raise InputError(msg)
    g = synth.uns[GEN_KEY]
    if str(g["reference_id"]) != reference_id(z, r):
        msg = "the synthetic samples were generated from another embedding's reference"
        raise InputError(msg)
    if [str(s) for s in g["samples"]] != [str(i) for i in emb.obs_names]:
        msg = "the synthetic samples were generated from another embedding (samples differ)"
        raise InputError(msg)
    w = np.asarray(g["weights"], dtype=np.float64)
    vs = w @ v
    names = [str(s) for s in g["synthetic"]]
    ids = np.asarray([str(i) for i in emb.obs_names], dtype=object)
    dm = distance_matrix(np.vstack([vs, v]))[: len(names), len(names) :]
    rows = []
    for j, name in enumerate(names):
        mem = w[j] > 0
        bary = v[mem].mean(0)
        spread = np.linalg.norm(v[mem] - bary, axis=1)
        rows.append(
            {
                "synthetic_sample": name,
                "source_group": str(g["source_group"][j]),
                "nearest_real": ids[dm[j].argmin()],
                "lot_to_nearest": float(dm[j].min()),
                "lot_to_barycenter": float(np.linalg.norm(vs[j] - bary)),
                "group_median": float(np.median(spread)),
                "n_group": int(mem.sum()),
            }
        )
    df = pd.DataFrame(rows)
    df["inside"] = df["lot_to_barycenter"] < df["group_median"]
    if reembed:
        re = reembed_synthetic(synth, z, r, jobs=jobs)
        d_re = []
        for j in range(len(names)):
            mem = w[j] > 0
            d_re.append(float(np.linalg.norm(re[j] - v[mem].mean(0))))
        df["reembedded_to_barycenter"] = d_re
        df["reembedded_inside"] = df["reembedded_to_barycenter"] < df["group_median"]
        df["reembed_error"] = np.linalg.norm(re - vs, axis=1)
    return df


def reembed_synthetic(synth: AnnData, z: np.ndarray, r: np.ndarray, *, jobs: int = 1) -> np.ndarray:
    """LOT vectors (n_synthetic, k*d) of the synthetic cells, embedded again exactly."""
    g = synth.uns[GEN_KEY]
    # rep_key: where generate put the coordinates; earlier files: use_rep, or X_lot_rep
    rep = g.get("rep_key", g.get("use_rep", "")) or ""
    if rep and rep in synth.obsm:
        x = np.asarray(synth.obsm[rep], dtype=np.float64)
    elif "X_lot_rep" in synth.obsm:
        x = np.asarray(synth.obsm["X_lot_rep"], dtype=np.float64)
    else:
        x = np.asarray(synth.X, dtype=np.float64)
    col = synth.obs["synthetic_sample"].astype(str).to_numpy()
    pts, wts = [], []
    for name in g["synthetic"]:
        rows = np.flatnonzero(col == str(name))
        pts.append(np.ascontiguousarray(x[rows]))
        cw = synth.obs["weight"].to_numpy(np.float64)[rows]
        wts.append(cw / cw.sum())
    t, _ = embed_arrays(z, r, pts, wts, solver="exact", jobs=jobs, progress=False)
    return ((t - z) * np.sqrt(r)[None, :, None]).reshape(len(pts), -1)
