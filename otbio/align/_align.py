"""Residue-level alignment of a query onto a target by entropic optimal transport (PLASMA)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numba import njit

from otbio._compat import renamed_kwargs
from otbio._docs import doc_params
from otbio.align._features import (
    Features,
    geometric_features,
)
from otbio.align._structure import Structure

__all__ = ["Alignment", "align", "features_of"]

log = logging.getLogger("otbio")

#: Default temperature of the geometric features: epsilon = 1 / temperature, in cost units.
DEFAULT_TEMPERATURE = 1.0
#: PLASMA-PF's settings: temperature 0.1 (epsilon 10) and 20 Sinkhorn iterations.
PLASMA_PF_TEMPERATURE = 0.1
PLASMA_PF_ITER = 20
#: Sinkhorn iteration limit with geometric features (each round); the plan is thresholded
#: at 0.5, so a marginal error of a few percent does not change the pairs.
DEFAULT_MAX_ITER = 20
#: Diagonal-continuity window of the score (PLASMA's K).
REFINE_MIN_TM = 0.5  # a refinement is kept only at a same-fold TM-score (Xu & Zhang 2010)
DIAGONAL_K = 10
#: Chance level of the cosine term with geometric features: unrelated chains of similar
#: secondary structure reach cosines of 0.3-0.5, true matches 0.8-0.9. The score rescales
#: the cosine as (cos - c0) / (1 - c0); c0 = 0 for embeddings (PLASMA's score exactly).
COSINE_CHANCE = 0.5

#: Seeded superpositions (see otbio.align._seeds): fragment pairs tried, and how many of the
#: best superpositions get a full OT round on the distances after superposition.
DEFAULT_SEEDS = 32
#: OT rounds from the chosen superposition (the second starts from the first's pairs).
SEED_OT_ROUNDS = 2
#: Sinkhorn iteration limit of the first round from each start (they are compared by their
#: TM-score; the leader's further round runs to the usual limit).
SEED_MAX_ITER = 10
#: An alignment has settled (``converged``) when ``round_iter`` more iterations of its kept
#: round change the TM-score of its pairs by less than this (at most 0.015 on the bundled
#: chains against adk at the default 20 iterations).
SETTLE_TM = 0.02
#: Best seeded superpositions from which the OT rounds run (the best TM-score is kept).
SEED_STARTS = 3
#: Coverage of the query below which a seeded alignment of a related structure (TM-score
#: >= REFINE_MIN_TM) is compared with the local-feature round (domains that moved).
LOCAL_COVERAGE = 0.9
#: L1 distance (A) between superposed CA atoms beyond which a query residue is left
#: unmatched in the seeded OT round (cost of the dustbin; about 6 A Euclidean).
DUSTBIN_L1 = 10.0
#: Weight of the sequence neighbours' distances (i -+ 1 to j -+ 1) in that round's cost.
NEIGHBOUR_WEIGHT = 1.0

MassMode = Literal["partial", "balanced", "unbalanced"]


@dataclass(frozen=True, eq=False)
class Alignment:
    """The result of aligning one query onto one target.

    Attributes
    ----------
    query, target
        The two structures.
    plan
        (L_q, L_c) transport plan; with ``mass="partial"`` every residue of the shorter
        protein carries mass 1 and every residue of the longer one at most 1.
    pairs
        (n_pairs, 2) integer indices (query residue, target residue) of the plan entries
        above ``threshold``, ordered by query residue.
    pair_values
        (n_pairs,) their plan values.
    score
        Similarity in [0, 1]: ``max(0, (cosine - c0) / (1 - c0)) * diagonal`` with the
        cosine's chance level ``c0`` (0.5 for geometric features, 0 for embeddings).
    cosine
        Cosine similarity between the query features carried onto the target by the plan and
        the target's own features, weighted by the mass each target residue receives.
    diagonal
        Best mean of ``K`` consecutive diagonal plan entries (continuity of the alignment).
    rmsd, tm_score
        RMSD (A) of the Kabsch superposition of the paired CA atoms and the TM-score over
        those pairs, normalised by the query length. With fewer than 3 pairs the RMSD is NaN
        and the TM-score is that of the best superposition found (nearest partners, each
        target residue counted once), so an empty answer still says how close it came.
    tm_score_target
        The TM-score of the pairs normalised by the target length (d0 of the target).
    seq_identity
        Fraction of the pairs whose residues have the same amino acid (NaN without pairs).
    tm_score_seq, tm_score_seq_target
        With ``sequential=True``: TM-score of the best sequential, TM-align-style alignment
        (iterated dynamic programming and superposition, :mod:`otbio.align._dp`),
        normalised by the query and by the target; NaN otherwise. It ranks pairs as
        TM-align's TM-score does; the order-free ``pairs`` and ``tm_score`` are unchanged.
    coverage
        Fraction of query residues that have a pair.
    rotation, translation
        Superposition of the query onto the target: ``x @ rotation.T + translation``
        (identity when there are fewer than 3 pairs).
    epsilon, n_iter
        The Sinkhorn runs (epsilon, and their iterations in all).
    converged
        Whether the alignment settled: ``round_iter`` more iterations of the kept Sinkhorn
        round give the same residue pairs, or pairs whose TM-score differs by less than
        0.02 (or the round reached ``tol``). The rounds are capped at ``round_iter`` (20) by
        design, as in PLASMA, so the Sinkhorn tolerance alone is seldom reached, even on a
        perfect match.
    """

    query: Structure
    target: Structure
    plan: np.ndarray
    pairs: np.ndarray
    pair_values: np.ndarray
    score: float
    cosine: float
    diagonal: float
    rmsd: float
    tm_score: float
    coverage: float
    rotation: np.ndarray
    translation: np.ndarray
    epsilon: float
    n_iter: int
    converged: bool
    params: dict = field(default_factory=dict)
    tm_score_target: float = np.nan
    seq_identity: float = np.nan
    tm_score_seq: float = np.nan
    tm_score_seq_target: float = np.nan

    @property
    def n_pairs(self) -> int:
        return int(self.pairs.shape[0])

    def summary(self) -> dict:
        """One row of the score table: TM-align's and Foldseek's columns (TM-score by the
        query and by the target, aligned length, RMSD, sequence identity) and PLASMA's score."""

        def r(x, k):
            return round(float(x), k) if np.isfinite(x) else np.nan

        seq = {}
        if np.isfinite(self.tm_score_seq):  # computed with ``sequential=True``
            seq = {
                "tm_score_seq": r(self.tm_score_seq, 4),
                "tm_score_seq_target": r(self.tm_score_seq_target, 4),
            }
        return {
            "query": self.query.name,
            "target": self.target.name,
            "tm_score": r(self.tm_score, 4),
            "tm_score_target": r(self.tm_score_target, 4),
            "aligned_length": self.n_pairs,
            "rmsd": r(self.rmsd, 3),
            "seq_identity": r(self.seq_identity, 4),
            **seq,
            "score": round(self.score, 4),
            "pairs": self.n_pairs,
            "coverage": round(self.coverage, 4),
            "cosine": round(self.cosine, 4),
            "diagonal": round(self.diagonal, 4),
            "query_length": len(self.query),
            "target_length": len(self.target),
            "converged": self.converged,
        }

    def pairs_table(self):
        """The residue pairs as a pandas DataFrame (one row per pair)."""
        import pandas as pd

        i, j = self.pairs[:, 0], self.pairs[:, 1]
        q, t = self.query, self.target
        return pd.DataFrame(
            {
                "query": q.name,
                "query_chain": q.chain[i],
                "query_resnum": q.resnum[i],
                "query_icode": q.icode[i],
                "query_resname": q.resname[i],
                "target": t.name,
                "target_chain": t.chain[j],
                "target_resnum": t.resnum[j],
                "target_icode": t.icode[j],
                "target_resname": t.resname[j],
                "plan": np.round(self.pair_values, 4),
            }
        )


