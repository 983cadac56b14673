"""The dense Sinkhorn route (small problems, one Numba call) agrees with the online route."""

from __future__ import annotations

import numpy as np
import pytest

import otbio.ot as O
from otbio import InputError
from otbio.ot import _kernels as K
from otbio.ot import _sinkhorn as S


def _problem(seed=0, n=23, m=31, d=4, zeros=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) + 0.3
    a = rng.random(n)
    b = rng.random(m)
    if zeros:
        a[3] = 0.0
        b[5] = 0.0
    return x, y, a / a.sum(), b / b.sum()


def _both(geom, a, b, init=None, **kw):
    kw = dict(dict(tol=1e-12, max_iter=20000), **kw)
    on = O.Sinkhorn(dense=False, **kw)(geom, a, b, init=init)
    de = O.Sinkhorn(dense=True, **kw)(geom, a, b, init=init)
    assert on._dense is None and de._dense is not None
    return on, de


def _agree(on, de, rtol=1e-9, atol=1e-12):
    assert de.n_iter == on.n_iter and de.converged == on.converged
    assert de.epsilon == pytest.approx(on.epsilon, rel=1e-12)
    np.testing.assert_allclose(de.f, on.f, rtol=rtol, atol=atol)
    np.testing.assert_allclose(de.g, on.g, rtol=rtol, atol=atol)
    np.testing.assert_allclose(de.plan(), on.plan(), rtol=rtol, atol=atol)
    assert de.cost == pytest.approx(on.cost, rel=rtol)
    np.testing.assert_allclose(de.trace, on.trace, rtol=1e-6, atol=1e-11)


@pytest.mark.fast
@pytest.mark.parametrize("cost", ["sqeuclidean", "l1", "hinge", "reversed-hinge"])
def test_dense_matches_online_for_every_cost(cost):
    """Codes 0-3: squared Euclidean, L1, hinge and the hinge seen from the other side."""
    x, y, a, b = _problem()
    if cost == "reversed-hinge":
        geom = O.PointCloud(y, x, "hinge").transpose()
        assert geom.kernel_code == 3
    else:
        geom = O.PointCloud(x, y, cost)
    on, de = _both(geom, a, b, epsilon=0.2, relative_epsilon="mean", epsilon_scaling=None)
    assert on.converged
    _agree(on, de)
    c = geom.cost_matrix()
    assert de.cost == pytest.approx(float((de.plan() * c).sum()), rel=1e-10)


@pytest.mark.parametrize("cost", ["sqeuclidean", "l1", "hinge"])
def test_dense_warm_start_and_fixed_budget(cost):
    """A warm start from other potentials, and a run cut at max_iter (checks at max_iter)."""
    x, y, a, b = _problem(1)
    geom = O.PointCloud(x, y, cost)
    rng = np.random.default_rng(2)
    first = O.sinkhorn(
        x, y, a, b, cost=cost, epsilon=0.3, relative_epsilon="mean", tol=1e-4, epsilon_scaling=None
    )
    init = (first.f + rng.normal(0, 0.05, first.f.shape), first.g)
    on, de = _both(
        geom, a, b, init=init, epsilon=0.1, relative_epsilon="mean", epsilon_scaling=None
    )
    _agree(on, de)
    on, de = _both(geom, a, b, init=init, epsilon=0.1, relative_epsilon="mean", max_iter=13,
                   check_every=5, warn=False, epsilon_scaling=None)  # fmt: skip
    assert not de.converged and de.n_iter == 13
    _agree(on, de)
    # the warm start is copied, not updated in place
    assert np.array_equal(init[1], first.g)


@pytest.mark.parametrize("reg_m", [0.3, 5.0])
def test_dense_unbalanced_matches_online(reg_m):
    x, y, a, b = _problem(3)
    b = b / 2
    on, de = _both(
        O.PointCloud(x, y),
        a,
        b,
        epsilon=0.1,
        reg_m=reg_m,
        relative_epsilon=None,
        epsilon_scaling=None,
    )
    assert on.converged
    _agree(on, de)


