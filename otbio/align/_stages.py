"""The stages of :func:`otbio.align.align`, each a function of explicit state.

The method, in order (the entry point :func:`otbio.align._align.align` calls them):

1. **features** (:func:`resolve_options`, :func:`pose_problem`): the options checked and
   defaulted, the paired per-residue features and the Sinkhorn solvers, in a
   :class:`Problem`;
2. **seeds** (:func:`seed_starts`): fragment-pair superpositions (:mod:`otbio.align._seeds`);
3. **seeded rounds** (:func:`seeded_rounds`): one OT round on the distances after each of the
   best superpositions, then further rounds from the leader;
4. **local-feature round** (:func:`local_round`): PLASMA's round on the local features and
   its geometric refinement, when there is no seeded answer or it leaves a related
   structure's residues unpaired;
5. **extension** (:func:`extended_rounds`): when no seed fitted, the local round's
   superposition extended to the whole query seeds the distance rounds;
6. **choice** (:func:`keep_best`): the answer with the best TM-score;
7. **scoring** (:func:`score_answer`): settling check, PLASMA's score, TM-score by the
   target, sequence identity;
8. **sequential re-scoring** (:func:`sequential_rescore`): TM-align-style TM-score;
9. **output** (:func:`to_alignment`): the log line and the :class:`Alignment`.

As in OTT-JAX, the problem (:class:`Problem`), the solver (the engine's ``Sinkhorn``, held by
the problem) and the outputs (:class:`Round`, :class:`Seeded`, :class:`Scores`) are
separate objects; nothing is carried through closures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from otbio._errors import InputError
from otbio.align._align import (
    COSINE_CHANCE,
    DEFAULT_MAX_ITER,
    DEFAULT_SEEDS,
    DEFAULT_TEMPERATURE,
    DIAGONAL_K,
    LOCAL_COVERAGE,
    PLASMA_PF_ITER,
    PLASMA_PF_TEMPERATURE,
    REFINE_MIN_TM,
    SEED_MAX_ITER,
    SEED_OT_ROUNDS,
    SEED_STARTS,
    SETTLE_TM,
    Alignment,
    _cosine,
    _diagonal,
    _distance_geometry,
    _dustbin_weights,
    _plan_pairs_colsum,
    _with_slack,
    features_of,
    log,
)
from otbio.align._features import Features, pair_features, sequence_onehot
from otbio.align._seeds import (
    RANK_D0,
    extend_superposition,
    fragment_seeds,
    nearest_tm,
    sequence_segments,
)
from otbio.align._structure import Structure
from otbio.align._superpose import _tm_superpose, tm_d0, tm_superpose


@dataclass(frozen=True)
class Options:
    """The options of :func:`otbio.align.align`, checked and with their defaults filled in
    (``n_fragments`` stays None until :func:`pose_problem` knows the mode)."""

    epsilon: float
    threshold: float
    sequence_weight: float
    plasma_pf: bool
    mass: str
    reg_m: float
    round_iter: int
    tol: float
    refine: int
    refine_weight: float
    n_fragments: int | None
    sequential: bool
    device: str


def resolve_options(query_features, target_features, **kw) -> Options:
    """Check the options of :func:`otbio.align.align` and fill in their defaults.

    Takes the two feature arguments (both None or neither) and the keyword options;
    returns :class:`Options`. Raises :class:`InputError` (the first problem found, in the
    order features, threshold, mass, plasma_pf, epsilon).
    """
    if (query_features is None) != (target_features is None):
        msg = "give embeddings for both the query and the target, or for neither"
        raise InputError(msg)
    if not 0 < kw["threshold"] <= 1:
        msg = f"`threshold` must lie in (0, 1], got {kw['threshold']}"
        raise InputError(msg)
    if kw["mass"] not in ("partial", "balanced", "unbalanced"):
        msg = f"mass must be 'partial', 'balanced' or 'unbalanced', got '{kw['mass']}'"
        raise InputError(msg)
    plasma_pf = kw["plasma_pf"]
    if plasma_pf and query_features is None:
        msg = "plasma_pf needs embeddings; pass `features` with .npy files"
        raise InputError(msg)
    epsilon = kw["epsilon"]
    if epsilon is None:
        epsilon = 1.0 / (PLASMA_PF_TEMPERATURE if plasma_pf else DEFAULT_TEMPERATURE)
    if not (np.isfinite(epsilon) and epsilon > 0):
        msg = f"epsilon must be positive and finite, got {epsilon}"
        raise InputError(msg)
    if kw["round_iter"] is None:
        kw["round_iter"] = PLASMA_PF_ITER if plasma_pf else DEFAULT_MAX_ITER
    if kw["refine"] is None:
        kw["refine"] = 0 if plasma_pf else 1
    return Options(**{**kw, "epsilon": epsilon})


@dataclass
class Round:
    """One OT round (the output of :meth:`Problem.solve`): the plan cut to the residues,
    its pairs above the threshold, their superposition (RMSD, TM-score by the query,
    rotation, translation; NaN and identity under 3 pairs), the solver's output, the
    plan's column sums, the query coverage, and ``rank_tm`` (set when starts are ranked)."""

    plan: np.ndarray
    pairs: np.ndarray
    rmsd: float
    tm: float
    rot: np.ndarray
    tr: np.ndarray
    out: object
    colsum: np.ndarray
    coverage: float
    rank_tm: float = np.nan


