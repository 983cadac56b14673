"""Deterministic cohorts of single-cell samples built from scanpy's pbmc68k_reduced."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from otbio._contract import clean_params

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["pbmc_cohort", "state_shift_cohort"]

SHIFTED_TYPE = "CD14+ Monocyte"


def pbmc_cohort(
    *,
    n_samples: int = 24,
    min_cells: int = 250,
    max_cells: int = 350,
    shifted_type: str = SHIFTED_TYPE,
    shifted_share: float = 0.4,
    seed: int = 0,
) -> AnnData:
    """Build the LOT test cohort from the 700 real PBMCs of ``scanpy.datasets.pbmc68k_reduced``.

    Sample ``donor01 .. donorNN`` draws between ``min_cells`` and ``max_cells`` cells with
    replacement. Odd-numbered donors are ``condition='control'`` and draw cells uniformly
    (the natural cell-type mix, about 18% CD14+ monocytes); even-numbered donors are
    ``condition='shifted'``: a share ``shifted_share`` of their cells is drawn from
    ``shifted_type`` and the rest from the other cells.

    Returns
    -------
    AnnData with one row per drawn cell, no ``X`` (the genes are in ``var``; expression is
    recovered as ``obsm['X_pca'] @ varm['PCs'].T`` or through ``obs['cell_index']``, the row
    in pbmc68k_reduced), ``obsm['X_pca']`` (50-d, float32), ``obsm['X_umap']``,
    ``varm['PCs']``, and ``obs``: ``donor``, ``condition``, ``bulk_labels``,
    ``cell_index``. Same arguments, same object (the file
    ``test_data/pbmc_cohort.h5ad`` is ``pbmc_cohort()``).
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    labels = src.obs["bulk_labels"].astype(str).to_numpy()
    is_shift = labels == shifted_type
    pool_shift = np.flatnonzero(is_shift)
    pool_other = np.flatnonzero(~is_shift)
    rng = np.random.default_rng(seed)
    rows, donors, conds = [], [], []
    for i in range(n_samples):
        n = int(rng.integers(min_cells, max_cells + 1))
        donor = f"donor{i + 1:02d}"
        if i % 2 == 0:
            cond = "control"
            idx = rng.integers(0, src.n_obs, size=n)
        else:
            cond = "shifted"
            n_s = int(round(shifted_share * n))
            idx = np.concatenate(
                [
                    pool_shift[rng.integers(0, pool_shift.size, size=n_s)],
                    pool_other[rng.integers(0, pool_other.size, size=n - n_s)],
                ]
            )
            idx = idx[rng.permutation(n)]
        rows.append(idx)
        donors += [donor] * n
        conds += [cond] * n
    idx = np.concatenate(rows)
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical(donors),
            "condition": pd.Categorical(conds, categories=["control", "shifted"]),
            "bulk_labels": pd.Categorical(labels[idx]),
            "cell_index": idx.astype(np.int64),
        },
        index=[f"c{j}" for j in range(idx.size)],
    )
    var = pd.DataFrame(index=src.var_names.astype(str).copy())
    out = ad.AnnData(obs=obs, var=var)
    out.obsm["X_pca"] = np.ascontiguousarray(src.obsm["X_pca"][idx], dtype=np.float32)
    out.obsm["X_umap"] = np.ascontiguousarray(src.obsm["X_umap"][idx], dtype=np.float32)
    out.varm["PCs"] = np.ascontiguousarray(src.varm["PCs"], dtype=np.float32)
    out.uns["cohort"] = {
        "source": "scanpy.datasets.pbmc68k_reduced",
        "builder": "otbio.lot.pbmc_cohort",
        "params": clean_params(
            {
                "n_samples": n_samples,
                "min_cells": min_cells,
                "max_cells": max_cells,
                "shifted_type": shifted_type,
                "shifted_share": shifted_share,
                "seed": seed,
            }
        ),
    }
    return out