def features_of(st: Structure) -> Features:
    """Geometric features of a structure, computed once and cached on it."""
    if "geometric" not in st._cache:
        st._cache["geometric"] = geometric_features(st)
    return st._cache["geometric"]


def _diagonal(plan: np.ndarray, k: int) -> float:
    """Best mean of ``k`` consecutive diagonal entries ``plan[i + t, j + t]``."""
    n, m = plan.shape
    k = max(1, min(k, n, m))
    return float(_diagonal_max(np.asarray(plan, dtype=np.float64), k) / k)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp"})
def _diagonal_max(plan, k):
    """Largest sum of ``k`` consecutive entries along any diagonal, from prefix sums along
    the diagonals, ``d[i, j] = plan[i, j] + d[i - 1, j - 1]`` (rows kept in a ring of k + 1)."""
    n, m = plan.shape
    ring = np.zeros((k + 1, m + 1))  # row i + 1 of d (shifted by one column) at (i + 1) % (k + 1)
    best = -np.inf
    for i in range(n):
        cur = ring[(i + 1) % (k + 1)]
        prev = ring[i % (k + 1)]
        cur[0] = 0.0
        for j in range(m):
            cur[j + 1] = prev[j] + plan[i, j]
        if i + 1 >= k:
            old = ring[(i + 1 - k) % (k + 1)]  # row i + 1 - k of d; all zeros before the first
            for j in range(k, m + 1):
                v = cur[j] - old[j - k]
                best = v if v > best else best
    return best


