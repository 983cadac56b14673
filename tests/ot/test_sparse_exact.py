"""The sparse exact solver (column generation) against POT's dense network simplex."""

from __future__ import annotations

import numpy as np
import ot
import pytest

import otbio.ot as O
from otbio._errors import InputError
from otbio.ot import _sparse_exact

pytestmark = pytest.mark.skipif(
    not _sparse_exact.available(), reason="POT without the sparse network simplex"
)


@pytest.fixture(scope="module")
def cells(test_data):
    """Real PBMCs (50-d PCA) of the bundled cohort: distinct reference cells, many samples."""
    import anndata as ad

    adata = ad.read_h5ad(test_data / "pbmc_cohort.h5ad")
    x = np.asarray(adata.obsm["X_pca"][:, :20], dtype=np.float64)
    donor = adata.obs["donor"].to_numpy()
    cell = adata.obs["cell_index"].to_numpy()
    return x, donor, cell


def _ref(x, donor, cell, name, k):
    idx = np.flatnonzero(donor == name)
    _, first = np.unique(cell[idx], return_index=True)  # distinct cells: a unique optimum
    return x[idx[np.sort(first)[:k]]]


def _pot(z, y, a, b):
    c = ot.dist(z, y)
    p = ot.emd(a, b * a.sum() / b.sum(), c)
    return p, float((p * c).sum())


@pytest.mark.parametrize("k", [120, 280])
def test_sparse_equals_pot_on_real_cells(cells, k):
    """1000 cells of three donors against a reference of another donor's distinct cells
    (m >= 2n: the coarse level runs first), with uneven reference weights."""
    x, donor, cell = cells
    z = _ref(x, donor, cell, "donor04", k)
    y = x[np.isin(donor, ["donor01", "donor02", "donor03"])]
    rng = np.random.default_rng(0)
    a = rng.random(len(z)) + 0.5
    a /= a.sum()
    b = np.full(len(y), 1 / len(y))
    out = O.emd(z, y, a, b, method="sparse")
    assert out.method == "sparse" and out.converged and out.rounds >= 1
    p, cost = _pot(z, y, a, b)
    assert out.cost == pytest.approx(cost, rel=1e-10)
    # the barycentric projection (what LOT keeps) is exact; duplicated cells may split
    # their mass differently, which does not change it
    np.testing.assert_allclose(out.barycentric_projection(), (p @ y) / a[:, None], atol=1e-8)
    np.testing.assert_allclose(out.marginals()[0], a, atol=1e-12)
    np.testing.assert_allclose(out.marginals()[1], b, atol=1e-12)
    # the certificate: feasible duals with the same value (strong duality)
    c = ot.dist(z, y)
    assert (c - out.f[:, None] - out.g[None, :]).min() > -1e-8 * c.max()
    assert float(a @ out.f + b @ out.g) == pytest.approx(cost, rel=1e-9)
    # a basic solution: at most n + m - 1 nonzeros
    assert out.values.size <= len(z) + len(y) - 1


def test_sparse_zero_weights_more_rows_than_columns(cells):
    x, donor, cell = cells
    z = _ref(x, donor, cell, "donor05", 300)
    y = _ref(x, donor, cell, "donor06", 200)
    a = np.full(len(z), 1.0)
    a[::7] = 0.0
    b = np.linspace(1, 2, len(y))
    b[:5] = 0.0
    a /= a.sum()
    out = O.emd(z, y, a, b, method="sparse")
    p, cost = _pot(z, y, a, b / b.sum())
    assert out.method == "sparse"
    assert out.cost == pytest.approx(cost, rel=1e-10)
    np.testing.assert_allclose(out.matrix, p, atol=1e-12)
    np.testing.assert_array_equal(out.plan_argmax(), p.argmax(1))
    np.testing.assert_allclose(out.plan_dot(z, axis=0), p.T @ z, atol=1e-12)


def test_auto_switches_and_dense_fallback(cells, monkeypatch):
    x, donor, cell = cells
    z = _ref(x, donor, cell, "donor07", 100)
    small = x[donor == "donor08"][:300]
    assert O.emd(z, small).method == "dense"  # 30,000 entries: dense is cheap
    big = x[np.isin(donor, ["donor08", "donor09", "donor10"])]
    y = np.vstack([big, big[:1500] + 0.01])
    z2 = _ref(x, donor, cell, "donor11", 200)
    assert O.emd(z2, y).method == "sparse"  # >= 250,000 entries
    monkeypatch.setattr(_sparse_exact, "available", lambda: False)
    out = O.emd(z2, y, method="sparse")
    assert out.method == "dense"
    with pytest.raises(InputError, match="unknown exact method"):
        O.emd(z2, y, method="simplex")


def test_threads_agree_with_serial(cells):
    x, donor, cell = cells
    z = _ref(x, donor, cell, "donor12", 150)
    names = ["donor13", "donor14", "donor15", "donor16"]
    probs = [x[donor == n] for n in names]
    serial = [O.emd(z, y, method="sparse").cost for y in probs]
    threaded = O.map_batch(lambda y: O.emd(z, y, method="sparse").cost, probs, jobs=2)
    assert threaded == serial


def test_warm_start_from_another_sample_gives_the_same_optimum(cells):
    """``f0`` = the reference potential of another donor (what ``embed`` passes after its
    first batch): same cost and projection as POT, in no more rounds than a cold start."""
    x, donor, cell = cells
    z = _ref(x, donor, cell, "donor04", 150)
    a = np.full(len(z), 1 / len(z))
    prev = x[np.isin(donor, ["donor05", "donor06"])]
    y = x[np.isin(donor, ["donor01", "donor02"])]
    b = np.full(len(y), 1 / len(y))
    f0 = O.emd(z, prev, a, method="sparse").f
    cold = O.emd(z, y, a, b, method="sparse")
    warm = O.emd(z, y, a, b, method="sparse", f0=f0)
    assert warm.method == "sparse" and warm.converged
    p, cost = _pot(z, y, a, b)
    assert warm.cost == pytest.approx(cost, rel=1e-10)
    np.testing.assert_allclose(warm.barycentric_projection(), (p @ y) / a[:, None], atol=1e-8)
    assert warm.rounds <= cold.rounds + 1
