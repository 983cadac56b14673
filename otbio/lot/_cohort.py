"""A deterministic cohort of single-cell samples built from scanpy's pbmc68k_reduced."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["pbmc_cohort"]

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
        "n_samples": n_samples,
        "min_cells": min_cells,
        "max_cells": max_cells,
        "shifted_type": shifted_type,
        "shifted_share": shifted_share,
        "seed": seed,
    }
    return out