@njit(cache=True, nogil=True)
def _plan_pairs(plan, threshold):
    """(k, 2) indices of the entries above ``threshold``, in row-major order."""
    return _plan_pairs_colsum(plan, threshold)[0]


@njit(cache=True, nogil=True)
def _plan_pairs_colsum(plan, threshold):
    """:func:`_plan_pairs` and the column sums of the plan, in one pass."""
    n, m = plan.shape
    count = 0
    colsum = np.zeros(m)
    for i in range(n):
        for j in range(m):
            p = plan[i, j]
            colsum[j] += p
            count += 1 if p > threshold else 0
    out = np.empty((count, 2), dtype=np.int64)
    k = 0
    for i in range(n):
        for j in range(m):
            if plan[i, j] > threshold:
                out[k, 0] = i
                out[k, 1] = j
                k += 1
    return out, colsum


def _cosine(plan: np.ndarray, zq: np.ndarray, zc: np.ndarray, colsum=None) -> float:
    carried = plan.T @ zq  # (L_c, d): query features carried onto the target
    colsum = plan.sum(0) if colsum is None else colsum
    own = colsum[:, None] * zc  # the target residues' own features, same weights
    den = np.sqrt(np.vdot(carried, carried) * np.vdot(own, own))
    return float(np.vdot(carried, own) / den) if den > 0 else 0.0


def _marginals(hq, hc, mass: MassMode):
    """Inputs and weights for 'partial' transport via a zero-cost slack point.

    With rows of mass 1 and columns of capacity 1 (PLASMA's all-ones targets), the smaller
    side must be filled up: a slack point whose hinge cost to every residue of the other
    side is 0 takes the surplus ``|L_c - L_q|``. Every residue of the smaller protein then
    sends exactly mass 1 and every residue of the larger one receives at most 1.
    """
    nq, nc = hq.shape[0], hc.shape[0]
    a = np.ones(nq)
    b = np.ones(nc)
    if mass != "partial" or nq == nc:
        return hq, hc, a, b, nq, nc
    if nq < nc:
        slack = np.min(hc, axis=0) - 1.0  # max(0, slack - y) = 0 for every target residue
        hq = np.vstack([hq, slack])
        a = np.append(a, nc - nq)
    else:
        slack = np.max(hq, axis=0) + 1.0  # max(0, x - slack) = 0 for every query residue
        hc = np.vstack([hc, slack])
        b = np.append(b, nq - nc)
    return hq, hc, a, b, nq, nc


@njit(cache=True, nogil=True)
def _slack32(hq, hc, partial):
    """:func:`_marginals` with the points in float32 (the inputs of the hinge geometry)."""
    nq, d = hq.shape
    nc = hc.shape[0]
    add_q = partial and nq < nc
    add_c = partial and nc < nq
    xq = np.empty((nq + (1 if add_q else 0), d), dtype=np.float32)
    xc = np.empty((nc + (1 if add_c else 0), d), dtype=np.float32)
    for i in range(nq):
        for k in range(d):
            xq[i, k] = hq[i, k]
    for i in range(nc):
        for k in range(d):
            xc[i, k] = hc[i, k]
    if add_q:  # slack below every target residue: max(0, slack - y) = 0
        for k in range(d):
            lo = np.inf
            for i in range(nc):
                lo = min(lo, hc[i, k])
            xq[nq, k] = lo - 1.0
    if add_c:  # slack above every query residue: max(0, x - slack) = 0
        for k in range(d):
            hi = -np.inf
            for i in range(nq):
                hi = max(hi, hq[i, k])
            xc[nc, k] = hi + 1.0
    return xq, xc


