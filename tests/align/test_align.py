"""Alignment on real structures: identity, motif recovery, AdK open/closed, controls."""

from __future__ import annotations

import numpy as np
import pytest
from reference import random_rotation

from otbio import InputError
from otbio.align import (
    Features,
    align,
    kabsch,
    read_structure,
    search,
    tm_superpose,
)
from otbio.align._superpose import tm_d0


def perturbed(st, rng, noise):
    rot = random_rotation(rng)
    xyz = st.ca @ rot.T + rng.normal(0.0, noise, st.ca.shape) + rng.normal(0, 20, 3)
    return st.with_coordinates(xyz)


def test_kabsch_and_tm_score_formula(chains):
    rng = np.random.default_rng(0)
    x = chains[0].ca
    rot = random_rotation(rng)
    y = x @ rot.T + [1.0, -2.0, 3.0]
    r, t = kabsch(x, y)
    assert np.allclose(r, rot, atol=1e-8) and np.allclose(x @ r.T + t, y, atol=1e-8)
    rmsd, tm, _, _ = tm_superpose(x, y, len(x))
    assert rmsd < 1e-8 and tm == pytest.approx(1.0)
    # TM-score by hand: every pair 1 A apart along one axis, d0 from Zhang & Skolnick
    shifted = x + [1.0, 0.0, 0.0]
    d0 = 1.24 * (len(x) - 15) ** (1 / 3) - 1.8
    assert tm_d0(len(x)) == pytest.approx(d0)
    _, tm, _, _ = tm_superpose(x, shifted, 2 * len(x))
    assert tm == pytest.approx(0.5 * 1.0, abs=1e-9)  # superposition removes the shift
    assert tm_d0(10) == 0.5


def test_self_alignment_under_rotation_and_noise(chains):
    rng = np.random.default_rng(1)
    for st in chains:
        q = perturbed(st, rng, 0.5)
        res = align(q, st)
        ident = np.mean(res.plan.argmax(1) == np.arange(len(st)))
        assert ident >= 0.98, (st.name, ident)
        assert res.coverage >= 0.95 and res.tm_score > 0.8


def test_motif_excision_many_draws(chains):
    """One, two or three segments of 20-40 residues, perturbed, found in the full chain."""
    rng = np.random.default_rng(2)
    recov = []
    for st in chains:
        for n_seg in (1, 2, 3):
            n = len(st)
            starts = np.sort(rng.choice(np.arange(0, n - 40), n_seg, replace=False))
            idx = np.unique(
                np.concatenate([np.arange(s, min(n, s + rng.integers(20, 41))) for s in starts])
            )
            motif = perturbed(st.subset(idx), rng, 0.2)
            res = align(motif, st)
            recov.append(np.mean(np.abs(res.plan.argmax(1) - idx) <= 1))
    recov = np.array(recov)
    assert len(recov) == 75
    assert recov.mean() >= 0.95, recov
    assert np.mean(recov >= 0.95) >= 0.9, recov


def test_adk_open_closed(adk):
    op, cl = adk
    res = align(op, cl)
    within = np.mean(np.abs(res.plan.argmax(1) - np.arange(len(op))) <= 1)
    assert within >= 0.90
    correct = np.mean(res.pairs[:, 0] == res.pairs[:, 1])
    assert res.n_pairs >= 150 and correct >= 0.95
    assert 0.5 < res.tm_score < 0.9  # TM-align gives 0.69 for this pair


def test_adk_lid_motif_and_negative_control(data, adk):
    lid = read_structure(f"{data}/adk_open.pdb::122-159")
    res = align(lid, adk[1])
    truth = np.arange(121, 159)
    assert np.mean(np.abs(res.plan.argmax(1) - truth) <= 1) >= 0.95
    assert np.mean(res.pairs[:, 1] == truth[res.pairs[:, 0]]) >= 0.95
    assert res.score > 0.5
    neg = align(lid, read_structure(data / "1hvr.pdb"))
    assert neg.score < 0.1
    assert neg.score < 0.2 * res.score
    # like TM-align, the best superposition is reported, at a chance TM-score
    assert neg.tm_score < 0.45 and neg.tm_score < 0.5 * res.tm_score
    assert neg.params["refined"] == 0


