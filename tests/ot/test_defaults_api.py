"""One set of Sinkhorn defaults for every entry point; the public reductions of the engine."""

from __future__ import annotations

import inspect
import warnings

import anndata as ad
import numpy as np
import pytest
from scipy.special import logsumexp as sp_lse

import otbio.ot as O
from otbio.cli import cli

SD = O.SINKHORN_DEFAULTS


@pytest.fixture(scope="module")
def cohort(test_data):
    return ad.read_h5ad(test_data / "pbmc_cohort.h5ad")


def _donors(cohort, k):
    d = cohort.obs["donor"].astype(str).to_numpy()
    ids = list(dict.fromkeys(d))
    x = np.asarray(cohort.obsm["X_pca"], dtype=np.float64)
    return [x[d == i] for i in ids[:k]]


def test_defaults_are_the_same_everywhere():
    s = O.Sinkhorn()
    for name in ("epsilon", "relative_epsilon", "epsilon_scaling", "tol", "max_iter"):
        assert getattr(s, name) == getattr(SD, name), name
    import otbio.lot as L

    for fn in (L.embed, L.embed_arrays):
        sig = inspect.signature(fn).parameters
        for name in ("epsilon", "relative_epsilon", "epsilon_scaling", "tol", "max_iter"):
            assert sig[name].default == getattr(SD, name), (fn.__name__, name)
    for cmd in ("transport", "embed"):
        opts = {p.name: p.default for p in cli.commands[cmd].params}
        assert opts["epsilon"] == SD.epsilon and opts["tol"] == SD.tol
        assert opts["max_iter"] == SD.max_iter and opts["relative_epsilon"] == "mean"
        assert opts["epsilon_scaling"] == SD.epsilon_scaling


def test_readme_engine_example_converges_with_defaults(cohort):
    """README: ``ot_.sinkhorn(x, y, a, b)`` on two bundled donors, every parameter default."""
    x, y = _donors(cohort, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning fails the test
        out = O.sinkhorn(x, y)
    assert out.converged and out.marginal_error < SD.tol
    assert out.n_iter <= SD.max_iter
    # the same problem at the same epsilon without scaling needs far more iterations
    cold = O.sinkhorn(x, y, epsilon_scaling=None, warn=False)
    assert cold.n_iter > 2 * out.n_iter
    np.testing.assert_allclose(cold.cost, out.cost, rtol=1e-4)


@pytest.mark.parametrize("dense", [True, False])
def test_n_iter_never_passes_max_iter(cohort, dense):
    x, y = _donors(cohort, 2)
    for max_iter in (40, 100):
        out = O.sinkhorn(x, y, max_iter=max_iter, dense=dense, warn=False)
        assert not out.converged and out.n_iter == max_iter


def test_public_reductions_match_dense_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    geom = O.PointCloud(x, y)
    c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    eps = 0.3
    lw = np.log(rng.dirichlet(np.ones(30)))
    np.testing.assert_allclose(O.logsumexp(geom, lw, eps), sp_lse(lw[None] - c / eps, axis=1))
    alpha, beta = rng.normal(size=40), rng.normal(size=30)
    kmat = np.exp(alpha[:, None] + beta[None] - c / eps)
    v = rng.normal(size=(30, 2))
    out = O.kernel_apply(geom, alpha, beta, eps, v)
    np.testing.assert_allclose(out["sum"], kmat.sum(1), rtol=1e-10)
    np.testing.assert_allclose(out["dot"], kmat @ v, rtol=1e-9, atol=1e-12)
    idx, val = O.kernel_topk(geom, alpha, beta, eps, 3)
    ref = np.argsort(-kmat, axis=1)[:, :3]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(val, np.log(np.take_along_axis(kmat, ref, 1)), rtol=1e-10)
    # a warm start from the converged f gives back the converged g (balanced fixed point)
    a = np.full(40, 1 / 40)
    res = O.sinkhorn(x, y, a, epsilon=eps, relative_epsilon=None, tol=1e-12, max_iter=20000)
    f, g = O.warm_start(geom, res.f, a, eps)
    np.testing.assert_allclose(g, res.g, atol=1e-9)
    again = O.Sinkhorn(epsilon=eps, relative_epsilon=None, tol=1e-10)(geom, a, None, init=(f, g))
    assert again.converged and again.n_iter <= 10


def test_embed_sinkhorn_converges_on_the_cohort_with_defaults(cohort):
    import otbio.lot as L

    ref = L.reference(cohort, sample_key="donor", use_rep="X_pca", size=128, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = L.embed(cohort, ref, sample_key="donor", solver="sinkhorn", progress=False, jobs=2)
    assert emb.obs["lot_converged"].all(), emb.obs["lot_n_iter"].to_numpy()
    assert (emb.obs["lot_n_iter"] <= SD.max_iter).all()


def test_adaptive_scaling_never_costs_more_than_it_saves_on_a_donor_pair(cohort):
    """The default schedule against scaling off and the fixed schedule (10 per level), on a
    real donor pair: within 10% of the better of the two, same cost."""
    x, y = _donors(cohort, 2)
    default = O.sinkhorn(x, y)
    off = O.sinkhorn(x, y, epsilon_scaling=None, warn=False)
    fixed = O.sinkhorn(x, y, scaling_iter=10, warn=False)
    assert default.converged and off.converged and fixed.converged
    assert default.n_iter <= 1.1 * min(off.n_iter, fixed.n_iter), (
        default.n_iter,
        off.n_iter,
        fixed.n_iter,
    )
    np.testing.assert_allclose(default.cost, fixed.cost, rtol=1e-4)


def test_adaptive_scaling_converges_at_a_small_epsilon(cohort):
    """0.002 x the mean cost: no convergence in 10,000 iterations without scaling; the
    default converges, to the cost of the fixed schedule."""
    x, y = _donors(cohort, 2)
    default = O.sinkhorn(x, y, epsilon=0.002)
    fixed = O.sinkhorn(x, y, epsilon=0.002, scaling_iter=10, warn=False)
    assert default.converged and default.marginal_error < SD.tol
    assert default.n_iter < fixed.n_iter
    np.testing.assert_allclose(default.cost, fixed.cost, rtol=1e-4)
    off = O.sinkhorn(x, y, epsilon=0.002, epsilon_scaling=None, max_iter=default.n_iter, warn=False)
    assert not off.converged


@pytest.mark.parametrize("dense", [True, False])
def test_adaptive_scaling_skips_scaling_when_the_target_is_easy(dense):
    """A moderate epsilon converges fast without scaling: the default runs exactly the
    unscaled iterations (no level is paid for)."""
    rng = np.random.default_rng(7)
    x, y = rng.random((300, 10)), rng.random((250, 10))
    default = O.sinkhorn(x, y, epsilon=0.05, dense=dense)
    off = O.sinkhorn(x, y, epsilon=0.05, epsilon_scaling=None, dense=dense)
    fixed = O.sinkhorn(x, y, epsilon=0.05, scaling_iter=10, dense=dense)
    assert default.converged and default.n_iter == off.n_iter < fixed.n_iter
    np.testing.assert_allclose(default.f, off.f)