def _with_slack(hq: np.ndarray, hc: np.ndarray, partial: bool):
    """float32 points and weights of :func:`_marginals` (the slack is added in float64 and
    then rounded, as ``_marginals(...)`` followed by ``astype(np.float32)``)."""
    nq, nc = hq.shape[0], hc.shape[0]
    xq, xc = _slack32(np.asarray(hq, dtype=np.float64), np.asarray(hc, dtype=np.float64), partial)
    a = np.ones(xq.shape[0])
    b = np.ones(xc.shape[0])
    if xq.shape[0] > nq:
        a[-1] = nc - nq
    if xc.shape[0] > nc:
        b[-1] = nq - nc
    return xq, xc, a, b


_ALIGN_REFERENCE = """
    PLASMA's recipe (Wang et al. 2025, arXiv:2510.11752, ICLR 2026) with features computed
    from the coordinates, or user embeddings. The cost between query residue i and target
    residue j is the hinge (query containment) cost

    .. math:: C_{ij} = \\sum_k \\max(0, h^q_{ik} - h^c_{jk}),

    and the plan solves :math:`\\min_P \\langle P, C \\rangle + \\varepsilon \\mathrm{KL}(P)`
    with :math:`\\varepsilon` = ``epsilon`` (PLASMA's temperature is :math:`1/\\varepsilon`), in the log domain with the engine's
    Sinkhorn (:class:`otbio.ot.Sinkhorn`). Marginals (``mass``):

    - ``"partial"`` (default): every residue of the smaller protein sends mass 1, every
      residue of the larger receives at most 1 (a zero-cost slack point absorbs the rest).
      This is what PLASMA's all-ones row and column targets mean when ``L_q != L_c``: plan
      entries are then probabilities, and an entry above 0.5 is a majority match.
    - ``"balanced"``: rows 1, columns ``L_q / L_c`` (the engine rescales b to a's mass).
    - ``"unbalanced"``: KL-relaxed marginals with weight ``reg_m``; slower.

    Pairs are entries above ``threshold``. The score (PLASMA) is
    ``max(0, (cos - c0) / (1 - c0)) * diag`` where ``cos`` compares the query features carried
    onto the target with the target's own (two-sided features only), ``c0`` is its chance
    level (0.5 for geometric features, whose cosines between unrelated chains of similar
    secondary structure reach 0.3-0.5; 0 for embeddings, PLASMA's score exactly), and
    ``diag`` is the best mean of K = 10 consecutive diagonal plan entries. The pairs are then superposed (Kabsch) for an RMSD and a TM-score
    (Zhang & Skolnick 2004) normalised by the query length.

    Parameters
    ----------
    query, target
        Structures from :func:`read_structure`.
    query_features, target_features
        Embeddings from :func:`load_embedding` (both or neither); geometric features when
        None.
    epsilon
        Entropic regularisation on the hinge cost (absolute). Default 1.0 for geometric
        features, 10 with ``plasma_pf`` (PLASMA's temperature 0.1 is its inverse). Lower it
        for sharper plans (more pairs, more iterations), raise it for smoother ones.
        (``temperature=T`` before 0.2, now ``epsilon=1/T``.)
    threshold
        Plan value above which a residue pair is reported.
    sequence_weight
        Cost of an amino-acid mismatch added to the geometric cost (0: pure shape).
    plasma_pf
        PLASMA-PF settings for embeddings: per-residue normalisation, hinge cost,
        temperature 0.1, 20 Sinkhorn iterations.
    mass, reg_m
        Marginal constraints, see above.
    round_iter, tol
        Sinkhorn iterations per round (default 20 in both modes, as
        PLASMA's fixed 20 iterations; ``max_iter`` before 0.2) and tolerance on the row-marginal error per residue.
        The plan is thresholded at 0.5, so a few percent of marginal error does not change
        the pairs; ``Alignment.converged`` says whether the alignment settled (the same
        pairs, or the same TM-score within 0.02, after ``round_iter`` more iterations).
    refine, refine_weight
        Rounds of geometric refinement of the local-feature round (default 1, or 0 with
        ``plasma_pf``; beyond PLASMA, 0 turns it off): superpose the query on the target
        with the pairs found (TM-score weighted Kabsch), add the CA coordinates to both
        sides' features as ``(w x, -w x)`` so that the hinge cost gains ``w`` times the L1
        distance between superposed CA atoms, and solve again; a round is kept only if it
        raises the TM-score. It sharpens the plan in helices and sheets, whose local
        geometry repeats, and stays order-free. ``refine_weight`` also weighs the distances
        of the seeded rounds.
    n_fragments
        Fragment pairs tried as seeded superpositions (``seeds`` before 0.2; default 32, or 0 with
        ``plasma_pf`` or a ``mass`` other than ``"partial"``; 0 turns them off). Beyond
        PLASMA, as TM-align and Foldseek seed: windows of 12 query residues are matched to
        target windows by their internal CA distances (any order, so swapped segments and
        circular permutations are found), superposed (Kabsch) and the best extended to the
        whole query by TM-weighted Kabsch iterations (:mod:`otbio.align._seeds`); from each
        of the three best superpositions a Sinkhorn round runs on the distances after
        superposition (a query residue more than about 6 A from every target residue goes
        to a dustbin and stays unpaired), the best by a TM-score with d0 of at least 3 A
        leads, and a second round runs from its pairs. This is what keeps motifs found
        under 1-1.5 A of coordinate noise or a conformational change. The round on the
        local features (PLASMA's, with ``refine``) runs when seeds are off, when no 12-residue window
        fits the query (its superposition then seeds the distance rounds), or when the
        seeded answer is of a related structure (TM-score >= 0.5) but pairs less than 90%
        of the query (domains that moved); the answer with the best TM-score is kept.
    sequential
        Also compute ``tm_score_seq`` and ``tm_score_seq_target``: the TM-score of the best
        sequential alignment, TM-align's recipe (Zhang & Skolnick 2005) started from
        gapless threadings, local fragment superpositions and the final superposition (see
        :func:`otbio.align._dp.sequential_tm`). It ranks unrelated and related pairs as
        TM-align does; it costs about as much again as the alignment of two chains, so
        it is off by default. Motifs whose segments come in another order than in the
        target score low on it (it is sequential); the order-free answer is unchanged.
    device
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    Alignment

    Examples
    --------
    >>> from otbio.align import read_structure, align
    >>> adk = read_structure("test_data/protein/adk_open.pdb")
    >>> res = align(adk, adk)
    >>> res.coverage > 0.95, round(res.rmsd, 3)
    (True, 0.0)
    """