@dataclass
class Problem:
    """Stage 1's output, read by every later stage: the two structures, the paired
    features (``hq``, ``hc`` for the cost, ``zq``, ``zc`` for the score's cosine), the
    cosine's chance level, the solvers (``solver`` for the rounds, ``seed_solver`` for the
    quick rounds that compare starts), the options, the feature kind and the resolved
    number of fragment pairs ``n_fragments``."""

    query: Structure
    target: Structure
    hq: np.ndarray
    hc: np.ndarray
    zq: np.ndarray
    zc: np.ndarray
    chance: float
    solver: object
    seed_solver: object
    opts: Options
    kind: str
    n_fragments: int

    def geometry(self, xq: np.ndarray, xc: np.ndarray):
        """The hinge geometry between two point sets (with the slack point of partial
        transport) and its weights ``a``, ``b``."""
        from otbio.ot import PointCloud

        xq_s, xc_s, a, b = _with_slack(xq, xc, self.opts.mass == "partial")
        return PointCloud(xq_s, xc_s, cost="hinge"), a, b

    def solve(self, geom, a, b, init=None, quick: bool = False) -> Round:
        """One Sinkhorn round on ``geom`` (from the potentials ``init``; ``quick``: the
        seed solver's iteration limit): its :class:`Round`."""
        nq, nc = len(self.query), len(self.target)
        out = (self.seed_solver if quick else self.solver)(geom, a, b, init=init)
        plan = out.plan(copy=False)[:nq, :nc].copy()  # C order, writable
        pairs, colsum = _plan_pairs_colsum(plan, self.opts.threshold)  # by query, then target
        rmsd = tm = np.nan
        rot, tr = np.eye(3), np.zeros(3)
        if len(pairs) >= 3:
            q, t = self.query.ca[pairs[:, 0]], self.target.ca[pairs[:, 1]]
            rmsd, tm, rot, tr = tm_superpose(q, t, nq)
        cover = (1 + np.count_nonzero(np.diff(pairs[:, 0]))) / nq if len(pairs) else 0.0
        return Round(plan, pairs, rmsd, tm, rot, tr, out, colsum, cover)


@dataclass
class Tally:
    """What the stages count for the log and the result: Sinkhorn iterations in all and
    the refinement rounds kept."""

    n_iter: int = 0
    refined: int = 0