def test_circular_permutation(chains):
    rng = np.random.default_rng(3)
    for st in chains[:8]:
        n = len(st)
        order = np.roll(np.arange(n), n // 3)
        perm = perturbed(st.subset(order), rng, 0.3)
        res = align(perm, st)
        assert np.mean(np.abs(res.plan.argmax(1) - order) <= 1) >= 0.95, st.name


def test_partial_marginals_and_pairs(adk, data):
    lid = read_structure(f"{data}/adk_open.pdb::122-159")
    res = align(lid, adk[1], refine=0)
    assert np.allclose(res.plan.sum(1), 1.0, atol=0.1)  # every motif residue sends 1
    assert res.plan.sum(0).max() <= 1.0 + 0.1  # no target residue gets more than 1
    assert np.all(res.pair_values > 0.5)
    assert len(np.unique(res.pairs[:, 1])) == res.n_pairs
    bal = align(lid, adk[1], refine=0, mass="balanced")
    assert np.allclose(bal.plan.sum(0), len(lid) / len(adk[1]), atol=0.05)
    assert bal.n_pairs == 0  # balanced mass: each target column holds only 38/214


def test_plasma_pf_embeddings(adk):
    """User embeddings: PLASMA-PF settings recover a noisy copy of a chain segment."""
    rng = np.random.default_rng(4)
    op = adk[0]
    emb = rng.normal(size=(len(op), 640))  # ESM-2 (150M) width
    idx = np.arange(40, 90)
    q = op.subset(idx)
    fq = Features(emb[idx] + rng.normal(0, 0.2, (len(idx), 640)), np.ones(640, bool), "embedding")
    fc = Features(emb, np.ones(640, bool), "embedding")
    res = align(q, op, query_features=fq, target_features=fc, plasma_pf=True, refine=0)
    assert res.params["epsilon"] == 10 and res.n_iter <= 20
    assert np.mean(res.plan.argmax(1) == idx) >= 0.95
    assert res.score > 0.5
    std = align(q, op, query_features=fq, target_features=fc, temperature=0.1)
    assert np.mean(std.plan.argmax(1) == idx) >= 0.95 and std.score > 0.5
    with pytest.raises(InputError, match="both"):
        align(q, op, query_features=fq)
    with pytest.raises(InputError, match="embeddings"):
        align(q, op, plasma_pf=True)


def test_search_ranks_true_parent_first(chains, data):
    rng = np.random.default_rng(5)
    parent = chains[7]
    motif = perturbed(parent.subset(np.arange(20, 55)), rng, 0.2)
    ranked = search(motif, chains[:12])
    assert ranked[0].target is parent
    tms = [r.tm_score for r in ranked]
    assert tms == sorted(tms, reverse=True)
    # file paths are accepted too, and give the same ranking
    by_path = search(motif, [c.path for c in chains[:12]])
    assert [r.target.name for r in by_path] == [r.target.name for r in ranked]


def test_bad_options(adk):
    with pytest.raises(InputError, match="threshold"):
        align(adk[0], adk[1], threshold=0.0)
    with pytest.raises(InputError, match="epsilon"):
        align(adk[0], adk[1], epsilon=-1.0)
    with pytest.raises(InputError, match="epsilon"), pytest.warns(FutureWarning):
        align(adk[0], adk[1], temperature=-1.0)  # the old keyword: epsilon = 1 / T


def test_renamed_keywords_still_work(adk):
    """temperature=T is epsilon=1/T, max_iter is round_iter, seeds is n_fragments."""
    with pytest.warns(FutureWarning, match="renamed 'epsilon'"):
        old = align(adk[0], adk[0], temperature=2.0, max_iter=15, seeds=8)
    new = align(adk[0], adk[0], epsilon=0.5, round_iter=15, n_fragments=8)
    assert old.params == new.params and old.params["epsilon"] == 0.5
    assert old.params["n_fragments"] == 8 and old.tm_score == new.tm_score