@renamed_kwargs(
    {
        "temperature": ("epsilon", lambda t: 1.0 / t if t else float("inf")),
        "max_iter": "round_iter",
        "seeds": "n_fragments",
    }
)
@doc_params(reference=_ALIGN_REFERENCE)
def align(
    query: Structure,
    target: Structure,
    *,
    query_features: Features | None = None,
    target_features: Features | None = None,
    epsilon: float | None = None,
    threshold: float = 0.5,
    sequence_weight: float = 0.0,
    plasma_pf: bool = False,
    mass: MassMode = "partial",
    reg_m: float = 1.0,
    round_iter: int | None = None,
    tol: float = 1e-2,
    refine: int | None = None,
    refine_weight: float = 3.0,
    n_fragments: int | None = None,
    sequential: bool = False,
    device: str = "cpu",
) -> Alignment:
    """Align a query (motif, domain or chain) onto a target with an entropic OT plan.

    The method's stages, in :mod:`otbio.align._stages`: features, seeds, seeded rounds,
    the local-feature round (and its refinement), extension, choice, scoring, sequential
    re-scoring, output. The reference (cost, marginals, score, parameters) follows.
    {reference}"""
    from otbio.align import _stages as stages

    opts = stages.resolve_options(
        query_features, target_features, epsilon=epsilon, threshold=threshold,
        sequence_weight=sequence_weight, plasma_pf=plasma_pf, mass=mass, reg_m=reg_m,
        round_iter=round_iter, tol=tol, refine=refine, refine_weight=refine_weight,
        n_fragments=n_fragments, sequential=sequential, device=device,
    )  # fmt: skip
    p = stages.pose_problem(query, target, query_features, target_features, opts)
    tally = stages.Tally()
    seeds = stages.seed_starts(p)
    seeded = stages.seeded_rounds(p, seeds, tally)
    local = None
    if stages.needs_local_round(seeded):
        local = stages.local_round(p, tally)
        if p.n_fragments > 0 and not seeds.cands and np.isfinite(local.tm):
            seeded = stages.extended_rounds(p, seeds, local, tally)
    best, kept_seeded = stages.keep_best(local, seeded)
    scores = stages.score_answer(p, best, seeded)
    seq = stages.sequential_rescore(p, best)
    return stages.to_alignment(p, best, kept_seeded, seeded, scores, seq, tally)