def pose_problem(
    query: Structure,
    target: Structure,
    query_features: Features | None,
    target_features: Features | None,
    opts: Options,
) -> Problem:
    """Stage 1, features: the geometric features (cached on the structures) or the given
    embeddings, paired and standardised (:func:`pair_features`, with the one-hot sequence
    when ``sequence_weight > 0``), the Sinkhorn solvers and the number of fragment pairs.

    Takes the structures, the optional embeddings and the :class:`Options`; returns the
    :class:`Problem`.
    """
    from otbio.ot import Sinkhorn

    fq = query_features if query_features is not None else features_of(query)
    fc = target_features if target_features is not None else features_of(target)
    sq = sc = None
    if opts.sequence_weight > 0:
        sq, sc = sequence_onehot(query), sequence_onehot(target)
    hq, hc, zq, zc = pair_features(
        fq, fc, sq=sq, sc=sc, sequence_weight=opts.sequence_weight, plasma_pf=opts.plasma_pf
    )
    solver = Sinkhorn(
        epsilon=1.0 / (1.0 / opts.epsilon),  # as 1 / temperature (bit for bit)
        relative_epsilon=None,  # 1 / temperature on the hinge cost, as in PLASMA
        epsilon_scaling=None,
        reg_m=opts.reg_m if opts.mass == "unbalanced" else None,
        tol=opts.tol * max(len(query), len(target)),
        max_iter=opts.round_iter,
        check_every=5,
        device=opts.device,
        warn=False,
    )
    # the distance rounds converge faster: fewer iterations give the same pairs
    seed_solver = dataclasses.replace(solver, max_iter=min(opts.round_iter, SEED_MAX_ITER))
    n_fragments = opts.n_fragments
    if n_fragments is None:
        n_fragments = 0 if opts.plasma_pf or opts.mass != "partial" else DEFAULT_SEEDS
    chance = 0.0 if fq.kind == "embedding" else COSINE_CHANCE
    return Problem(query, target, hq, hc, zq, zc, chance, solver, seed_solver, opts, fq.kind,
                   n_fragments)  # fmt: skip


@dataclass
class Seeds:
    """Stage 2's output: the sequence segments of both structures (None without seeds)
    and the seeded superpositions ``(tm, rotation, translation)``, best first."""

    segq: np.ndarray | None = None
    segc: np.ndarray | None = None
    cands: list = field(default_factory=list)


def seed_starts(p: Problem) -> Seeds:
    """Stage 2, seeds: ``n_fragments`` fragment pairs matched by their internal CA
    distances, superposed and extended to the whole query (:func:`fragment_seeds`).

    Takes the :class:`Problem`; returns :class:`Seeds` (empty when seeds are off)."""
    if p.n_fragments <= 0:
        return Seeds()
    segq = sequence_segments(p.query.resnum, p.query.chain)
    segc = sequence_segments(p.target.resnum, p.target.chain)
    cands = fragment_seeds(p.query.ca, p.target.ca, segq, segc, n_seeds=p.n_fragments)
    return Seeds(segq, segc, cands)


@dataclass
class Seeded:
    """The seeded answer: the best round on the distances after superposition (None when
    none gave 3 pairs) and the superposition it started from (``tm`` NaN when there was
    none: its TM-score, rotation and translation)."""

    best: Round | None = None
    tm: float = np.nan
    rot: np.ndarray | None = None
    tr: np.ndarray | None = None


def seeded_rounds(p: Problem, seeds: Seeds, tally: Tally) -> Seeded:
    """Stage 3, seeded rounds: one quick OT round on the distances after each of the
    ``SEED_STARTS`` best superpositions (under 1.5 A of noise the seed ranking, on a
    subsample with a lenient d0, can put a slightly shifted placement first), the leader
    by :func:`_rank_tm`, then ``SEED_OT_ROUNDS - 1`` further rounds from its pairs.

    Takes the :class:`Problem`, the :class:`Seeds` and the :class:`Tally` (iterations are
    added to it); returns :class:`Seeded` (empty without superpositions)."""
    if not seeds.cands:
        return Seeded()
    res = Seeded()
    for cand in seeds.cands[:SEED_STARTS]:
        other, k = _distance_rounds(p, seeds, cand[1], cand[2], rounds=1, quick=True)
        tally.n_iter += k
        if other is not None:
            other.rank_tm = _rank_tm(p.query.ca, p.target.ca, other.pairs)
        if other is not None and (res.best is None or other.rank_tm > res.best.rank_tm):
            res = Seeded(other, *cand)
    if res.best is None:
        return Seeded(None, *seeds.cands[0])
    if SEED_OT_ROUNDS > 1:
        lead = res.best
        more, k = _distance_rounds(p, seeds, lead.rot, lead.tr, rounds=SEED_OT_ROUNDS - 1,
                                   init=lead)  # fmt: skip
        tally.n_iter += k
        if more is not None and more.tm > lead.tm:
            res.best = more
    return res


