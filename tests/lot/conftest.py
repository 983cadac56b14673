"""Fixtures of the LOT tests: the real pbmc cohort, one reference and one exact embedding."""

from __future__ import annotations

import anndata as ad
import pytest

import otbio.lot as L


@pytest.fixture(scope="session")
def cohort_path(test_data):
    return test_data / "pbmc_cohort.h5ad"


@pytest.fixture(scope="session")
def cohort(cohort_path):
    return ad.read_h5ad(cohort_path)


@pytest.fixture(scope="session")
def ref(cohort):
    return L.reference(cohort, sample_key="donor", use_rep="X_pca", size=128, seed=0)


@pytest.fixture(scope="session")
def emb(cohort, ref):
    return L.embed(cohort, ref, sample_key="donor", jobs=2, progress=False)
