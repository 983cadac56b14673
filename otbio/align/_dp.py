"""Sequential TM-score: the best TM-align-style alignment by iterated dynamic programming.

otbio's alignment is free of sequence order (motifs whose segments come in any order still
align). Over unrelated chains that freedom finds superpositions and pairings that no
sequential aligner would, so its TM-score ranks pairs differently from TM-align's. This
module computes, beside it, the TM-score of the best *sequential* alignment, following the
recipe of TM-align (Zhang & Skolnick 2005, Nucleic Acids Res. 33, 2302), written from the
paper:

1. initial superpositions: gapless threading of the query along the target (the best few
   offsets); local superpositions of query fragments of 20 residues onto target fragments
   (Kabsch), the best few by a banded sequential proxy (each query residue's best TM term
   within 10 residues of its place on the fragments' diagonal); and superpositions given
   by the caller (otbio's final one);
2. from each, one round: score matrix ``S_ij = 1 / (1 + d_ij^2 / d0^2)`` between the
   superposed CA atoms, Needleman-Wunsch with a gap-opening penalty of -0.6 (no extension
   penalty, free end gaps), then the superposition that maximises the TM-score of the
   aligned pairs (Kabsch on the pairs within a distance cut, iterated); this first round
   on every second residue of both chains (a quarter of the cells), to rank the starts;
3. from the best few, rounds on every residue until the alignment stops changing or the
   TM-score stops rising;
4. the best alignment is scored with d0 of the query length (normalised by the query) and
   of the target length (normalised by the target), each with its own TM-score-maximising
   superposition (Kabsch from the whole alignment and from its halves, then the cut
   iterations).

Every step is a serial Numba kernel: the DP is O(L_q L_t) per iteration, the superposition
search O(L) per Kabsch. The order-free alignment is not changed by any of this.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from otbio.align._superpose import _distances, _kabsch, tm_d0

__all__ = ["SequentialTM", "sequential_tm"]

#: Gap-opening penalty of the DP (TM-align's); gap extension is free.
GAP_OPEN = -0.6
#: Gapless threading: offsets tried (every ``THREAD_STRIDE``-th), the fewest residues the
#: chains must overlap, cut iterations of each offset's superposition, and the offsets
#: kept as starts (the best by TM-score).
THREAD_STRIDE = 3
MIN_OVERLAP = 8
THREAD_ITER = 1
N_THREAD = 6
#: Local fragment superpositions: fragment length (starts half a fragment apart on both
#: chains), half-width of the band of the proxy that ranks them, every ``FRAG_STEP``-th
#: query residue in that proxy, and the fragment pairs kept as starts.
FRAG_LEN = 20
FRAG_BAND = 10
FRAG_STEP = 2
N_FRAG = 8
#: Every start gets one DP round on every ``COARSE``-th residue; the ``N_KEEP`` best
#: continue on every residue, up to ``MAX_ROUNDS`` rounds, while the TM-score rises and
#: the alignment changes.
COARSE = 2
COARSE_MIN = 40  # residues of the shorter chain below which every residue is used
N_KEEP = 3
MAX_ROUNDS = 4
#: Added to d0 in the DP's score matrix (lenient while searching, as TM-align searches).
SEARCH_D0_EXTRA = 0.8
#: The superposition search over aligned pairs: the distance cut (A) starts at d0 clipped
#: to [CUT_MIN, CUT_MAX]; at most CUT_ITER iterations from each start; starts from the
#: whole alignment and from fragments of 1/2, 1/4, ... of it: SEARCH_LEVELS lengths while
#: iterating (1: the whole alignment only), FINAL_LEVELS for the reported scores.
CUT_MIN, CUT_MAX = 4.5, 8.0
CUT_ITER = 20
SEARCH_LEVELS = 1
FINAL_LEVELS = 2


class SequentialTM:
    """Result of :func:`sequential_tm`.

    Attributes
    ----------
    tm_score, tm_score_target
        TM-score of the best sequential alignment normalised by the query length (d0 of the
        query) and by the target length (d0 of the target).
    aln
        (L_q,) target residue aligned to each query residue, -1 where none.
    rotation, translation
        Superposition of the query onto the target (``x @ rotation.T + translation``) that
        gives ``tm_score``.
    """

    __slots__ = ("aln", "rotation", "tm_score", "tm_score_target", "translation")

    def __init__(self, tm_score, tm_score_target, aln, rotation, translation):
        self.tm_score = tm_score
        self.tm_score_target = tm_score_target
        self.aln = aln
        self.rotation = rotation
        self.translation = translation

    @property
    def pairs(self) -> np.ndarray:
        i = np.flatnonzero(self.aln >= 0)
        return np.stack([i, self.aln[i]], axis=1)


@njit(cache=True, nogil=True, fastmath=True)
def _nw(score, gap, trace, aln):
    """Needleman-Wunsch on the (L_q, L_t) ``score`` matrix with gap opening ``gap``
    (extension free) and free end gaps (three states, Gotoh); the alignment goes to ``aln``
    (target index per query residue, -1 for a gap). ``trace``: (L_q + 1, L_t + 1) uint8
    work array. Returns the alignment's score."""
    n, m = score.shape
    ninf = -1e30
    m_prev = np.zeros(m + 1)  # state M: i and j aligned
    x_prev = np.full(m + 1, ninf)  # state X: query residue i in a gap
    y_prev = np.full(m + 1, ninf)  # state Y: target residue j in a gap
    m_cur = np.empty(m + 1)
    x_cur = np.empty(m + 1)
    y_cur = np.empty(m + 1)
    best = 0.0
    bi = 0
    bj = 0
    for i in range(1, n + 1):
        row = score[i - 1]
        m_cur[0] = 0.0
        x_cur[0] = ninf
        y_cur[0] = ninf
        for j in range(1, m + 1):
            s = row[j - 1]
            # M from the diagonal cell's best state (bits 0-1)
            a = m_prev[j - 1]
            src = 0
            if x_prev[j - 1] > a:
                a = x_prev[j - 1]
                src = 1
            if y_prev[j - 1] > a:
                a = y_prev[j - 1]
                src = 2
            mv = a + s
            # X from the cell above (bits 2-3): open from M or Y, extend X
            b = m_prev[j] + gap
            sx = 0
            if x_prev[j] > b:
                b = x_prev[j]
                sx = 1
            if y_prev[j] + gap > b:
                b = y_prev[j] + gap
                sx = 2
            # Y from the cell to the left (bits 4-5): open from M or X, extend Y
            c = m_cur[j - 1] + gap
            sy = 0
            if x_cur[j - 1] + gap > c:
                c = x_cur[j - 1] + gap
                sy = 1
            if y_cur[j - 1] > c:
                c = y_cur[j - 1]
                sy = 2
            m_cur[j] = mv
            x_cur[j] = b
            y_cur[j] = c
            trace[i, j] = src | (sx << 2) | (sy << 4)
            if mv > best:  # free end gaps: the alignment may end at any matched cell
                best = mv
                bi = i
                bj = j
        m_prev, m_cur = m_cur, m_prev
        x_prev, x_cur = x_cur, x_prev
        y_prev, y_cur = y_cur, y_prev
    for k in range(n):
        aln[k] = -1
    i = bi
    j = bj
    state = 0
    while i > 0 and j > 0:
        code = trace[i, j]
        if state == 0:
            aln[i - 1] = j - 1
            state = code & 3
            i -= 1
            j -= 1
        elif state == 1:
            state = (code >> 2) & 3
            i -= 1
        else:
            state = (code >> 4) & 3
            j -= 1
    return best