#: The reference part of :func:`align`'s docstring (``help(align)`` shows both): kept out of
#: the function body so that the entry point reads as its stages.


def _distance_geometry(xq, xc, segq, segc, weight: float):
    """Hinge geometry whose cost is ``weight`` times the L1 distance between the superposed
    CA atoms of residue i and j plus those of their sequence neighbours (i -+ 1 with
    j -+ 1, weight ``NEIGHBOUR_WEIGHT``; a missing neighbour costs nothing), with a
    query-side slack point (cost 0 to everything) and a target-side dustbin (cost
    ``weight * DUSTBIN_L1`` from every query residue): see :func:`_dustbin_weights`.
    Partial transport with dummy points (Chapel et al. 2020). The neighbour terms average
    the coordinate noise over three residues; the alignment stays order-free (only
    consecutive residues are compared, the segments may lie anywhere)."""
    from otbio.ot import PointCloud

    big = weight * DUSTBIN_L1 * (1.0 + 2.0 * NEIGHBOUR_WEIGHT)
    pq, pc = _distance_points(
        np.ascontiguousarray(xq, dtype=np.float64),
        np.ascontiguousarray(xc, dtype=np.float64),
        np.ascontiguousarray(segq, dtype=np.int64),
        np.ascontiguousarray(segc, dtype=np.int64),
        float(weight),
        float(weight * NEIGHBOUR_WEIGHT),
        float(big),
    )
    return PointCloud(pq, pc, cost="hinge")


@njit(cache=True, nogil=True)
def _fill_points(x, seg, w, v, out, missing):
    """Rows ``[w x_i, -w x_i, v x_{i-1}, -v x_{i-1}, v x_{i+1}, -v x_{i+1}]`` of ``out``
    (``missing`` where the neighbour is absent: chain ends and breaks)."""
    n = x.shape[0]
    for i in range(n):
        for k in range(3):
            out[i, k] = w * x[i, k]
            out[i, 3 + k] = -w * x[i, k]
            if i > 0 and seg[i - 1] == seg[i]:
                out[i, 6 + k] = v * x[i - 1, k]
                out[i, 9 + k] = -v * x[i - 1, k]
            else:
                out[i, 6 + k] = missing
                out[i, 9 + k] = missing
            if i + 1 < n and seg[i + 1] == seg[i]:
                out[i, 12 + k] = v * x[i + 1, k]
                out[i, 15 + k] = -v * x[i + 1, k]
            else:
                out[i, 12 + k] = missing
                out[i, 15 + k] = missing


@njit(cache=True, nogil=True)
def _distance_points(xq, xc, segq, segc, w, v, big):
    """The points of :func:`_distance_geometry` (float32): 18 coordinate columns and the
    dustbin column; a missing query neighbour is set below every value and a missing
    target neighbour above (so it costs nothing), the slack row below everything, the
    dustbin row above everything but its last column."""
    nq, nc = xq.shape[0], xc.shape[0]
    m = max(w, v) * (max(np.abs(xq).max(), np.abs(xc).max()) + 1.0)
    lo, hi = -m - 1.0, m + 1.0
    pq = np.empty((nq + 1, 19), dtype=np.float32)
    pc = np.empty((nc + 1, 19), dtype=np.float32)
    _fill_points(xq, segq, w, v, pq, lo)
    _fill_points(xc, segc, w, v, pc, hi)
    for i in range(nq):
        pq[i, 18] = big
    for i in range(nc):
        pc[i, 18] = big
    for k in range(18):
        pq[nq, k] = lo  # slack: below every target value, cost 0 everywhere
        pc[nc, k] = hi  # dustbin: only the last column costs, ``big``
    pq[nq, 18] = 0.0
    pc[nc, 18] = 0.0
    return pq, pc


def _dustbin_weights(nq: int, nc: int):
    """Masses of :func:`_distance_geometry`: residues 1, the slack ``nc``, the dustbin ``nq``
    (both sides then hold ``nq + nc``)."""
    a = np.ones(nq + 1)
    a[nq] = nc
    b = np.ones(nc + 1)
    b[nc] = nq
    return a, b