def state_shift_cohort(
    *,
    n_samples: int = 24,
    n_cells: int | tuple[int, int] = 120,
    shifted_type: str = SHIFTED_TYPE,
    shift: float = 1.0,
    direction: int = 0,
    concentration: float = 50.0,
    seed: int = 0,
    source: AnnData | None = None,
) -> AnnData:
    """A cohort whose conditions differ in the state of one cell type, not in composition.

    Built from the 700 real PBMCs of ``scanpy.datasets.pbmc68k_reduced`` (as
    :func:`pbmc_cohort`). Every donor draws a cell-type composition from one Dirichlet law
    (mean: the natural mix of the 700 cells, ``concentration``: how little donors vary;
    the same law for both conditions), then ``n_cells`` cells (an int, or a ``(low, high)``
    range drawn per donor) with replacement within each type. Odd-numbered donors are
    ``condition='control'``; in even-numbered donors (``'shifted'``) every cell of
    ``shifted_type`` is translated in PCA space by ``shift`` standard deviations along
    principal axis ``direction`` of that type's own cells (a change of state inside the
    type, e.g. activation; ``shift=0`` gives a null cohort whose conditions differ only by
    chance).

    Returns
    -------
    AnnData like :func:`pbmc_cohort` (``obsm['X_pca']`` float32, ``obsm['X_umap']``,
    ``varm['PCs']``; ``obs``: ``donor``, ``condition``, ``bulk_labels``, ``cell_index``,
    ``shifted`` (bool, the cell was moved)) with ``uns['cohort']`` holding the arguments
    (under ``params``) and
    ``direction_vector`` (unit, 50-d) and ``shift_pca`` (the translation, PCA units).
    ``source``: another AnnData with ``obs['bulk_labels']`` and ``obsm['X_pca']`` to draw
    from instead of pbmc68k_reduced (the default loads it once per call).
    """
    import anndata as ad
    import pandas as pd

    if source is None:
        import scanpy as sc

        source = sc.datasets.pbmc68k_reduced()
    src = source
    labels = src.obs["bulk_labels"].astype(str).to_numpy()
    if shifted_type not in set(labels):
        msg = f"shifted_type '{shifted_type}' is not a bulk_labels cell type"
        raise ValueError(msg)
    if n_samples < 2:
        msg = f"n_samples must be >= 2, got {n_samples}"
        raise ValueError(msg)
    lo, hi = (n_cells, n_cells) if isinstance(n_cells, int) else (int(n_cells[0]), int(n_cells[1]))
    if lo < 1 or hi < lo:
        msg = f"n_cells must be >= 1 (or a range low <= high), got {n_cells}"
        raise ValueError(msg)
    x = np.asarray(src.obsm["X_pca"], dtype=np.float64)
    types, inv = np.unique(labels, return_inverse=True)
    pools = [np.flatnonzero(inv == t) for t in range(types.size)]
    mix = np.array([p.size for p in pools], dtype=np.float64) / labels.size
    # the within-type direction: principal axis `direction` of the shifted type's cells
    t_idx = int(np.flatnonzero(types == shifted_type)[0])
    xt = x[pools[t_idx]] - x[pools[t_idx]].mean(0)
    _, sv, vt = np.linalg.svd(xt, full_matrices=False)
    u = vt[direction]
    sd = sv[direction] / np.sqrt(max(xt.shape[0] - 1, 1))
    delta = float(shift) * sd * u
    rng = np.random.default_rng(seed)
    rows, donors, conds, moved = [], [], [], []
    for i in range(n_samples):
        n = int(rng.integers(lo, hi + 1))
        share = rng.dirichlet(concentration * mix)
        counts = rng.multinomial(n, share)
        idx = np.concatenate([p[rng.integers(0, p.size, size=c)] for p, c in zip(pools, counts)])
        idx = idx[rng.permutation(idx.size)]
        cond = "control" if i % 2 == 0 else "shifted"
        rows.append(idx)
        donors += [f"donor{i + 1:02d}"] * n
        conds += [cond] * n
        moved.append((inv[idx] == t_idx) & (cond == "shifted"))
    idx = np.concatenate(rows)
    moved_all = np.concatenate(moved)
    xp = x[idx] + moved_all[:, None] * delta[None, :]
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical(donors),
            "condition": pd.Categorical(conds, categories=["control", "shifted"]),
            "bulk_labels": pd.Categorical(labels[idx]),
            "cell_index": idx.astype(np.int64),
            "shifted": moved_all,
        },
        index=[f"c{j}" for j in range(idx.size)],
    )
    out = ad.AnnData(obs=obs, var=pd.DataFrame(index=src.var_names.astype(str).copy()))
    out.obsm["X_pca"] = np.ascontiguousarray(xp, dtype=np.float32)
    if "X_umap" in src.obsm:
        out.obsm["X_umap"] = np.ascontiguousarray(src.obsm["X_umap"][idx], dtype=np.float32)
    if "PCs" in src.varm:
        out.varm["PCs"] = np.ascontiguousarray(src.varm["PCs"], dtype=np.float32)
    out.uns["cohort"] = {
        "source": "scanpy.datasets.pbmc68k_reduced",
        "builder": "otbio.lot.state_shift_cohort",
        "direction_vector": u,
        "shift_pca": delta,
        "params": clean_params(
            {
                "n_samples": n_samples,
                "n_cells": [lo, hi],
                "shifted_type": shifted_type,
                "shift": float(shift),
                "direction": int(direction),
                "concentration": float(concentration),
                "seed": seed,
            }
        ),
    }
    return out
