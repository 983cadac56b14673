"""Exact OT by column generation on POT's sparse network simplex.

A dense network simplex prices all n x m arcs at every pivot. Here the simplex sees a sparse
set of candidate arcs and the full cost matrix is only *priced*: after each sparse solve the
dual potentials ``(u, v)`` give every arc its reduced cost :math:`c_{ij} - u_i - v_j`; arcs
with a negative reduced cost join the set and the simplex restarts from the previous duals
(warm start). When no arc prices negative (up to a tolerance relative to the largest cost),
the duals are feasible for the full problem and the sparse plan is optimal for it: the
result is the exact optimum, not an approximation.

The first candidate set comes from a coarse problem (the rows against a random subsample
of the columns, solved the same way), whose row potentials select for every column the rows
of smallest reduced cost; the arcs of a north-west-corner plan along the first principal
axis make the set feasible whatever the duals. Column generation for transportation
problems is classical (Dantzig & Wolfe 1960; Schmitzer 2016, "A sparse multiscale algorithm
for dense optimal transport", uses the same shielding idea at several scales); POT's
``emd_c_sparse`` (Flamary et al. 2021; network simplex of LEMON, Kovacs 2015) solves each
restricted problem.

Kernels here are serial and release the GIL so that many problems run side by side in
threads (:func:`otbio.ot.map_batch`).
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit

log = logging.getLogger("otbio")

__all__ = ["available", "solve_sparse"]


def available() -> bool:
    """Whether the installed POT has the sparse network simplex with a warm start."""
    try:
        from ot.lp.emd_wrap import emd_c_sparse  # noqa: F401
    except ImportError:
        return False
    return True


@njit(cache=True, nogil=True)
def _ctransform(c, f, out):  # pragma: no cover - compiled
    """``out[j] = min_i c[i, j] - f[i]``."""
    n, m = c.shape
    for j in range(m):
        out[j] = np.inf
    for i in range(n):
        fi = f[i]
        for j in range(m):
            r = c[i, j] - fi
            if r < out[j]:
                out[j] = r


@njit(cache=True, nogil=True)
def _select(c, u, v, thr, kcol, krow, out_r, out_c):  # pragma: no cover - compiled
    """Arcs of smallest reduced cost ``c[i, j] - u[i] - v[j]`` below ``thr``.

    For every column the ``kcol`` smallest and for every row the ``krow`` smallest; written
    to ``out_r``/``out_c`` (room for ``m * kcol + n * krow``). Returns the number written
    and the number of entries below ``thr``.
    """
    n, m = c.shape
    colv = np.full((m, max(kcol, 1)), np.inf)
    coli = np.full((m, max(kcol, 1)), -1, dtype=np.int64)
    rowv = np.empty(max(krow, 1))
    rowi = np.empty(max(krow, 1), dtype=np.int64)
    cnt = 0
    nbelow = 0
    for i in range(n):
        ui = u[i]
        for t in range(krow):
            rowv[t] = np.inf
            rowi[t] = -1
        for j in range(m):
            r = c[i, j] - ui - v[j]
            if r < thr:
                nbelow += 1
                if kcol > 0 and r < colv[j, kcol - 1]:
                    t = kcol - 1
                    while t > 0 and colv[j, t - 1] > r:
                        colv[j, t] = colv[j, t - 1]
                        coli[j, t] = coli[j, t - 1]
                        t -= 1
                    colv[j, t] = r
                    coli[j, t] = i
                if krow > 0 and r < rowv[krow - 1]:
                    t = krow - 1
                    while t > 0 and rowv[t - 1] > r:
                        rowv[t] = rowv[t - 1]
                        rowi[t] = rowi[t - 1]
                        t -= 1
                    rowv[t] = r
                    rowi[t] = j
        for t in range(krow):
            if rowi[t] >= 0:
                out_r[cnt] = i
                out_c[cnt] = rowi[t]
                cnt += 1
    for j in range(m):
        for t in range(kcol):
            if coli[j, t] >= 0:
                out_r[cnt] = coli[j, t]
                out_c[cnt] = j
                cnt += 1
    return cnt, nbelow


def _select_keys(c, u, v, thr, kcol, krow):
    n, m = c.shape
    size = m * kcol + n * krow
    out_r = np.empty(size, dtype=np.int64)
    out_c = np.empty(size, dtype=np.int64)
    cnt, nbelow = _select(c, u, v, float(thr), int(kcol), int(krow), out_r, out_c)
    return out_r[:cnt] * m + out_c[:cnt], int(nbelow)


def _northwest_keys(a, b, pa, pb, m):
    """Arcs of the north-west-corner plan of ``a`` and ``b`` sorted by ``pa`` and ``pb``."""
    ia = np.argsort(pa, kind="stable")
    ib = np.argsort(pb, kind="stable")
    ca = np.cumsum(a[ia])
    cb = np.cumsum(b[ib])
    total = ca[-1]
    cuts = np.unique(np.concatenate([[0.0], ca[:-1], cb[:-1], [total]]))
    mid = 0.5 * (cuts[:-1] + cuts[1:])
    i = np.minimum(np.searchsorted(ca, mid), a.size - 1)
    j = np.minimum(np.searchsorted(cb, mid), b.size - 1)
    return ia[i] * m + ib[j]


def _principal_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    mu = (x.sum(0) + y.sum(0)) / (x.shape[0] + y.shape[0])
    xc, yc = x - mu, y - mu
    cov = xc.T @ xc + yc.T @ yc
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, -1]


def _restricted(a, b, keys, c, m, max_iter, init):
    from ot.lp.emd_wrap import emd_c_sparse

    rows = keys // m
    cols = keys - rows * m
    costs = np.ascontiguousarray(c[rows, cols], dtype=np.float64)
    args = (a, b, rows.astype(np.uint64), cols.astype(np.uint64), costs, int(max_iter))
    try:
        warm = () if init is None else (init[0], init[1])
        fs, ft, fv, cost, u, v, code = emd_c_sparse(*args, *warm)
    except TypeError:  # a POT whose sparse solver takes no warm start
        fs, ft, fv, cost, u, v, code = emd_c_sparse(*args)
    return (
        np.asarray(fs, dtype=np.int64),
        np.asarray(ft, dtype=np.int64),
        np.asarray(fv, dtype=np.float64),
        float(cost),
        np.asarray(u, dtype=np.float64),
        np.asarray(v, dtype=np.float64),
        int(code),
    )


def solve_sparse(
    c: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    f0: np.ndarray | None = None,
    k_init: int = 10,
    k_row: int = 5,
    k_price: int = 5,
    coarse: int | None = None,
    max_rounds: int = 100,
    max_iter: int = 1_000_000,
    seed: int = 0,
):
    """Exact OT plan of the dense cost ``c`` (n x m) between ``a`` and ``b`` (equal mass, > 0).

    ``x`` and ``y`` (the points, optional) orient the north-west-corner arcs that guarantee
    feasibility; ``f0`` (optional) row potentials that choose the first arcs; ``coarse`` the
    size of the column subsample of the coarse problem (default: ``n`` when
    ``m >= 2 max(n, 250)``, 0 for none). Returns
    ``(rows, cols, values, cost, u, v, converged, rounds)`` with the plan in coordinate form;
    ``converged`` is False when the simplex failed or no optimum was
    certified within ``max_rounds`` (the caller then falls back to a dense solve).
    """
    c = np.ascontiguousarray(c, dtype=np.float64)
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    n, m = c.shape
    if coarse is None:
        coarse = n if m >= 2 * max(n, 250) else 0
    if f0 is None and coarse and coarse < m:
        rng = np.random.default_rng(seed)
        sub = np.sort(rng.choice(m, size=coarse, replace=False))
        bs = b[sub] * (a.sum() / b[sub].sum())
        res = solve_sparse(
            c[:, sub],
            a,
            bs,
            x=x,
            y=None if y is None else y[sub],
            k_init=k_init,
            k_row=k_row,
            k_price=k_price,
            coarse=0,
            max_rounds=max_rounds,
            max_iter=max_iter,
        )
        if res[6]:
            f0 = res[4]
    if f0 is None:
        f0 = np.zeros(n)
    g0 = np.empty(m)
    _ctransform(c, f0, g0)
    keys, _ = _select_keys(c, f0, g0, np.inf, k_init, k_row)
    if x is not None and y is not None:
        axis = _principal_axis(x, y)
        pa, pb = x @ axis, y @ axis
    else:
        pa, pb = f0, -g0
    keys = np.unique(np.concatenate([keys, _northwest_keys(a, b, pa, pb, m)]))
    in_set = np.zeros(n * m, dtype=np.bool_)
    in_set[keys] = True
    scale = float(np.abs(c).max()) or 1.0
    tol = 1e-9 * scale
    init = None
    for rnd in range(1, max_rounds + 1):
        rows, cols, vals, cost, u, v, code = _restricted(a, b, keys, c, m, max_iter, init)
        if code != 1:
            log.debug("sparse network simplex stopped with code %d in round %d", code, rnd)
            return rows, cols, vals, cost, u, v, False, rnd
        new, nbelow = _select_keys(c, u, v, -tol, k_price, k_price)
        if nbelow == 0:
            return rows, cols, vals, cost, u, v, True, rnd
        new = np.unique(new[~in_set[new]])
        if new.size == 0:  # violations only on arcs the simplex already had: numerical trouble
            log.debug("sparse network simplex: no new arc prices negative in round %d", rnd)
            return rows, cols, vals, cost, u, v, False, rnd
        in_set[new] = True
        keys = np.concatenate([keys, new])
        init = (u, v)
    return rows, cols, vals, cost, u, v, False, max_rounds
