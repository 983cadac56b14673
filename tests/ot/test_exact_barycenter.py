"""Exact OT through POT and the free-support barycenter."""

from __future__ import annotations

import numpy as np
import ot
import pytest

import otbio.ot as O
from otbio._errors import InputError


def test_emd_matches_pot_and_projection():
    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    y = rng.random((60, 3))
    b = rng.random(60)
    out = O.emd(x, y, None, b)
    bn = b / b.sum()
    ref = ot.emd(np.full(40, 1 / 40), bn, ot.dist(x, y))
    np.testing.assert_allclose(out.matrix, ref, atol=1e-15)
    assert out.cost == pytest.approx(float((ref * ot.dist(x, y)).sum()), rel=1e-12)
    np.testing.assert_allclose(out.barycentric_projection(), (ref @ y) * 40, rtol=1e-12)


def test_map_batch_threads_keep_order_and_match_serial():
    rng = np.random.default_rng(1)
    probs = [(rng.random((30, 2)), rng.random((25, 2))) for _ in range(6)]
    serial = [O.emd(x, y).cost for x, y in probs]
    threaded = O.map_batch(lambda p: O.emd(*p).cost, probs, jobs=2)
    assert threaded == serial
    with pytest.raises(InputError, match="jobs must be >= 1"):
        O.map_batch(lambda p: p, probs, jobs=0)


def test_barycenter_of_translated_copies_is_the_translated_cloud():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(50, 2))
    shifts = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 4.0], [2.0, -2.0]])
    measures = [(base + s, None) for s in shifts]
    # start from a scrambled, perturbed copy so that the iteration has work to do
    init = base[rng.permutation(50)] + rng.normal(scale=0.3, size=(50, 2))
    out = O.barycenter(measures, init=init, solver="exact", max_iter=50)
    assert out.converged
    expected = base + shifts.mean(0)
    # same support up to order: match points by exact OT between the two
    m = ot.emd(np.full(50, 0.02), np.full(50, 0.02), ot.dist(out.x, expected))
    assert len(np.unique(m.argmax(1))) == 50  # a one-to-one matching
    np.testing.assert_allclose(out.x, expected[m.argmax(1)], atol=1e-8)


def test_barycenter_weights_and_entropic_solver():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 2))
    measures = [(base, None), (base + np.array([4.0, 0.0]), None)]
    out = O.barycenter(measures, weights=np.array([0.75, 0.25]), init=base, solver="exact")
    np.testing.assert_allclose(out.x, base + np.array([1.0, 0.0]), atol=1e-8)
    ent = O.barycenter(measures, init=base, solver="sinkhorn", epsilon=1e-3, max_iter=20)
    # entropic blur shrinks the cloud a little but keeps its centre at the mean shift
    np.testing.assert_allclose(ent.x.mean(0), base.mean(0) + np.array([2.0, 0.0]), atol=1e-6)


def test_map_batch_threads_leave_the_warnings_machinery_as_found():
    """Worker threads must not enter warnings.catch_warnings: entered and left in turn by
    several threads, it left the process recording every later warning into a list nobody
    read (the barycenter reference's non-convergence line then went missing)."""
    import warnings

    rng = np.random.default_rng(3)
    probs = [(rng.random((8, 2)), rng.random((9, 2))) for _ in range(400)]
    before = (warnings.showwarning, warnings._showwarnmsg_impl, list(warnings.filters))
    O.map_batch(lambda p: O.emd(*p, method="dense").cost, probs, jobs=2)
    assert (warnings.showwarning, warnings._showwarnmsg_impl, list(warnings.filters)) == before
    # a warning from a worker (here: POT stopped at its iteration limit) reaches the caller
    # once, as otbio's ConvergenceWarning, and POT's own notice is dropped
    hard = [(rng.random((60, 2)), rng.random((70, 2)))] * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        O.map_batch(lambda p: O.emd(*p, method="dense", max_iter=5).cost, hard, jobs=2)
    cats = [w.category.__name__ for w in caught]
    assert cats == ["ConvergenceWarning", "ConvergenceWarning"], [str(w.message) for w in caught]
    # under the default filter, one per place, as a serial run shows it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        O.map_batch(lambda p: O.emd(*p, method="dense", max_iter=5).cost, hard, jobs=2)
    assert [w.category.__name__ for w in caught] == ["ConvergenceWarning"]
