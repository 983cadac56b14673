"""Fixtures for the registration tests: real slices and known warps of them."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from otbio.register import known_warp

DATA = Path(__file__).resolve().parents[2] / "test_data" / "spatial"


@pytest.fixture(scope="session")
def slice1():
    return ad.read_h5ad(DATA / "breast_st_slice1.h5ad")


@pytest.fixture(scope="session")
def slice2():
    return ad.read_h5ad(DATA / "breast_st_slice2.h5ad")


@pytest.fixture(scope="session")
def gpsa():
    a = ad.read_h5ad(DATA / "gpsa_synthetic.h5ad")
    b = a.obs["batch"].astype(str).to_numpy()
    return a[b == "0"].copy(), a[b == "1"].copy()


@pytest.fixture(scope="session")
def warped():
    """The function :func:`make_warped`."""
    return make_warped


def make_warped(src, seed, *, amp=0.05, length=1.0, drop=0.1, thin=0.5):
    """Target slice: smooth GP warp + rotation + translation of ``src``, counts thinned
    binomially, ``drop`` of the spots removed. Returns (target, true positions of src)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(src.obsm["spatial"], dtype=float)
    truth = known_warp(y, seed=seed, amp=amp, length=length)
    keep = np.sort(rng.choice(src.n_obs, int(round((1 - drop) * src.n_obs)), replace=False))
    counts = sp.csr_matrix(src.X).astype(np.int64)
    counts.data = rng.binomial(counts.data, thin)
    tgt = ad.AnnData(X=sp.csr_matrix(counts[keep], dtype=np.float32), var=src.var.copy())
    tgt.obs_names = [f"w{i}" for i in keep]
    tgt.obsm["spatial"] = truth[keep]
    return tgt, truth


@pytest.fixture(scope="session")
def slice3():
    return ad.read_h5ad(DATA / "breast_st_slice3.h5ad")


@pytest.fixture(scope="session")
def slice4():
    return ad.read_h5ad(DATA / "breast_st_slice4.h5ad")
