"""The Numba kernels of the alignment agree with the NumPy reference (the original code)."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest
import reference as ref

from otbio.align import _structure as S
from otbio.align import geometric_features, read_structure, tm_superpose
from otbio.align._align import _diagonal, _plan_pairs
from otbio.align._features import Features, pair_features
from otbio.align._superpose import kabsch, tm_d0


def _all_structures(data):
    files = sorted((data / "chains").glob("[0-9]*.pdb.gz"))
    files += [data / "adk_open.pdb", data / "adk_closed.pdb", data / "1hvr.pdb"]
    return [read_structure(f) for f in files]


@pytest.fixture(scope="module")
def structures(data):
    return _all_structures(data)


def test_flat_reader_matches_residue_loop(data):
    """gemmi's flat atom table gives exactly the residues of the residue-by-residue loop."""
    files = sorted((data / "chains").glob("*.pdb.gz")) + sorted(data.glob("*.pdb"))
    for f in files:
        st = gemmi.read_structure(str(f), merge_chain_parts=True)
        for chain in (None, "A", "B", "Z"):
            loop = S._residues_loop(st[0], chain)
            flat = S._residues_flat(st, 0, chain)
            assert flat is not None
            for x, y in zip(loop, flat, strict=True):
                assert x.dtype == y.dtype and x.shape == y.shape
                assert np.array_equal(x, y), (f.name, chain)


def test_reader_falls_back_to_the_loop(data, monkeypatch):
    fast = read_structure(f"{data}/1hvr.pdb:B:10-30")
    monkeypatch.setattr(S, "_residues_flat", lambda *a: None)
    slow = read_structure(f"{data}/1hvr.pdb:B:10-30")
    for k in ("chain", "resnum", "icode", "resname", "ca"):
        assert np.array_equal(getattr(fast, k), getattr(slow, k))


def test_geometric_features_match_reference(structures):
    for st in structures:
        a, b = ref.geometric_features(st), geometric_features(st)
        assert a.values.shape == b.values.shape
        assert np.array_equal(np.isnan(a.values), np.isnan(b.values))
        np.testing.assert_allclose(b.values, a.values, rtol=0, atol=1e-12, equal_nan=True)
        assert np.array_equal(a.containment, b.containment)
        assert np.array_equal(a.floor, b.floor)


def test_features_of_a_chain_with_breaks_and_two_chains(data):
    st = read_structure(f"{data}/1hvr.pdb")  # two chains
    gap = st.subset(np.r_[0:30, 40:90])  # a break inside chain A
    for s in (st, gap):
        a, b = ref.geometric_features(s), geometric_features(s)
        np.testing.assert_allclose(b.values, a.values, rtol=0, atol=1e-12, equal_nan=True)


def test_pair_features_match_reference(structures):
    rng = np.random.default_rng(0)
    for q in structures[:6]:
        for t in structures[-4:]:
            fq, fc = geometric_features(q), geometric_features(t)
            for x, y in zip(ref.pair_features(fq, fc), pair_features(fq, fc), strict=True):
                np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)
        eq = Features(rng.normal(size=(len(q), 9)), np.ones(9, bool), "embedding")
        ec = Features(rng.normal(size=(len(q) + 3, 9)), np.ones(9, bool), "embedding")
        for x, y in zip(ref.pair_features(eq, ec), pair_features(eq, ec), strict=True):
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)
    # a column missing everywhere, and a constant one
    v = rng.normal(size=(12, 4))
    v[:, 1] = np.nan
    v[:, 2] = 3.0
    f = Features(v, np.array([False, False, True, False]), "geometric", np.full(4, 0.5))
    for x, y in zip(ref.pair_features(f, f), pair_features(f, f), strict=True):
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)


def test_superposition_matches_reference():
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(3, 150))
        x = rng.normal(size=(n, 3)) * 10
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        y = x @ q.T + rng.normal(size=(n, 3)) * rng.uniform(0, 5)
        if trial % 4 == 0:
            y = rng.normal(size=(n, 3)) * 10  # unrelated: reflections, weak fits
        length = int(rng.integers(n, 2 * n + 10))
        a = ref.tm_superpose(x, y, length, tm_d0(length))
        b = tm_superpose(x, y, length)
        np.testing.assert_allclose(b[0], a[0], rtol=1e-10)
        np.testing.assert_allclose(b[1], a[1], rtol=1e-10)
        np.testing.assert_allclose(b[2], a[2], atol=1e-9)
        np.testing.assert_allclose(b[3], a[3], atol=1e-8)
        w = rng.random(n)
        for u, v in zip(ref.kabsch(x, y, w), kabsch(x, y, w), strict=True):
            np.testing.assert_allclose(v, u, atol=1e-9)


def test_plan_statistics_match_reference():
    rng = np.random.default_rng(2)
    for _ in range(100):
        n, m = rng.integers(1, 50, 2)
        k = int(rng.integers(1, 15))
        plan = rng.random((n, m)) ** 6
        assert _diagonal(plan, k) == pytest.approx(ref.diagonal(plan, k), abs=1e-12)
        rows, cols = np.nonzero(plan > 0.3)
        assert np.array_equal(_plan_pairs(plan, 0.3), np.column_stack([rows, cols]))


def test_float32_slack_matches_marginals():
    from otbio.align._align import _marginals, _with_slack

    rng = np.random.default_rng(3)
    for nq, nc in ((5, 9), (9, 5), (7, 7)):
        hq, hc = rng.normal(size=(nq, 4)), rng.normal(size=(nc, 4))
        for mass in ("partial", "balanced"):
            ref_q, ref_c, ref_a, ref_b, _, _ = _marginals(hq, hc, mass)
            xq, xc, a, b = _with_slack(hq, hc, mass == "partial")
            assert xq.dtype == np.float32 and xc.dtype == np.float32
            assert np.array_equal(xq, ref_q.astype(np.float32))
            assert np.array_equal(xc, ref_c.astype(np.float32))
            assert np.array_equal(a, ref_a) and np.array_equal(b, ref_b)