def test_dense_epsilon_scaling_matches_online():
    rng = np.random.default_rng(4)
    x = rng.random((60, 3))
    y = rng.random((45, 3))
    on, de = _both(O.PointCloud(x, y), None, None, epsilon=0.005, epsilon_scaling=0.5,
                   tol=1e-9, relative_epsilon=None)  # fmt: skip
    assert on.converged
    _agree(on, de, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("eps", [0.05, 0.002])
@pytest.mark.parametrize("warm", [False, True])
def test_dense_survives_underflow_of_the_kernel(eps, warm):
    """Costs thousands of epsilons apart (and a warm start far off): kernel sums under- or
    overflow, so half-updates fall back to exact log-sum-exp and the kernel is rebased; the
    result still matches the online route."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 2))
    y = np.vstack([rng.normal(size=(20, 2)), rng.normal(size=(5, 2)) + 40.0])
    init = (np.full(30, 50.0), np.full(25, -80.0)) if warm else None
    on, de = _both(O.PointCloud(x, y), None, None, init=init, epsilon=eps, max_iter=2000,
                   warn=False, relative_epsilon=None, epsilon_scaling=None)  # fmt: skip
    _agree(on, de, rtol=1e-8, atol=1e-8)
    assert np.isfinite(de.f).all() and np.isfinite(de.plan()).all()
    assert de._dense["rebasings"] > 0 and de._dense["exact_half_updates"] > 0


def test_dense_reductions_match_online():
    x, y, a, b = _problem(6)
    geom = O.PointCloud(x, y, "l1")
    on, de = _both(geom, a, b, epsilon=0.05, relative_epsilon=None, epsilon_scaling=None)
    rows, cols = a > 0, b > 0
    for axis, v in ((1, y), (0, x)):
        np.testing.assert_allclose(de.plan_dot(v, axis), on.plan_dot(v, axis), rtol=1e-9,
                                   atol=1e-14)  # fmt: skip
    np.testing.assert_array_equal(de.plan_argmax(), on.plan_argmax())
    np.testing.assert_array_equal(de.plan_argmax(axis=0), on.plan_argmax(axis=0))
    for u, w in zip(de.marginals(), on.marginals(), strict=True):
        np.testing.assert_allclose(u, w, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(de.barycentric_projection()[rows],
                               on.barycentric_projection()[rows], rtol=1e-9)  # fmt: skip
    for axis, mask in ((1, rows), (0, cols)):
        i1, v1 = de.plan_topk(3, axis)
        i2, v2 = on.plan_topk(3, axis)
        np.testing.assert_array_equal(i1[mask], i2[mask])
        np.testing.assert_allclose(v1, v2, rtol=1e-9, atol=1e-15)
    assert de.marginals()[0][3] == 0.0 and de.marginals()[1][5] == 0.0
    stored = de.plan(copy=False)  # the dense route's own plan, read-only
    assert not stored.flags.writeable and np.array_equal(stored, de.plan())
    assert de.plan().flags.writeable


def test_dense_float32_points():
    """float32 points: the dense route works in float64, the online one in float32."""
    x, y, a, b = _problem(7, d=6)
    geom = O.PointCloud(x.astype(np.float32), y.astype(np.float32), "hinge")
    on, de = _both(geom, a, b, epsilon=0.5, tol=1e-5, relative_epsilon=None, epsilon_scaling=None)
    np.testing.assert_allclose(de.plan(), on.plan(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(de.f, on.f, rtol=1e-4, atol=1e-5)
    assert de.plan_dot(y).dtype == np.float32  # reductions keep the points' dtype


def test_route_selection_and_progress(monkeypatch, capsys):
    x, y, a, b = _problem(8)
    assert (
        O.sinkhorn(x, y, a, b, epsilon=0.1, relative_epsilon=None, epsilon_scaling=None)._dense
        is not None
    )  # auto: small is dense
    monkeypatch.setattr(S, "DENSE_MAX_ENTRIES", 100)
    assert (
        O.sinkhorn(x, y, a, b, epsilon=0.1, relative_epsilon=None, epsilon_scaling=None)._dense
        is None
    )
    with pytest.raises(InputError, match="CPU"):
        O.sinkhorn(
            x,
            y,
            a,
            b,
            epsilon=0.1,
            dense=True,
            device="numpy",
            relative_epsilon=None,
            epsilon_scaling=None,
        )
    # progress: the loop runs in chunks of iterations, with the same result
    one = O.sinkhorn(
        x,
        y,
        a,
        b,
        epsilon=0.02,
        tol=1e-12,
        max_iter=5000,
        dense=True,
        relative_epsilon=None,
        epsilon_scaling=None,
    )
    monkeypatch.setattr(S, "DENSE_PROGRESS_ENTRIES", 7 * x.shape[0] * y.shape[0])
    chunked = O.sinkhorn(x, y, a, b, epsilon=0.02, tol=1e-12, max_iter=5000, dense=True,
                         progress=True, relative_epsilon=None, epsilon_scaling=None)  # fmt: skip
    assert chunked.n_iter == one.n_iter
    np.testing.assert_array_equal(chunked.f, one.f)
    np.testing.assert_array_equal(chunked.trace, one.trace)


def test_nonconvergence_warns_on_the_dense_route():
    x = np.random.default_rng(9).random((50, 2))
    with pytest.warns(O._sinkhorn.ConvergenceWarning):
        out = O.sinkhorn(
            x,
            x + 0.1,
            epsilon=1e-4,
            max_iter=3,
            dense=True,
            relative_epsilon=None,
            epsilon_scaling=None,
        )
    assert not out.converged and out.n_iter == 3


@pytest.mark.parametrize("code", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cost_kernel(code, dtype):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(9, 5)).astype(dtype)
    y = rng.normal(size=(7, 5)).astype(dtype)
    diff = x[:, None, :].astype(np.float64) - y[None, :, :]
    want = [(diff**2).sum(-1), np.abs(diff).sum(-1), np.maximum(diff, 0).sum(-1),
            np.maximum(-diff, 0).sum(-1)][code]  # fmt: skip
    out = np.empty((9, 7), dtype=dtype)
    K.cost_dense(x, y, code, out)
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("cost", ["sqeuclidean", "l1", "hinge"])
def test_hstack_reuses_the_dense_cost(cost):
    rng = np.random.default_rng(11)
    x1, y1 = rng.normal(size=(12, 4)), rng.normal(size=(9, 4))
    x2, y2 = rng.normal(size=(12, 2)), rng.normal(size=(9, 2))
    g1 = O.PointCloud(x1, y1, cost)
    c1 = g1.dense_cost()
    with pytest.raises(ValueError):
        c1[0, 0] = 1.0  # kept with the geometry: read-only
    g = g1.hstack(O.PointCloud(x2, y2, cost))
    assert "dense_cost" in g._cache  # the sum, not recomputed
    fresh = O.PointCloud(np.hstack([x1, x2]), np.hstack([y1, y2]), cost)
    np.testing.assert_allclose(g.dense_cost(), fresh.cost_matrix(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(g.x, fresh.x)
    a = O.Sinkhorn(epsilon=0.5, tol=1e-12, relative_epsilon=None, epsilon_scaling=None)(g)
    b = O.Sinkhorn(epsilon=0.5, tol=1e-12, relative_epsilon=None, epsilon_scaling=None)(fresh)
    np.testing.assert_allclose(a.f, b.f, rtol=1e-10, atol=1e-12)
    with pytest.raises(InputError, match="same cost"):
        g1.hstack(O.PointCloud(x2, y2, "hinge" if cost != "hinge" else "l1"))
    with pytest.raises(InputError, match="numbers of points"):
        g1.hstack(O.PointCloud(x2[:5], y2, cost))