def needs_local_round(seeded: Seeded) -> bool:
    """Whether the local-feature round runs: without a seeded answer (seeds off, or no seed
    fits: a motif of segments shorter than the window), or when the seeded answer is of a
    related structure but leaves residues unpaired (domains that moved: one rigid
    superposition places only one of them)."""
    best = seeded.best
    return best is None or (best.tm >= REFINE_MIN_TM and best.coverage < LOCAL_COVERAGE)


def local_round(p: Problem, tally: Tally) -> Round:
    """Stage 4, the local-feature round (PLASMA's) and up to ``refine`` rounds of
    geometric refinement, each kept only when it raises the TM-score to at least
    ``REFINE_MIN_TM``.

    Takes the :class:`Problem` and the :class:`Tally` (iterations and refinements kept are
    added to it); returns the best :class:`Round`."""
    base, a, b = p.geometry(p.hq, p.hc)
    best = p.solve(base, a, b)
    tally.n_iter += best.out.n_iter
    for _ in range(p.opts.refine):
        if not np.isfinite(best.tm):
            break  # fewer than 3 pairs: nothing to superpose on
        # coordinates after superposition, entered as (x, -x): the hinge over them is
        # refine_weight times the L1 distance between the CA atoms (A)
        xq = p.opts.refine_weight * (p.query.ca @ best.rot.T + best.tr)
        xc = p.opts.refine_weight * p.target.ca
        prev = best.out
        # the hinge is a sum over columns: the cost of [hq, xq, -xq] vs [hc, xc, -xc] is
        # the features' cost (computed in the first solve) plus that of the coordinates
        coords, _, _ = p.geometry(np.hstack([xq, -xq]), np.hstack([xc, -xc]))
        cand = p.solve(base.hstack(coords), a, b, init=(prev.f, prev.g))
        tally.n_iter += cand.out.n_iter
        # keep a refinement only when it improves the TM-score and reaches a significant
        # structural match (TM >= 0.5, the same-fold level): refining a chance
        # superposition only sharpens a forced match, and unrelated structures gain pairs
        if not (np.isfinite(cand.tm) and cand.tm > best.tm + 1e-6 and cand.tm >= REFINE_MIN_TM):
            break
        best = cand
        tally.refined += 1
    return best


def extended_rounds(p: Problem, seeds: Seeds, local: Round, tally: Tally) -> Seeded:
    """Stage 5, extension: no seed fitted, so the local round's superposition, extended to
    the whole query (:func:`extend_superposition`), starts the distance rounds.

    Takes the :class:`Problem`, the (empty) :class:`Seeds`, the local :class:`Round` (with
    a finite TM-score) and the :class:`Tally`; returns :class:`Seeded`."""
    tm, rot, tr = extend_superposition(p.query.ca, p.target.ca, local.rot, local.tr)
    best, k = _distance_rounds(p, seeds, rot, tr)
    tally.n_iter += k
    return Seeded(best, tm, rot, tr)


def keep_best(local: Round | None, seeded: Seeded) -> tuple[Round, bool]:
    """Stage 6, choice: the seeded answer when it exists and beats the local round's
    TM-score (or there is no local round, or it has no TM-score), else the local round.

    Returns the kept :class:`Round` and whether it is the seeded one."""
    s = seeded.best
    if s is not None and (local is None or not np.isfinite(local.tm) or s.tm > local.tm):
        return s, True
    return local, False


