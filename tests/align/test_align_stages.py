"""The stages of ``align`` (otbio/align/_stages.py) one at a time, on the bundled chains."""

from __future__ import annotations

import inspect

import numpy as np

from otbio.align import _stages, align


def _motif(st, segments, noise, seed):
    """Residues of ``segments`` (in the order given), rotated, moved and jittered."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(a, b) for a, b in segments])
    m = st.subset(idx, name=f"{st.name}{segments}")
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return m.with_coordinates(m.ca @ q.T + rng.normal(scale=noise, size=m.ca.shape) + 10.0), idx


def _problem(q, t, **kw):
    opts = dict(epsilon=None, threshold=0.5, sequence_weight=0.0, plasma_pf=False,
                mass="partial", reg_m=1.0, round_iter=None, tol=1e-2, refine=None,
                refine_weight=3.0, n_fragments=None, sequential=False, device="cpu")  # fmt: skip
    opts.update(kw)
    return _stages.pose_problem(q, t, None, None, _stages.resolve_options(None, None, **opts))


def test_help_keeps_the_whole_reference():
    doc = align.__doc__
    assert "Parameters" in doc and "Examples" in doc and "C_{ij}" in doc
    for name in inspect.signature(align).parameters:
        assert name in doc, name


def test_seeded_rounds_recover_a_swapped_motif(chains):
    """Seeds and seeded rounds alone place a two-segment motif in swapped order, and the
    stages composed by hand give the entry point's answer."""
    t = chains[13]
    q, idx = _motif(t, [(60, 90), (20, 50)], 0.5, seed=3)
    p = _problem(q, t)
    seeds = _stages.seed_starts(p)
    assert seeds.cands and p.n_fragments == 32
    tally = _stages.Tally()
    seeded = _stages.seeded_rounds(p, seeds, tally)
    best = seeded.best
    assert best is not None and tally.n_iter > 0 and np.isfinite(seeded.tm)
    truth = idx[best.pairs[:, 0]]
    assert np.mean(np.abs(best.pairs[:, 1] - truth) <= 1) >= 0.95 and best.coverage >= 0.95
    assert not _stages.needs_local_round(seeded)
    kept, is_seeded = _stages.keep_best(None, seeded)
    res = align(q, t)
    assert is_seeded and res.params["seeded"]
    assert np.array_equal(kept.pairs, res.pairs) and kept.tm == res.tm_score


def test_extension_when_no_window_fits(chains):
    """Two 11-residue segments: no 12-residue seed fits, the local round alone pairs the
    motif poorly, and its superposition, extended to the whole query, seeds distance
    rounds that find it (the seeded answer is kept)."""
    t = chains[0]
    q, idx = _motif(t, [(30, 41), (60, 71)], 0.3, seed=0)
    p = _problem(q, t)
    seeds = _stages.seed_starts(p)
    assert not seeds.cands
    tally = _stages.Tally()
    local = _stages.local_round(p, tally)
    assert _stages.needs_local_round(_stages.Seeded()) and np.isfinite(local.tm)
    ext = _stages.extended_rounds(p, seeds, local, tally)
    assert ext.best is not None and np.isfinite(ext.tm) and ext.best.tm > local.tm
    kept, is_seeded = _stages.keep_best(local, ext)
    assert is_seeded
    assert np.mean(np.abs(idx[kept.pairs[:, 0]] - kept.pairs[:, 1]) <= 1) >= 0.95
    scores = _stages.score_answer(p, kept, ext)
    res = align(q, t)
    assert np.array_equal(kept.pairs, res.pairs) and scores.score == res.score
    assert res.n_iter == tally.n_iter and res.params["seed_tm"] == ext.tm
