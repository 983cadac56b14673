"""Online kernels: row-parallel reductions with the cost evaluated on the fly.

Every kernel walks rows ``i`` of ``x`` in parallel (``prange`` over row blocks, one scratch
row per block), fills a score buffer :math:`s_{ij} = h_j - c(x_i, y_j) / \\varepsilon` over
all columns and reduces it (log-sum-exp, weighted sums, argmax, top-k). Nothing of size
n x m is allocated. Cost codes: see :mod:`otbio.ot._kernels`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from otbio.ot._exp import FASTMATH, _exp

__all__ = ["apply_rows", "lse_rows", "min_score_rows", "topk_rows"]


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _fill_scores(i, x, yt, h, code, scale, buf, j0, j1):
    """buf_(j-j0) = h_j - cost(x_i, y_j) * scale for j in [j0, j1) (code 0: h_j + x_i . yt[:, j]).

    The dimensions are taken four at a time so that each pass over ``buf`` does four
    multiply-adds per load and store (one per pass was load/store bound).
    """
    m = j1 - j0
    d = x.shape[1]
    zero = scale - scale
    hh = h[j0:j1]
    for j in range(m):
        buf[j] = hh[j]
    k = 0
    if code == 0:
        while k + 4 <= d:
            x0 = x[i, k]
            x1 = x[i, k + 1]
            x2 = x[i, k + 2]
            x3 = x[i, k + 3]
            r0 = yt[k, j0:j1]
            r1 = yt[k + 1, j0:j1]
            r2 = yt[k + 2, j0:j1]
            r3 = yt[k + 3, j0:j1]
            for j in range(m):
                buf[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j]
            k += 4
        while k < d:
            xk = x[i, k]
            row = yt[k, j0:j1]
            for j in range(m):
                buf[j] += xk * row[j]
            k += 1
    elif code == 1:
        while k + 2 <= d:
            x0 = x[i, k]
            x1 = x[i, k + 1]
            r0 = yt[k, j0:j1]
            r1 = yt[k + 1, j0:j1]
            for j in range(m):
                buf[j] -= (abs(x0 - r0[j]) + abs(x1 - r1[j])) * scale
            k += 2
        while k < d:
            xk = x[i, k]
            row = yt[k, j0:j1]
            for j in range(m):
                buf[j] -= abs(xk - row[j]) * scale
            k += 1
    elif code == 2:
        for k in range(d):
            xk = x[i, k]
            row = yt[k, j0:j1]
            for j in range(m):
                buf[j] -= max(xk - row[j], zero) * scale
    else:
        for k in range(d):
            xk = x[i, k]
            row = yt[k, j0:j1]
            for j in range(m):
                buf[j] -= max(row[j] - xk, zero) * scale


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _row_max(buf):
    mx = buf[0]
    for j in range(1, buf.shape[0]):
        v = buf[j]
        mx = v if v > mx else mx
    return mx


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def lse_rows(x, yt, h, xoff, code, scale, guess, out, nblocks, tile, lo, hi):
    """out_i = xoff_i + log sum_j exp(s_ij), with s_ij the scores of ``_fill_scores``.

    ``guess_i`` is a shift close to the row's log-sum-exp (the previous Sinkhorn iterate's
    value): then one pass over column tiles that stay in L1 cache fills the scores and sums
    ``exp(s_ij - guess_i)``. The sum is accepted when it lies well inside the floating-point
    range (so that no term was clamped and none that matters was flushed); otherwise, and
    when ``guess_i`` is NaN, the row is redone with its exact maximum as the shift.
    ``guess`` is overwritten with the new log-sum-exp values (without ``xoff``); ``lo`` and
    ``hi`` bound the accepted sums (1e-10 and 1e300 in float64, 1e-5 and 1e37 in float32).
    """
    n = x.shape[0]
    m = h.shape[0]
    nb_ = max(1, min(n, nblocks))
    zero = scale - scale
    for b in prange(nb_):
        buf = np.empty(m, dtype=h.dtype)
        for i in range(b * n // nb_, (b + 1) * n // nb_):
            c = guess[i]
            ok = False
            s = zero
            if c == c:
                for j0 in range(0, m, tile):
                    j1 = min(m, j0 + tile)
                    _fill_scores(i, x, yt, h, code, scale, buf, j0, j1)
                    for j in range(j1 - j0):
                        s += _exp(buf[j] - c)
                ok = s > lo and s < hi
            if not ok:
                _fill_scores(i, x, yt, h, code, scale, buf, 0, m)
                c = _row_max(buf)
                s = zero
                for j in range(m):
                    s += _exp(buf[j] - c)
            r = c + np.log(s)
            guess[i] = r
            out[i] = xoff[i] + r


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def min_score_rows(x, yt, h, code, scale, out, nblocks):
    """out_i = min_j s_ij (used to find the largest cost without an n x m matrix)."""
    n = x.shape[0]
    m = h.shape[0]
    nb_ = max(1, min(n, nblocks))
    for b in prange(nb_):
        buf = np.empty(m, dtype=h.dtype)
        for i in range(b * n // nb_, (b + 1) * n // nb_):
            _fill_scores(i, x, yt, h, code, scale, buf, 0, m)
            mn = buf[0]
            for j in range(1, m):
                v = buf[j]
                mn = v if v < mn else mn
            out[i] = mn


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def apply_rows(
    x, yt, h, alpha, code, scale, vt, ccoef, out_dot, out_sum, out_cost, out_arg, nblocks, tile
):
    """Stream the plan ``p_ij = exp(alpha_i + s_ij)`` row by row, in L1-sized column tiles.

    Writes ``out_dot[i, c] = sum_j p_ij vt[c, j]``, ``out_sum[i] = sum_j p_ij``,
    ``out_arg[i] = argmax_j p_ij`` and, when ``ccoef[0] != 0``, the transport cost
    ``out_cost[i] = sum_j p_ij c_ij`` with ``c_ij = ccoef[1 + i] + ccoef[1 + n + j]
    - (s_ij - h_j) * ccoef[0]`` (``ccoef[0]`` is epsilon).
    """
    n = x.shape[0]
    m = h.shape[0]
    kv = vt.shape[0]
    eps = ccoef[0]
    zero = scale - scale
    nb_ = max(1, min(n, nblocks))
    for b in prange(nb_):
        buf = np.empty(tile, dtype=h.dtype)
        w = np.empty(tile, dtype=h.dtype)
        acc = np.empty(kv, dtype=h.dtype)
        for i in range(b * n // nb_, (b + 1) * n // nb_):
            ai = alpha[i]
            best = 0
            bv = -np.inf
            s = zero
            cost = zero
            for c in range(kv):
                acc[c] = zero
            for j0 in range(0, m, tile):
                j1 = min(m, j0 + tile)
                t = j1 - j0
                _fill_scores(i, x, yt, h, code, scale, buf, j0, j1)
                for j in range(t):
                    v = buf[j]
                    if v > bv:
                        bv = v
                        best = j0 + j
                st = zero
                for j in range(t):
                    wj = _exp(ai + buf[j])
                    w[j] = wj
                    st += wj
                s += st
                for c in range(kv):
                    row = vt[c, j0:j1]
                    a_ = zero
                    for j in range(t):
                        a_ += w[j] * row[j]
                    acc[c] += a_
                if eps != 0:
                    ci = ccoef[1 + i]
                    cj = ccoef[1 + n + j0 : 1 + n + j1]
                    hh = h[j0:j1]
                    a_ = zero
                    for j in range(t):
                        wj = w[j]
                        cij = ci + cj[j] - (buf[j] - hh[j]) * eps
                        a_ += wj * cij if wj > 0 else zero
                    cost += a_
            out_arg[i] = best
            out_sum[i] = s
            for c in range(kv):
                out_dot[i, c] = acc[c]
            out_cost[i] = cost


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def topk_rows(x, yt, h, alpha, code, scale, k, out_idx, out_val, nblocks):
    """The k largest ``alpha_i + s_ij`` of each row (indices and log-values), best first."""
    n = x.shape[0]
    m = h.shape[0]
    nb_ = max(1, min(n, nblocks))
    for b in prange(nb_):
        buf = np.empty(m, dtype=h.dtype)
        for i in range(b * n // nb_, (b + 1) * n // nb_):
            _fill_scores(i, x, yt, h, code, scale, buf, 0, m)
            idx = np.argsort(-buf)[:k]
            for t in range(k):
                out_idx[i, t] = idx[t]
                out_val[i, t] = alpha[i] + buf[idx[t]]
