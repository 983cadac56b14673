"""The Sinkhorn engine against POT, on awkward inputs (unequal sizes, zero weights)."""

from __future__ import annotations

import numpy as np
import ot
import pytest

import otbio.ot as O
from otbio import InputError


def _pot_potentials(log, a, b, eps):
    with np.errstate(divide="ignore"):
        return eps * (log["log_u"] - np.log(a)), eps * (log["log_v"] - np.log(b))


def _align(f, g, f_ref, g_ref, mask_a):
    """Potentials are defined up to (f + c, g - c): remove the shift on the support."""
    c = np.mean(f_ref[mask_a] - f[mask_a])
    return f + c, g - c


@pytest.fixture
def clouds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 3))
    y = rng.normal(size=(29, 3)) + 0.5
    a = rng.random(17)
    a[3] = 0.0
    a /= a.sum()
    b = rng.random(29)
    b[5] = 0.0
    b /= b.sum()
    return x, y, a, b


@pytest.mark.fast
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("cost,metric", [("sqeuclidean", "sqeuclidean"), ("l1", "cityblock")])
def test_balanced_matches_pot_sinkhorn_log(clouds, uniform, cost, metric):
    x, y, a, b = clouds
    if uniform:
        a = np.full(17, 1 / 17)
        b = np.full(29, 1 / 29)
    eps = 0.1
    m = ot.dist(x, y, metric=metric)
    p_ref, log = ot.sinkhorn(
        a, b, m, eps, method="sinkhorn_log", stopThr=1e-15, numItermax=100000, log=True
    )
    out = O.sinkhorn(
        x,
        y,
        a,
        b,
        cost=cost,
        epsilon=eps,
        tol=1e-13,
        max_iter=100000,
        relative_epsilon=None,
        epsilon_scaling=None,
    )
    assert out.converged
    np.testing.assert_allclose(out.plan(), p_ref, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(out.cost, float((p_ref * m).sum()), rtol=1e-6)
    f_ref, g_ref = _pot_potentials(log, a, b, eps)
    f, g = _align(out.f, out.g, f_ref, g_ref, a > 0)
    np.testing.assert_allclose(f[a > 0], f_ref[a > 0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g[b > 0], g_ref[b > 0], rtol=1e-6, atol=1e-8)
    # marginals hold within the tolerance asked for
    r, c = out.marginals()
    assert np.abs(r - a).sum() < 1e-10
    assert np.abs(c - b).sum() < 1e-10
    if not uniform:  # zero weights carry no mass
        assert r[3] == 0.0 and c[5] == 0.0


@pytest.mark.parametrize("reg_m", [0.3, 5.0])
def test_unbalanced_matches_pot(clouds, reg_m):
    x, y, _, _ = clouds
    rng = np.random.default_rng(1)
    a = rng.random(17)
    a /= a.sum()
    b = rng.random(29)
    b /= 2 * b.sum()  # unequal masses
    eps = 0.1
    m = ot.dist(x, y)
    p_ref = ot.unbalanced.sinkhorn_unbalanced(
        a, b, m, eps, reg_m, method="sinkhorn", stopThr=1e-15, numItermax=200000
    )
    out = O.sinkhorn(
        x,
        y,
        a,
        b,
        epsilon=eps,
        reg_m=reg_m,
        tol=1e-13,
        max_iter=100000,
        relative_epsilon=None,
        epsilon_scaling=None,
    )
    assert out.converged
    np.testing.assert_allclose(out.plan(), p_ref, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(out.cost, float((p_ref * m).sum()), rtol=1e-6)


def test_streamed_reductions_match_dense_plan(clouds):
    x, y, a, b = clouds
    out = O.sinkhorn(
        x,
        y,
        a,
        b,
        epsilon=0.05,
        tol=1e-12,
        max_iter=100000,
        relative_epsilon=None,
        epsilon_scaling=None,
    )
    p = out.plan()
    np.testing.assert_allclose(out.plan_dot(y), p @ y, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out.plan_dot(x, axis=0), p.T @ x, rtol=1e-10, atol=1e-14)
    rows = a > 0
    proj = out.barycentric_projection()
    np.testing.assert_allclose(proj[rows], (p @ y)[rows] / p.sum(1)[rows, None], rtol=1e-10)
    np.testing.assert_array_equal(out.plan_argmax()[rows], p.argmax(1)[rows])
    np.testing.assert_array_equal(out.plan_argmax(axis=0)[b > 0], p.argmax(0)[b > 0])
    idx, val = out.plan_topk(4)
    ref_idx = np.argsort(-p, axis=1)[:, :4]
    np.testing.assert_array_equal(idx[rows], ref_idx[rows])
    np.testing.assert_allclose(val[rows], np.take_along_axis(p, ref_idx, 1)[rows], rtol=1e-10)


def test_entropic_cost_approaches_emd2():
    rng = np.random.default_rng(2)
    x = rng.random((120, 4))
    y = rng.random((90, 4))
    exact = ot.emd2(np.full(120, 1 / 120), np.full(90, 1 / 90), ot.dist(x, y))
    gaps = []
    for eps in [0.1, 0.03, 0.01, 0.003]:
        out = O.sinkhorn(
            x,
            y,
            epsilon=eps,
            relative_epsilon="mean",
            tol=1e-6,
            max_iter=50000,
            epsilon_scaling=0.5,
        )
        gaps.append(out.cost - exact)
    assert all(g > -1e-9 for g in gaps)
    assert all(g2 < g1 for g1, g2 in zip(gaps, gaps[1:]))
    assert gaps[-1] / exact < 0.01


def test_epsilon_scaling_and_warm_start_reach_the_same_solution():
    rng = np.random.default_rng(3)
    x = rng.random((200, 5))
    y = rng.random((150, 5))
    plain = O.sinkhorn(
        x, y, epsilon=0.002, tol=1e-10, max_iter=100000, relative_epsilon=None, epsilon_scaling=None
    )
    scaled = O.sinkhorn(
        x, y, epsilon=0.002, tol=1e-10, max_iter=100000, epsilon_scaling=0.5, relative_epsilon=None
    )
    np.testing.assert_allclose(scaled.plan(), plain.plan(), rtol=1e-6, atol=1e-12)
    warm = O.sinkhorn(
        x,
        y,
        epsilon=0.002,
        tol=1e-10,
        max_iter=100000,
        init=(plain.f, plain.g),
        relative_epsilon=None,
        epsilon_scaling=None,
    )
    assert warm.n_iter <= 10
    assert scaled.n_iter < plain.n_iter


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(4)
    x = rng.random((300, 10))
    y = rng.random((250, 10))
    o64 = O.sinkhorn(x, y, epsilon=0.05, relative_epsilon="mean", tol=1e-6, epsilon_scaling=None)
    o32 = O.sinkhorn(
        x.astype(np.float32),
        y.astype(np.float32),
        epsilon=0.05,
        relative_epsilon="mean",
        tol=1e-5,
        epsilon_scaling=None,
    )
    assert o32.f.shape == (300,)
    np.testing.assert_allclose(o32.cost, o64.cost, rtol=1e-4)
    np.testing.assert_allclose(
        o32.barycentric_projection(), o64.barycentric_projection(), rtol=1e-3, atol=1e-4
    )


def test_relative_epsilon_uses_the_cost_scale():
    rng = np.random.default_rng(5)
    x = rng.random((40, 3))
    y = rng.random((30, 3))
    c = ot.dist(x, y)
    g = O.PointCloud(x, y)
    a = np.full(40, 1 / 40)
    b = np.full(30, 1 / 30)
    assert O.resolve_epsilon(g, a, b, 0.1, "max") == pytest.approx(0.1 * c.max(), rel=1e-12)
    assert O.resolve_epsilon(g, a, b, 0.1, "mean") == pytest.approx(0.1 * c.mean(), rel=1e-12)
    gl = O.PointCloud(x, y, "l1")
    cl = ot.dist(x, y, metric="cityblock")
    assert gl.max_cost() == pytest.approx(cl.max(), rel=1e-12)
    assert O.resolve_epsilon(gl, a, b, 0.1, "mean") == pytest.approx(0.1 * cl.mean(), rel=1e-12)


def test_hinge_cost_both_sides():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 6))
    y = rng.normal(size=(9, 6))
    ref = np.maximum(x[:, None, :] - y[None, :, :], 0).sum(-1)
    g = O.PointCloud(x, y, "hinge")
    np.testing.assert_allclose(g.cost_matrix(), ref)
    np.testing.assert_allclose(g.transpose().cost_matrix(), ref.T)
    out = O.Sinkhorn(
        epsilon=0.5, tol=1e-12, max_iter=10000, relative_epsilon=None, epsilon_scaling=None
    )(g)
    p_ref = ot.sinkhorn(
        np.full(12, 1 / 12), np.full(9, 1 / 9), ref, 0.5, method="sinkhorn_log", stopThr=1e-14
    )
    np.testing.assert_allclose(out.plan(), p_ref, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(out.plan_dot(x, axis=0), p_ref.T @ x, rtol=1e-8)


def test_bad_input_raises_input_error():
    x = np.random.default_rng(0).random((5, 2))
    with pytest.raises(InputError, match="dimension"):
        O.sinkhorn(x, np.ones((4, 3)), relative_epsilon=None, epsilon_scaling=None)
    with pytest.raises(InputError, match="epsilon"):
        O.sinkhorn(x, x, epsilon=-1.0, relative_epsilon=None, epsilon_scaling=None)
    with pytest.raises(InputError, match="sum to zero"):
        O.sinkhorn(x, x, np.zeros(5), relative_epsilon=None, epsilon_scaling=None)
    with pytest.raises(InputError, match="unknown cost"):
        O.PointCloud(x, x, "cosine")


def test_nonconvergence_is_a_warning_not_an_error():
    rng = np.random.default_rng(7)
    x = rng.random((50, 2))
    with pytest.warns(O._sinkhorn.ConvergenceWarning):
        out = O.sinkhorn(
            x, x + 0.1, epsilon=1e-4, max_iter=3, relative_epsilon=None, epsilon_scaling=None
        )
    assert not out.converged and out.n_iter == 3
