"""Seeded superpositions: fragment pairs -> Kabsch -> iterated TM-weighted superposition.

The local residue features of the first OT round are fragile under coordinate noise (a
motif cut out of a chain and moved by 0.4 A of noise loses its pairs). The global geometry
is robust: as TM-align (Zhang & Skolnick 2005) and Foldseek seed their alignments, short
fragments of the query (windows of ``w`` consecutive residues) are compared with every
window of the target by their internal CA distance matrices; the best-matching fragment
pairs are superposed (Kabsch), and each superposition is extended to the whole query by
iterating: nearest target residue of every superposed query residue, TM-score weights
``1 / (1 + (d / d0)^2)``, weighted Kabsch. The fragments may come from any part of the
query and land anywhere in the target, so the seeds are free of sequence order (swapped
segments, circular permutations). The best superposition then sets the cost of the final
OT round (distances after superposition), see :func:`otbio.align.align`.

Everything is one serial Numba kernel per step; a seed costs O(L_q L_t) per iteration.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from otbio.align._superpose import _kabsch

__all__ = [
    "extend_superposition",
    "fragment_seeds",
    "nearest_tm",
    "sequence_segments",
    "tm_d0_search",
]

#: Fragment length (residues) and query stride of the seed search.
WINDOW = 12
STRIDE = 2
#: Most query windows compared (long queries: spread evenly), and most query residues used
#: to screen the seeds before the best are extended on the whole query.
MAX_QUERY_WINDOWS = 32
SCREEN_RESIDUES = 40
#: Most query residues used to extend the best seeds (the extension ranks them: on too
#: sparse a subsample, a seed offset by one repeat of a repetitive fold can win).
EXTEND_RESIDUES = 80
#: Extension rounds of every seed before the best are chosen (0: the fragment superposition
#: itself is scored; as good at 1.5 A of noise and faster).
SCREEN_ITER = 0
#: Smallest sequence separation of the intra-fragment distances compared (i, i + 3 and up).
MIN_SEPARATION = 3
#: Smallest d0 (A) of the TM-score that ranks the seeds: the d0 of a short motif (0.5 A
#: up to 21 residues) would rank superpositions by their coordinate noise.
RANK_D0 = 3.0


def tm_d0_search(length: int) -> float:
    """TM-align's search scale: d0 of the TM-score clipped to [4.5, 8] A (lenient weights
    while the superposition is still rough)."""
    d0 = 1.24 * max(length - 15, 1) ** (1.0 / 3.0) - 1.8
    return float(min(8.0, max(4.5, d0)))


@njit(cache=True, nogil=True)
def _window_starts(seg, w, stride):
    """Starts of the windows of ``w`` residues inside one segment, every ``stride``-th
    (and the last window of each segment)."""
    n = seg.shape[0]
    out = np.empty(n, dtype=np.int64)
    k = 0
    i = 0
    while i + w <= n:
        if seg[i] == seg[i + w - 1]:
            out[k] = i
            k += 1
            # the last window of this segment, if the stride would skip it
            nxt = i + stride
            if nxt + w > n or seg[nxt + w - 1] != seg[i]:
                j = i + 1
                while j + w <= n and seg[j + w - 1] == seg[i]:
                    j += 1
                last = j - 1
                if last > i:
                    out[k] = last
                    k += 1
                # jump to the next segment
                i = last + 1
                while i < n and seg[i] == seg[i - 1]:
                    i += 1
                continue
            i = nxt
        else:
            i += 1
    return out[:k]


@njit(cache=True, nogil=True)
def _signatures(ca, starts, w, sep):
    """Intra-window CA distances ``|x_a - x_b|`` for ``b - a >= sep`` (one row per window)."""
    p = 0
    for a in range(w):
        p += max(0, w - a - sep)
    out = np.empty((starts.shape[0], p))
    for k in range(starts.shape[0]):
        s = starts[k]
        c = 0
        for a in range(w):
            for b in range(a + sep, w):
                dx = ca[s + a, 0] - ca[s + b, 0]
                dy = ca[s + a, 1] - ca[s + b, 1]
                dz = ca[s + a, 2] - ca[s + b, 2]
                out[k, c] = np.sqrt(dx * dx + dy * dy + dz * dz)
                c += 1
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _best_fragment_pairs(sq, st, per_query):
    """For each query window, the ``per_query`` target windows of smallest mean absolute
    difference of signatures: (n_q * per_query,) differences and target window indices."""
    nq, p = sq.shape
    nt = st.shape[0]
    best_d = np.full((nq, per_query), np.inf)
    best_j = np.full((nq, per_query), -1, dtype=np.int64)
    for i in range(nq):
        for j in range(nt):
            s = 0.0
            for c in range(p):
                s += abs(sq[i, c] - st[j, c])
            s /= p
            if s < best_d[i, per_query - 1]:
                k = per_query - 1
                while k > 0 and best_d[i, k - 1] > s:
                    best_d[i, k] = best_d[i, k - 1]
                    best_j[i, k] = best_j[i, k - 1]
                    k -= 1
                best_d[i, k] = s
                best_j[i, k] = j
    return best_d, best_j


@njit(cache=True, nogil=True, fastmath=True)
def _nearest(xq, tt, r, tr, d_out, j_out):
    """Nearest target residue of every superposed query residue (distance and index): a
    branch-free minimum over the target (``tt``: coordinates as (3, L_t) rows)."""
    nq = xq.shape[0]
    nt = tt.shape[1]
    tx = tt[0]
    ty = tt[1]
    tz = tt[2]
    for i in range(nq):
        px = r[0, 0] * xq[i, 0] + r[0, 1] * xq[i, 1] + r[0, 2] * xq[i, 2] + tr[0]
        py = r[1, 0] * xq[i, 0] + r[1, 1] * xq[i, 1] + r[1, 2] * xq[i, 2] + tr[1]
        pz = r[2, 0] * xq[i, 0] + r[2, 1] * xq[i, 1] + r[2, 2] * xq[i, 2] + tr[2]
        best = np.inf
        bj = 0
        for j in range(nt):
            dx = px - tx[j]
            dy = py - ty[j]
            dz = pz - tz[j]
            s = dx * dx + dy * dy + dz * dz
            closer = s < best
            best = s if closer else best
            bj = j if closer else bj
        d_out[i] = np.sqrt(best)
        j_out[i] = bj


@njit(cache=True, nogil=True)
def _extend(q, t, tt, r, tr, d0s, d0, n_iter):
    """:func:`_extend_work` with its own work arrays."""
    nq = q.shape[0]
    return _extend_work(
        q, t, tt, r, tr, d0s, d0, n_iter, np.empty(nq), np.empty(nq, dtype=np.int64),
        np.empty((nq, 3)), np.empty(nq), np.empty(t.shape[0]),
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _extend_work(q, t, tt, r, tr, d0s, d0, n_iter, d, jn, y, w, claim):
    """Iterate nearest partners -> TM weights -> weighted Kabsch from (r, tr); returns the
    best superposition seen and its nearest-partner TM-score (scale ``d0``, by L_q).
    ``d, jn, y, w, claim`` are work arrays (L_q, L_q, (L_q, 3), L_q, L_t)."""
    nq = q.shape[0]
    best_tm = -1.0
    best_r = r
    best_t = tr
    inv0 = 1.0 / (d0 * d0)
    inv_s = 1.0 / (d0s * d0s)
    for it in range(n_iter + 1):
        _nearest(q, tt, r, tr, d, jn)
        # one target residue counts once: the closest query residue claims it
        for i in range(nq):
            claim[jn[i]] = np.inf
        for i in range(nq):
            if d[i] < claim[jn[i]]:
                claim[jn[i]] = d[i]
        tm = 0.0
        for i in range(nq):
            if d[i] <= claim[jn[i]]:
                tm += 1.0 / (1.0 + d[i] * d[i] * inv0)
        tm /= nq
        if tm > best_tm + 1e-9:
            best_tm, best_r, best_t = tm, r, tr
        elif it > 0:
            break
        if it == n_iter:
            break
        tot = 0.0
        for i in range(nq):
            w[i] = 1.0 / (1.0 + d[i] * d[i] * inv_s)
            tot += w[i]
            for k in range(3):
                y[i, k] = t[jn[i], k]
        for i in range(nq):
            w[i] /= tot
        r, tr = _kabsch(q, y, w)
    return best_tm, best_r, best_t


@njit(cache=True, nogil=True)
def _seed_search(
    q,
    qsub,
    qext,
    t,
    qstarts,
    tstarts,
    best_d,
    best_j,
    w,
    n_seeds,
    n_keep,
    d0s,
    d0,
    n_iter,
    screen_iter,
):
    """Superpose the ``n_seeds`` best fragment pairs, extend each by ``screen_iter`` rounds, then extend
    the ``n_keep`` best up to ``n_iter`` rounds, all on the query residues ``qsub`` (an
    even subsample of long queries; the OT round that follows uses every residue);
    returns their TM-scores, rotations, translations."""
    nq_w, per = best_d.shape
    flat = best_d.reshape(-1)
    order = np.argsort(flat)
    n = min(n_seeds, order.shape[0])
    tms = np.full(n, -1.0)
    rs = np.zeros((n, 3, 3))
    ts = np.zeros((n, 3))
    uni = np.full(w, 1.0 / w)
    tt = np.ascontiguousarray(t.T)
    ns = qsub.shape[0]
    wd = np.empty(ns)
    wj = np.empty(ns, dtype=np.int64)
    wy = np.empty((ns, 3))
    ww = np.empty(ns)
    wc = np.empty(t.shape[0])
    m = 0
    for k in range(order.shape[0]):
        if m >= n:
            break
        idx = order[k]
        if not np.isfinite(flat[idx]):
            break
        qi = qstarts[idx // per]
        tj = tstarts[best_j[idx // per, idx % per]]
        r, tr = _kabsch(q[qi : qi + w], t[tj : tj + w], uni)
        tm, r, tr = _extend_work(qsub, t, tt, r, tr, d0s, d0, screen_iter, wd, wj, wy, ww, wc)
        tms[m] = tm
        rs[m] = r
        ts[m] = tr
        m += 1
    tms = tms[:m]
    rs = rs[:m]
    ts = ts[:m]
    top = np.argsort(-tms)[: min(n_keep, m)]
    ne = qext.shape[0]
    wd = np.empty(ne)
    wj = np.empty(ne, dtype=np.int64)
    wy = np.empty((ne, 3))
    ww = np.empty(ne)
    out_tm = np.empty(top.shape[0])
    out_r = np.empty((top.shape[0], 3, 3))
    out_t = np.empty((top.shape[0], 3))
    for k in range(top.shape[0]):
        tm, r, tr = _extend_work(
            qext, t, tt, rs[top[k]], ts[top[k]], d0s, d0, n_iter, wd, wj, wy, ww, wc
        )
        out_tm[k] = tm
        out_r[k] = r
        out_t[k] = tr
    return out_tm, out_r, out_t


def fragment_seeds(
    q: np.ndarray,
    t: np.ndarray,
    qseg: np.ndarray,
    tseg: np.ndarray,
    *,
    n_seeds: int = 32,
    n_keep: int = 4,
    per_query: int = 2,
    n_iter: int = 6,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Candidate superpositions of the query CA atoms ``q`` onto the target's ``t``.

    Windows of ``WINDOW`` residues (every ``STRIDE``-th in the query, every one in the
    target, never across a chain break: ``qseg``, ``tseg`` are segment ids) are compared by
    their internal distances; for each query window the ``per_query`` closest target windows
    are candidates, the ``n_seeds`` closest candidates overall are superposed and extended
    one round, and the ``n_keep`` best are extended up to ``n_iter`` rounds.

    Returns
    -------
    list of (tm, R, t)
        Best first: the nearest-partner TM-score (query-normalised, d0 of the query length)
        and the superposition ``x @ R.T + t``.
    """
    nq = q.shape[0]
    w = min(WINDOW, nq, t.shape[0])
    if w < 4:
        return []
    q = np.ascontiguousarray(q, dtype=np.float64)
    t = np.ascontiguousarray(t, dtype=np.float64)
    qstarts = _window_starts(np.ascontiguousarray(qseg, dtype=np.int64), w, STRIDE)
    if qstarts.size > MAX_QUERY_WINDOWS:  # long queries: evenly spread windows
        qstarts = qstarts[np.linspace(0, qstarts.size - 1, MAX_QUERY_WINDOWS).astype(int)]
    tstarts = _window_starts(np.ascontiguousarray(tseg, dtype=np.int64), w, 1)
    if qstarts.size == 0 or tstarts.size == 0:
        return []
    sep = min(MIN_SEPARATION, w - 1)
    sq = _signatures(q, qstarts, w, sep)
    st = _signatures(t, tstarts, w, sep)
    best_d, best_j = _best_fragment_pairs(sq, st, min(per_query, tstarts.size))
    from otbio.align._superpose import tm_d0

    qsub = np.ascontiguousarray(q[:: -(-nq // SCREEN_RESIDUES)])
    qext = np.ascontiguousarray(q[:: -(-nq // EXTEND_RESIDUES)])
    tms, rs, ts = _seed_search(
        q, qsub, qext, t, qstarts, tstarts, best_d, best_j, w, n_seeds, n_keep,
        tm_d0_search(nq), max(tm_d0(nq), RANK_D0), n_iter, SCREEN_ITER,
    )  # fmt: skip
    order = np.argsort(-tms)
    return [(float(tms[k]), rs[k], ts[k]) for k in order]


def extend_superposition(
    q: np.ndarray, t: np.ndarray, rot: np.ndarray, tr: np.ndarray, *, n_iter: int = 6
) -> tuple[float, np.ndarray, np.ndarray]:
    """Extend a given superposition as :func:`fragment_seeds` extends its seeds (same
    ranking score), e.g. to compare the first OT round's superposition with the seeds."""
    from otbio.align._superpose import tm_d0

    nq = q.shape[0]
    q = np.ascontiguousarray(q[:: -(-nq // SCREEN_RESIDUES)], dtype=np.float64)
    t = np.ascontiguousarray(t, dtype=np.float64)
    tm, r, t_ = _extend(
        q, t, np.ascontiguousarray(t.T), np.ascontiguousarray(rot, dtype=np.float64),
        np.ascontiguousarray(tr, dtype=np.float64), tm_d0_search(nq),
        max(tm_d0(nq), RANK_D0), n_iter,
    )  # fmt: skip
    return float(tm), r, t_


def nearest_tm(q: np.ndarray, t: np.ndarray, rot: np.ndarray, tr: np.ndarray) -> float:
    """TM-score (d0 of the query length, by the query length) of a superposition with each
    query residue paired to its nearest target residue, each target residue counted once."""
    from otbio.align._superpose import tm_d0

    q = np.ascontiguousarray(q, dtype=np.float64)
    t = np.ascontiguousarray(t, dtype=np.float64)
    d0 = tm_d0(q.shape[0])
    tm, _, _ = _extend(
        q, t, np.ascontiguousarray(t.T), np.ascontiguousarray(rot, dtype=np.float64),
        np.ascontiguousarray(tr, dtype=np.float64), d0, d0, 0,
    )  # fmt: skip
    return float(tm)


def sequence_segments(resnum: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """Segment id per residue from the numbering: a new segment where the chain changes or
    the residue number does not advance by 0 or 1 (coordinates are not used: noisy CA-CA
    distances must not cut a motif into pieces)."""
    resnum = np.asarray(resnum)
    if resnum.size == 0:
        return np.zeros(0, dtype=np.int64)
    step = np.diff(resnum)
    brk = ((step != 0) & (step != 1)) | (np.asarray(chain[1:]) != np.asarray(chain[:-1]))
    return np.concatenate([[0], np.cumsum(brk)]).astype(np.int64)