@dataclass(frozen=True)
class Scores:
    """Stage 7's output: whether the alignment settled, the plan values of the pairs,
    PLASMA's cosine, diagonal and score, the TM-score by the query (by the best
    superposition's nearest partners when there are under 3 pairs) and by the target,
    and the sequence identity."""

    settled: bool
    values: np.ndarray
    cosine: float
    diagonal: float
    score: float
    tm: float
    tm_target: float
    identity: float


def score_answer(p: Problem, best: Round, seeded: Seeded) -> Scores:
    """Stage 7, scoring of the kept round: settling (:func:`_settled`), PLASMA's score
    ``max(0, (cos - c0) / (1 - c0)) * diag`` clipped to [0, 1], the TM-score by the
    target, the sequence identity, and with under 3 pairs how close the seeded
    superposition came (:func:`nearest_tm`).

    Takes the :class:`Problem`, the kept :class:`Round` and the :class:`Seeded` answer
    (its superposition); returns :class:`Scores`."""
    q, t = p.query, p.target
    plan, pairs, out = best.plan, best.pairs, best.out
    settled = bool(out.converged) or _settled(p.solver, out, pairs, best.tm, p.opts.threshold,
                                              q.ca, t.ca)  # fmt: skip
    values = plan[pairs[:, 0], pairs[:, 1]] if len(pairs) else np.zeros(0)
    cos = _cosine(plan, p.zq, p.zc, best.colsum)
    diag = _diagonal(plan, DIAGONAL_K)
    score = float(np.clip(max(cos - p.chance, 0.0) / (1.0 - p.chance) * diag, 0.0, 1.0))
    tm, tm_t, ident = best.tm, np.nan, np.nan
    if len(pairs) >= 3:
        _, tm_t, _, _ = tm_superpose(q.ca[pairs[:, 0]], t.ca[pairs[:, 1]], len(t))
    if len(pairs):
        ident = float(np.mean(q.resname[pairs[:, 0]] == t.resname[pairs[:, 1]]))
    if not np.isfinite(tm) and np.isfinite(seeded.tm):
        # no pairs to superpose: how close the best superposition came (query d0)
        tm = nearest_tm(q.ca, t.ca, seeded.rot, seeded.tr)
    return Scores(settled, values, cos, diag, score, tm, tm_t, ident)


def sequential_rescore(p: Problem, best: Round) -> tuple[float, float]:
    """Stage 8, sequential re-scoring (with ``sequential=True``): the TM-score of the best
    TM-align-style sequential alignment (:func:`otbio.align._dp.sequential_tm`), started
    also from the kept superposition when it rests on 3 pairs or more.

    Takes the :class:`Problem` and the kept :class:`Round`; returns the TM-scores by the
    query and by the target (NaN, NaN when ``sequential`` is off)."""
    if not p.opts.sequential:
        return np.nan, np.nan
    from otbio.align._dp import sequential_tm

    # otbio's superposition is one start; its seeds add nothing beside the fragment
    # starts of sequential_tm (measured over the 300 pairs of test chains)
    starts = [(best.rot, best.tr)] if len(best.pairs) >= 3 else []
    sq = sequential_tm(p.query.ca, p.target.ca, starts)
    return sq.tm_score, sq.tm_score_target