@njit(cache=True, nogil=True, fastmath=True)
def _tm_matrix(xq, t, inv_d02, out):
    """``out[i, j] = 1 / (1 + |xq_i - t_j|^2 inv_d02)``: the DP's score of superposed atoms."""
    for i in range(xq.shape[0]):
        qx = xq[i, 0]
        qy = xq[i, 1]
        qz = xq[i, 2]
        for j in range(t.shape[0]):
            dx = qx - t[j, 0]
            dy = qy - t[j, 1]
            dz = qz - t[j, 2]
            out[i, j] = 1.0 / (1.0 + (dx * dx + dy * dy + dz * dz) * inv_d02)


@njit(cache=True, nogil=True)
def _gather(q, t, aln, x, y):
    """The aligned pairs' coordinates into ``x``, ``y``; returns their number."""
    k = 0
    for i in range(aln.shape[0]):
        j = aln[i]
        if j >= 0:
            for a in range(3):
                x[k, a] = q[i, a]
                y[k, a] = t[j, a]
            k += 1
    return k


@njit(cache=True, nogil=True)
def _tm_search(x, y, n, d0, cut0, lnorm, min_frag, max_levels, n_iter, w, d, sel):
    """Superposition of the first ``n`` pairs ``x[k] -> y[k]`` maximising their TM-score
    (scale ``d0``, divided by ``lnorm``): Kabsch on the whole alignment and on fragments
    of n/2, n/4, ... consecutive pairs (down to ``min_frag``, at most ``max_levels``
    lengths, half-overlapping), each followed by Kabsch on the pairs within a distance cut
    (``cut0``, raised by 0.5 A while fewer than 3 pairs pass) until that set stops
    changing. ``w, d, sel``: work arrays of length >= n. Returns (tm, R, t)."""
    best_tm = -1.0
    best_r = np.eye(3)
    best_t = np.zeros(3)
    if n < 3:
        return 0.0, best_r, best_t
    inv = 1.0 / (d0 * d0)
    flen = n
    level = 0
    while level < max_levels:
        step = max(1, flen // 2)
        start = 0
        while True:
            if start + flen > n:
                start = n - flen
            for k in range(n):
                w[k] = 0.0
                sel[k] = 0
            for k in range(start, start + flen):
                w[k] = 1.0 / flen
            # compare only the Kabsch inputs (x[:n], y[:n]); w is zero beyond
            r, tr = _kabsch(x[:n], y[:n], w[:n])
            for it in range(n_iter + 1):
                _distances(x[:n], y[:n], r, tr, d[:n])
                tm = 0.0
                for k in range(n):
                    tm += 1.0 / (1.0 + d[k] * d[k] * inv)
                tm /= lnorm
                if tm > best_tm:
                    best_tm = tm
                    best_r = r
                    best_t = tr
                if it == n_iter:
                    break
                cut = cut0
                cnt = 0
                while True:
                    cnt = 0
                    for k in range(n):
                        if d[k] < cut:
                            cnt += 1
                    if cnt >= 3 or cut > 1e3:
                        break
                    cut += 0.5
                changed = False
                for k in range(n):
                    s = 1 if d[k] < cut else 0
                    if s != sel[k]:
                        changed = True
                    sel[k] = s
                if not changed:
                    break
                for k in range(n):
                    w[k] = sel[k] / cnt
                r, tr = _kabsch(x[:n], y[:n], w[:n])
            if start + flen >= n:
                break
            start += step
        if flen <= min_frag:
            break
        flen = max(min_frag, flen // 2)
        level += 1
    return best_tm, best_r, best_t


@njit(cache=True, nogil=True)
def _threading(q, t, n_keep, min_overlap, stride, d0, cut0, lnorm, thread_iter, x, y, w, d, sel):
    """Gapless threading: query residue i on target residue i + k for every offset k with
    at least ``min_overlap`` residues in common; each offset's superposition from Kabsch on
    all overlapping pairs plus the cut iterations (no fragments). Returns the ``n_keep``
    best offsets' rotations and translations (fewer if fewer offsets)."""
    n = q.shape[0]
    m = t.shape[0]
    lo = -(n - min_overlap)
    hi = m - min_overlap
    n_off = max(0, hi - lo + 1)
    tms = np.full(n_off, -1.0)
    rs = np.zeros((n_off, 3, 3))
    ts = np.zeros((n_off, 3))
    for o in range(0, n_off, stride):
        k = lo + o
        i0 = max(0, -k)
        i1 = min(n, m - k)
        cnt = i1 - i0
        if cnt < 3:
            continue
        for c in range(cnt):
            for a in range(3):
                x[c, a] = q[i0 + c, a]
                y[c, a] = t[i0 + c + k, a]
        tm, r, tr = _tm_search(x, y, cnt, d0, cut0, lnorm, cnt, 1, thread_iter, w, d, sel)
        tms[o] = tm
        rs[o] = r
        ts[o] = tr
    done = np.flatnonzero(tms >= 0.0)  # the offsets tried
    order = done[np.argsort(-tms[done])][:n_keep]
    return rs[order], ts[order], tms[order]


@njit(cache=True, nogil=True, fastmath=True)
def _fragment_starts(q, t, flen, jump, band, n_keep, inv_d02, step):
    """Local superpositions: every query fragment of ``flen`` residues (starts ``jump``
    apart) onto every target fragment (the same), by Kabsch; each ranked by a banded
    sequential proxy: for every query residue i, the best TM term over the target residues
    within ``band`` of i's place on the fragments' diagonal. Returns the ``n_keep`` best
    rotations and translations."""
    n = q.shape[0]
    m = t.shape[0]
    ni = (n - flen) // jump + 1
    nj = (m - flen) // jump + 1
    if ni <= 0 or nj <= 0:
        return np.zeros((0, 3, 3)), np.zeros((0, 3))
    uni = np.full(flen, 1.0 / flen)
    tot = ni * nj
    scores = np.full(tot, -1.0)
    rs = np.empty((tot, 3, 3))
    ts = np.empty((tot, 3))
    for a in range(ni):
        i0 = a * jump
        for b in range(nj):
            j0 = b * jump
            r, tr = _kabsch(q[i0 : i0 + flen], t[j0 : j0 + flen], uni)
            off = j0 - i0
            sc = 0.0
            for i in range(0, n, step):
                px = r[0, 0] * q[i, 0] + r[0, 1] * q[i, 1] + r[0, 2] * q[i, 2] + tr[0]
                py = r[1, 0] * q[i, 0] + r[1, 1] * q[i, 1] + r[1, 2] * q[i, 2] + tr[1]
                pz = r[2, 0] * q[i, 0] + r[2, 1] * q[i, 1] + r[2, 2] * q[i, 2] + tr[2]
                lo = max(0, i + off - band)
                hi = min(m, i + off + band + 1)
                bst = 0.0
                for j in range(lo, hi):
                    dx = px - t[j, 0]
                    dy = py - t[j, 1]
                    dz = pz - t[j, 2]
                    v = 1.0 / (1.0 + (dx * dx + dy * dy + dz * dz) * inv_d02)
                    bst = v if v > bst else bst
                sc += bst
            k = a * nj + b
            scores[k] = sc
            rs[k] = r
            ts[k] = tr
    order = np.argsort(-scores)[:n_keep]
    return rs[order], ts[order]


@njit(cache=True, nogil=True)
def _round(q, t, r, tr, inv_dp, gap, d0, cut0, lnorm, min_frag, max_levels, n_iter, work):
    """One DP round from the superposition (r, tr): the alignment goes to ``work[1]``;
    returns the TM-score of the aligned pairs and its superposition."""
    trace, aln, xq, x, y, w, d, sel, score = work
    n = q.shape[0]
    for i in range(n):
        for a in range(3):
            xq[i, a] = r[a, 0] * q[i, 0] + r[a, 1] * q[i, 1] + r[a, 2] * q[i, 2] + tr[a]
    _tm_matrix(xq, t, inv_dp, score)
    _nw(score, gap, trace, aln)
    cnt = _gather(q, t, aln, x, y)
    return _tm_search(x, y, cnt, d0, cut0, lnorm, min_frag, max_levels, n_iter, w, d, sel)


@njit(cache=True, nogil=True)
def _work(n, m):
    """Work arrays of :func:`_round` for L_q = n, L_t = m."""
    nn = min(n, m)
    return (
        np.zeros((n + 1, m + 1), dtype=np.uint8), np.empty(n, dtype=np.int64),
        np.empty((n, 3)), np.empty((nn, 3)), np.empty((nn, 3)), np.empty(nn), np.empty(nn),
        np.zeros(nn, dtype=np.int64), np.empty((n, m)),
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _iterate(q, t, rots, trs, n_keep, d0, d0_dp, cut0, lnorm, gap, max_rounds, min_frag,
             max_levels, n_iter, coarse):  # fmt: skip
    """From every start superposition one DP round (DP -> TM-score superposition of the
    aligned pairs), on every ``coarse``-th residue of both chains when ``coarse`` > 1 (a
    quarter of the cells at 2); from the ``n_keep`` best, rounds on all residues while the
    TM-score rises and the alignment changes. Returns the best alignment (target index
    per query residue), its TM-score (scale ``d0``, by ``lnorm``) and its superposition."""
    n = q.shape[0]
    inv_dp = 1.0 / (d0_dp * d0_dp)
    n_start = rots.shape[0]
    tms = np.empty(n_start)
    rs = np.empty((n_start, 3, 3))
    ts = np.empty((n_start, 3))
    qc = np.ascontiguousarray(q[::coarse])
    tc = np.ascontiguousarray(t[::coarse])
    work = _work(qc.shape[0], tc.shape[0])
    alns = np.full((n_start, n), -2, dtype=np.int64)
    for s in range(n_start):
        tm, r2, t2 = _round(qc, tc, rots[s], trs[s], inv_dp, gap, d0, cut0, lnorm, min_frag,
                            max_levels, n_iter, work)  # fmt: skip
        tms[s] = tm
        rs[s] = r2 if tm > 0.0 else rots[s]  # fewer than 3 pairs: keep the start
        ts[s] = t2 if tm > 0.0 else trs[s]
        if coarse == 1:
            alns[s] = work[1]
    order = np.argsort(-tms)
    work = work if coarse == 1 else _work(n, t.shape[0])
    aln = work[1]
    best_tm = -1.0
    best_r = np.eye(3)
    best_t = np.zeros(3)
    best_aln = np.full(n, -1, dtype=np.int64)
    if coarse == 1:  # the first round was on every residue already
        best = order[0]
        best_tm = tms[best]
        best_r = rs[best].copy()
        best_t = ts[best].copy()
        best_aln[:] = alns[best]
    for k in range(min(n_keep, n_start)):
        s = order[k]
        r = rs[s]
        tr = ts[s]
        local = tms[s] if coarse == 1 else -1.0
        prev = alns[s]
        for _ in range(max_rounds - 1 if coarse == 1 else max_rounds):
            tm, r2, t2 = _round(q, t, r, tr, inv_dp, gap, d0, cut0, lnorm, min_frag,
                                max_levels, n_iter, work)  # fmt: skip
            same = True
            for i in range(n):
                if aln[i] != prev[i]:
                    same = False
                    break
            if tm > best_tm:
                best_tm = tm
                best_r = r2
                best_t = t2
                best_aln[:] = aln
            if same or tm <= local + 1e-6:
                break
            local = tm
            r = r2
            tr = t2
            prev[:] = aln
    return best_aln, best_tm, best_r, best_t


def _cut0(d0: float) -> float:
    return float(min(CUT_MAX, max(CUT_MIN, d0)))


def sequential_tm(
    q: np.ndarray,
    t: np.ndarray,
    starts: list[tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    n_thread: int | None = None,
    max_rounds: int | None = None,
    gap: float = GAP_OPEN,
) -> SequentialTM:
    """TM-score of the best sequential (TM-align-style) alignment of the CA atoms ``q``
    (query) onto ``t`` (target).

    Parameters
    ----------
    q, t
        (L_q, 3) and (L_t, 3) CA coordinates.
    starts
        Initial superpositions ``(R, t)`` of the query onto the target (e.g. otbio's
        final one), tried besides the ``n_thread`` best gapless threadings and the best
        local fragment superpositions.
    n_thread
        Gapless threading offsets used as starts.
    max_rounds
        DP + superposition rounds from each start (at most).
    gap
        Gap-opening penalty of the DP (TM-align's -0.6; extension is free).

    Returns
    -------
    SequentialTM
        TM-scores normalised by the query and by the target, the alignment and the
        superposition. With fewer than 3 residues on either side both scores are 0.
    """
    n_thread = N_THREAD if n_thread is None else n_thread
    max_rounds = MAX_ROUNDS if max_rounds is None else max_rounds
    q = np.ascontiguousarray(q, dtype=np.float64)
    t = np.ascontiguousarray(t, dtype=np.float64)
    nq, nt = q.shape[0], t.shape[0]
    if nq < 3 or nt < 3:
        return SequentialTM(0.0, 0.0, np.full(nq, -1, dtype=np.int64), np.eye(3), np.zeros(3))
    lmin = min(nq, nt)
    # search scale: the shorter chain's d0 (TM-align searches by the shorter chain)
    d0s = tm_d0(lmin)
    cut = _cut0(d0s)
    nn = lmin
    x, y = np.empty((nn, 3)), np.empty((nn, 3))
    w, d, sel = np.empty(nn), np.empty(nn), np.zeros(nn, dtype=np.int64)
    rs, ts, _ = _threading(
        q, t, n_thread, min(MIN_OVERLAP, lmin), THREAD_STRIDE, d0s, cut, float(lmin),
        THREAD_ITER, x, y, w, d, sel,
    )  # fmt: skip
    rots = list(rs)
    trs = list(ts)
    if N_FRAG > 0:
        fl = min(FRAG_LEN, lmin)
        fr, ft = _fragment_starts(
            q, t, fl, max(1, fl // 2), FRAG_BAND, N_FRAG, 1.0 / (d0s * d0s), FRAG_STEP
        )
        rots += list(fr)
        trs += list(ft)
    for r, tr in starts or ():
        rots.append(np.asarray(r, dtype=np.float64))
        trs.append(np.asarray(tr, dtype=np.float64))
    rots_a = np.ascontiguousarray(np.array(rots).reshape(-1, 3, 3))
    trs_a = np.ascontiguousarray(np.array(trs).reshape(-1, 3))
    min_frag = min(lmin, 8)
    aln, _, _, _ = _iterate(
        q, t, rots_a, trs_a, N_KEEP, d0s, d0s + SEARCH_D0_EXTRA, cut, float(lmin),
        float(gap), int(max_rounds), min_frag, SEARCH_LEVELS, CUT_ITER,
        COARSE if lmin >= COARSE_MIN else 1,
    )  # fmt: skip
    # final scores: d0 and normalisation of the query, then of the target, each with a
    # fuller superposition search over the best alignment
    cnt = _gather(q, t, aln, x, y)
    out = []
    for length in (nq, nt):
        d0 = tm_d0(length)
        args = (cnt, d0, _cut0(d0), float(length), min(cnt, 4), FINAL_LEVELS, CUT_ITER)
        out.append(_tm_search(x, y, *args, w, d, sel))
    (tm_q, r_q, t_q), (tm_t, _, _) = out
    return SequentialTM(float(tm_q), float(tm_t), aln, r_q, t_q)