def to_alignment(p: Problem, best: Round, kept_seeded: bool, seeded: Seeded, s: Scores,
                 seq: tuple[float, float], tally: Tally) -> Alignment:  # fmt: skip
    """Stage 9, output: log the result line and assemble the :class:`Alignment` (its
    ``params`` record the options and what was chosen).

    Takes every earlier stage's output; returns the :class:`Alignment`."""
    q, t, o = p.query, p.target, p.opts
    log.info(
        "align %s -> %s: TM-score %.3f, score %.3f, %d pairs, %d iterations, "
        "%d refinement round(s), seeded superposition %s",
        q.name, t.name, s.tm if np.isfinite(s.tm) else float("nan"), s.score, len(best.pairs),
        tally.n_iter, tally.refined, "kept" if kept_seeded else "not kept",
    )  # fmt: skip
    params = {
        "epsilon": float(o.epsilon), "threshold": o.threshold,
        "sequence_weight": o.sequence_weight, "plasma_pf": o.plasma_pf, "mass": o.mass,
        "features": p.kind, "refine": o.refine, "refined": tally.refined,
        "n_fragments": p.n_fragments, "seeded": bool(kept_seeded),
        "seed_tm": float(seeded.tm), "sequential": bool(o.sequential),
    }  # fmt: skip
    return Alignment(
        query=q, target=t, plan=best.plan, pairs=best.pairs, pair_values=s.values,
        score=s.score, cosine=s.cosine, diagonal=s.diagonal, rmsd=float(best.rmsd),
        tm_score=float(s.tm), coverage=best.coverage, rotation=best.rot, translation=best.tr,
        epsilon=1.0 / (1.0 / o.epsilon), n_iter=tally.n_iter, converged=s.settled,
        params=params, tm_score_target=float(s.tm_target), seq_identity=s.identity,
        tm_score_seq=float(seq[0]), tm_score_seq_target=float(seq[1]),
    )  # fmt: skip


def _settled(solver, out, pairs, tm, threshold, q, t) -> bool:
    """Whether the alignment settled: ``round_iter`` more Sinkhorn iterations from the final
    potentials of ``out`` give the same residue pairs, or pairs whose TM-score differs from
    ``tm`` by less than ``SETTLE_TM``."""
    nq, nc = q.shape[0], t.shape[0]
    more = solver(out.geom, out.a, out.b, init=(out.f, out.g))
    plan = np.ascontiguousarray(more.plan(copy=False)[:nq, :nc])
    again = _plan_pairs_colsum(plan, threshold)[0]
    if np.array_equal(again, pairs):
        return True
    if len(again) < 3 or not np.isfinite(tm):
        return len(again) < 3 and not np.isfinite(tm)
    tm_again = tm_superpose(q[again[:, 0]], t[again[:, 1]], nq)[1]
    return bool(abs(tm_again - tm) < SETTLE_TM)


def _rank_tm(q: np.ndarray, t: np.ndarray, pairs: np.ndarray) -> float:
    """TM-score of the pairs (by the query length) with d0 at least ``RANK_D0`` A: the
    starts are compared with it, since the d0 of a short motif (0.5 A up to 21 residues)
    would rank them by the coordinate noise."""
    nq = q.shape[0]
    x = np.ascontiguousarray(q[pairs[:, 0]])
    y = np.ascontiguousarray(t[pairs[:, 1]])
    return float(_tm_superpose(x, y, float(nq), max(tm_d0(nq), RANK_D0), 6)[1])


def _distance_rounds(p: Problem, seeds: Seeds, rot, tr, *, rounds=None, init=None,
                     quick=False):  # fmt: skip
    """Up to ``rounds`` (default ``SEED_OT_ROUNDS``) OT rounds on the distances after the
    superposition (``rot``, ``tr``), each round from the previous round's pairs (the first
    from the potentials of the round ``init`` if given), while the TM-score rises: the best
    :class:`Round` (or None when no round gave 3 pairs) and the iterations run. ``quick``:
    at most ``SEED_MAX_ITER`` Sinkhorn iterations per round (the rounds that compare the
    starts)."""
    q, t = p.query, p.target
    best = None
    n_iter = 0
    for _round in range(SEED_OT_ROUNDS if rounds is None else rounds):
        prev = best if best is not None else init
        geom = _distance_geometry(q.ca @ rot.T + tr, t.ca, seeds.segq, seeds.segc,
                                  p.opts.refine_weight)  # fmt: skip
        nxt = p.solve(geom, *_dustbin_weights(len(q), len(t)),
                      init=None if prev is None else (prev.out.f, prev.out.g), quick=quick)  # fmt: skip
        n_iter += nxt.out.n_iter
        if not np.isfinite(nxt.tm) or (best is not None and nxt.tm <= best.tm):
            break
        best = nxt
        rot, tr = best.rot, best.tr
    return best, n_iter
