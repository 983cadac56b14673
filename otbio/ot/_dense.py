"""Dense route for small problems: one cost matrix, the whole Sinkhorn loop in one call.

Serial and without the GIL (``nogil``) so that independent problems can run side by side in
threads: :func:`cost_dense` fills the cost matrix once and :func:`dense_sinkhorn` runs the
loop as matrix-vector products on a log-stabilised kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from otbio.ot._exp import FASTMATH, exp_f64

__all__ = ["cost_dense", "dense_first_g", "dense_plan_scaled", "dense_sinkhorn"]


# -- dense route for small problems ------------------------------------------------------


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def cost_dense(x, y, code, out):
    """out_ij = c(x_i, y_j) for cost ``code`` (0 squared Euclidean, 1 L1, 2 hinge, 3 reversed
    hinge), accumulated in the dtype of ``x`` (one row at a time, vectorised over ``j``).

    Code 0 sums squared differences directly (no ``|x|^2 + |y|^2 - 2 x.y`` cancellation).
    """
    n, d = x.shape
    m = y.shape[0]
    yt = np.ascontiguousarray(y.T)
    buf = np.zeros(m, dtype=x.dtype)
    zero = buf[0]
    for i in range(n):
        for j in range(m):
            buf[j] = zero
        if code == 0:
            for k in range(d):
                xk = x[i, k]
                row = yt[k]
                for j in range(m):
                    t = xk - row[j]
                    buf[j] += t * t
        elif code == 1:
            for k in range(d):
                xk = x[i, k]
                row = yt[k]
                for j in range(m):
                    buf[j] += abs(xk - row[j])
        elif code == 2:
            for k in range(d):
                xk = x[i, k]
                row = yt[k]
                for j in range(m):
                    buf[j] += max(xk - row[j], zero)
        else:
            for k in range(d):
                xk = x[i, k]
                row = yt[k]
                for j in range(m):
                    buf[j] += max(row[j] - xk, zero)
        for j in range(m):
            out[i, j] = buf[j]


#: Bounds of the scaling sums and factors between two rebasings of the dense kernel: within
#: them every entry of K that matters is a normal float64 (far above 1e-300).
_S_LO = 1e-100
_S_HI = 1e100
_LOG_U_MAX = 115.0  # |log u| <= 115: u within about 1e50


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_rebase(C, f, g, inv, K, fr, gr, u, v):
    """Reference potentials (fr, gr) = (f, g): K_ij = exp((f_i + g_j - C_ij) / eps), u = v = 1."""
    n, m = C.shape
    gs = np.empty(m)
    for j in range(m):
        gs[j] = g[j] * inv
        gr[j] = g[j]
        v[j] = 1.0
    for i in range(n):
        fi = f[i] * inv
        fr[i] = f[i]
        u[i] = 1.0
        ci = C[i]
        ki = K[i]
        for j in range(m):
            ki[j] = exp_f64(fi + gs[j] - ci[j] * inv)


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_lse_rows(C, h, logw, inv, out):
    """out_i = log sum_j exp(h_j / eps + logw_j - C_ij / eps), with the exact row maximum."""
    n, m = C.shape
    hw = np.empty(m)
    s = np.empty(m)
    for j in range(m):
        hw[j] = h[j] * inv + logw[j]
    for i in range(n):
        ci = C[i]
        mx = -np.inf
        for j in range(m):
            t = hw[j] - ci[j] * inv
            s[j] = t
            mx = t if t > mx else mx
        if mx == -np.inf:
            out[i] = -np.inf
            continue
        acc = 0.0
        for j in range(m):
            acc += exp_f64(s[j] - mx)
        out[i] = mx + np.log(acc)


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_lse_cols(C, h, logw, inv, out):
    """out_j = log sum_i exp(h_i / eps + logw_i - C_ij / eps), walking C row by row."""
    n, m = C.shape
    mx = np.full(m, -np.inf)
    for i in range(n):
        hi = h[i] * inv + logw[i]
        if hi == -np.inf:
            continue
        ci = C[i]
        for j in range(m):
            t = hi - ci[j] * inv
            mx[j] = t if t > mx[j] else mx[j]
    acc = np.zeros(m)
    for i in range(n):
        hi = h[i] * inv + logw[i]
        if hi == -np.inf:
            continue
        ci = C[i]
        for j in range(m):
            acc[j] += exp_f64(hi - ci[j] * inv - mx[j])
    for j in range(m):
        out[j] = -np.inf if mx[j] == -np.inf else mx[j] + np.log(acc[j])


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_half(K, w, s, pr, eps, phi, rows, out_p, out_s, tmp):
    """One scaling half-update of the dense Sinkhorn.

    ``rows``: the new row potentials from the column side, ``F_i = phi (fr_i - eps log S_i)``
    with ``S_i = sum_j K_ij w_j s_j``; otherwise the column potentials from the row side.
    ``out_s`` gets the new scaling factors ``exp((F - fr) / eps)``. Returns 0 when every
    sum and factor is in range, 1 when the values are good but the kernel should be rebased
    (a factor left [1e-50, 1e50]), 2 when a sum left [1e-100, 1e100] (values unusable).
    """
    n, m = K.shape
    if rows:
        ws = tmp[:m]
        for j in range(m):
            ws[j] = w[j] * s[j]
        for i in range(n):
            ki = K[i]
            acc = 0.0
            for j in range(m):
                acc += ki[j] * ws[j]
            tmp[m + i] = acc
        sums = tmp[m : m + n]
    else:
        acc = tmp[:m]
        for j in range(m):
            acc[j] = 0.0
        for i in range(n):
            wi = w[i] * s[i]
            if wi == 0.0:
                continue
            ki = K[i]
            for j in range(m):
                acc[j] += ki[j] * wi
        sums = acc
    return _dense_from_sums(sums, pr, eps, phi, out_p, out_s)


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_fused(K, a, b, v, fr, eps, phi, fnew, unew, ws, acc):
    """Row half-update and the column sums for the next half in one pass over K.

    Row ``i`` gives ``S_i = sum_j K_ij b_j v_j``, hence ``fnew_i`` and ``unew_i``, and then
    (while the row is in cache) adds ``K_ij a_i unew_i`` to the column sums ``acc``.
    Returns the status of the row half (see :func:`_dense_half`); on 2 the pass stops.
    """
    n, m = K.shape
    for j in range(m):
        ws[j] = b[j] * v[j]
        acc[j] = 0.0
    status = 0
    for i in range(n):
        ki = K[i]
        s = 0.0
        for j in range(m):
            s += ki[j] * ws[j]
        if not (s > _S_LO and s < _S_HI):
            return 2
        p, ui, big = _scaling(s, fr[i], eps, phi)
        fnew[i] = p
        unew[i] = ui
        if big:
            status = 1
        w = a[i] * ui
        if w != 0.0:
            for j in range(m):
                acc[j] += ki[j] * w
    return status


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_from_sums(sums, pr, eps, phi, out_p, out_s):
    """Potentials and scaling factors from precomputed sums (the second half of
    :func:`_dense_half`); same status codes."""
    status = 0
    for k in range(sums.shape[0]):
        sk = sums[k]
        if not (sk > _S_LO and sk < _S_HI):
            return 2
        p, sc, big = _scaling(sk, pr[k], eps, phi)
        out_p[k] = p
        out_s[k] = sc
        if big:
            status = 1
    return status


@njit(fastmath=FASTMATH, cache=True, nogil=True, inline="always")
def _scaling(sk, prk, eps, phi):
    """From the kernel sum ``sk``: the new potential ``phi (prk - eps log sk)``, its scaling
    factor ``exp((p - prk) / eps)`` and whether that factor left the rebasing range."""
    ls = np.log(sk)
    p = phi * (prk - eps * ls)
    if phi == 1.0:
        lu = -ls
        sc = 1.0 / sk
    else:
        lu = (p - prk) / eps
        sc = np.exp(lu)
    return p, sc, abs(lu) > _LOG_U_MAX


_U_MAX = np.exp(_LOG_U_MAX)
_U_MIN = np.exp(-_LOG_U_MAX)


@njit(fastmath=FASTMATH, cache=True, nogil=True, inline="always")
def _factor(s, unew, i):
    """``unew_i = 1 / s``; status 0, 1 (factor out of range) or 2 (sum out of range)."""
    if not (s > _S_LO and s < _S_HI):
        return 2
    ui = 1.0 / s
    unew[i] = ui
    return 1 if (ui > _U_MAX or ui < _U_MIN) else 0


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _dense_fused_balanced(K, a, b, v, unew, ws, acc):
    """:func:`_dense_fused` for balanced OT: only the factors ``unew = 1 / S`` (no logs).

    Rows go four at a time (each load of ``ws`` and ``acc`` serves four rows of K).
    """
    n, m = K.shape
    for j in range(m):
        ws[j] = b[j] * v[j]
        acc[j] = 0.0
    status = 0
    i = 0
    while i + 4 <= n:
        k0 = K[i]
        k1 = K[i + 1]
        k2 = K[i + 2]
        k3 = K[i + 3]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for j in range(m):
            w = ws[j]
            s0 += k0[j] * w
            s1 += k1[j] * w
            s2 += k2[j] * w
            s3 += k3[j] * w
        for t, st in enumerate((s0, s1, s2, s3)):
            r = _factor(st, unew, i + t)
            if r == 2:
                return 2
            status = max(status, r)
        w0 = a[i] * unew[i]
        w1 = a[i + 1] * unew[i + 1]
        w2 = a[i + 2] * unew[i + 2]
        w3 = a[i + 3] * unew[i + 3]
        for j in range(m):
            acc[j] += k0[j] * w0 + k1[j] * w1 + k2[j] * w2 + k3[j] * w3
        i += 4
    while i < n:
        ki = K[i]
        s = 0.0
        for j in range(m):
            s += ki[j] * ws[j]
        r = _factor(s, unew, i)
        if r == 2:
            return 2
        status = max(status, r)
        w = a[i] * unew[i]
        if w != 0.0:
            for j in range(m):
                acc[j] += ki[j] * w
        i += 1
    return status


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _materialise(pr, s, eps, out):
    """Potentials from reference potentials and scaling factors: ``pr + eps log s``."""
    for k in range(pr.shape[0]):
        out[k] = pr[k] + eps * np.log(s[k])


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _balanced_from_sums(sums, out_s):
    """:func:`_dense_from_sums` for balanced OT: only the factors ``1 / S`` (no logs)."""
    status = 0
    for k in range(sums.shape[0]):
        sk = sums[k]
        if not (sk > _S_LO and sk < _S_HI):
            return 2
        sc = 1.0 / sk
        out_s[k] = sc
        if sc > _U_MAX or sc < _U_MIN:
            status = 1
    return status


@njit(fastmath=FASTMATH, cache=True, nogil=True, inline="always")
def _dense_rows_step(C, K, a, b, logb, f, g, fr, gr, u, v, eps, inv, phi, balanced,
                     fnew, unew, ws, colsum, lse, counts):  # fmt: skip
    """Row stage of one iteration of :func:`dense_sinkhorn`: the new row factors ``unew``
    (and, unbalanced, potentials ``fnew``) from ``g``, and in the same pass over ``K`` the
    column sums ``colsum`` for the column stage (``inv = 1 / eps``). When a row sum leaves
    its range the half is redone exactly in the log domain (``fnew`` from ``g``; balanced:
    ``f`` and ``g`` materialised first). Returns the status 0, 1 or 2 of :func:`_dense_half`.
    Inlined into :func:`dense_sinkhorn` (``inline="always"``): no call per iteration."""
    if balanced:
        st = _dense_fused_balanced(K, a, b, v, unew, ws, colsum)
    else:
        st = _dense_fused(K, a, b, v, fr, eps, phi, fnew, unew, ws, colsum)
    if st == 2:  # row sums out of range: this half exactly, from the current g
        counts[1] += 1
        if balanced:
            _materialise(fr, u, eps, f)
            _materialise(gr, v, eps, g)
        _dense_lse_rows(C, g, logb, inv, lse)
        for i in range(C.shape[0]):
            fnew[i] = -phi * eps * lse[i]
    return st


@njit(fastmath=FASTMATH, cache=True, nogil=True, inline="always")
def _dense_cols_step(C, K, a, loga, f, g, fr, gr, u, v, eps, inv, phi, balanced, st,
                     gnew, vnew, colsum, tmp, lse, counts):  # fmt: skip
    """Column stage of one iteration of :func:`dense_sinkhorn`: the new column factors
    ``vnew`` (and, unbalanced, potentials ``gnew``) from the row stage's ``colsum``, or,
    after a row stage of status ``st == 2``, from a kernel rebased on the new ``f``. When a
    column sum leaves its range the half is redone exactly (``gnew`` from ``f``). Returns
    the status 0, 1 or 2 of :func:`_dense_half`."""
    if st == 2:  # K was unusable for the rows: rebase, then the usual half-update
        counts[0] += 1
        _dense_rebase(C, f, g, inv, K, fr, gr, u, v)
        st_c = _dense_half(K, a, u, gr, eps, phi, False, gnew, vnew, tmp)
    elif balanced:
        st_c = _balanced_from_sums(colsum, vnew)
    else:
        st_c = _dense_from_sums(colsum, gr, eps, phi, gnew, vnew)
    if st_c == 2:  # column sums out of range: this half exactly, from the new f
        counts[1] += 1
        if balanced:
            _materialise(fr, u, eps, f)
        _dense_lse_cols(C, f, loga, inv, lse)
        for j in range(C.shape[1]):
            gnew[j] = -phi * eps * lse[j]
    return st_c


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def dense_sinkhorn(
    C, K, a, b, loga, logb, f, g, fr, gr, u, v, eps, phi, it0, it1, max_iter, check_every, tol,
    trace, ntrace, counts, finish,
):  # fmt: skip
    """Iterations ``it0..it1`` (1-based, inclusive) of log-domain Sinkhorn on a dense cost.

    Same iterates and stopping rule as the online loop of :class:`otbio.ot.Sinkhorn`
    (``f`` from ``g``, a check every ``check_every`` iterations and at ``max_iter``; no check
    when ``check_every`` is 0), computed as matrix-vector products with the kernel
    ``K_ij = exp((fr_i + gr_j - C_ij) / eps)`` at reference potentials ``(fr, gr)`` and
    scaling factors ``u = exp((f - fr) / eps)``, ``v = exp((g - gr) / eps)`` (Schmitzer's
    log-stabilisation). When a factor drifts out of range the kernel is rebased on the
    current potentials; when a sum under- or overflows, that half-update is redone exactly
    in the log domain first. ``phi = reg_m / (reg_m + eps)`` (1 when balanced). ``trace[ntrace:]``
    receives the errors of the checks; ``counts[0]`` and ``counts[1]`` count the rebasings
    and the exact half-updates. Call with keyword arguments. Each iteration is a row stage
    (:func:`_dense_rows_step`), the check, and a column stage (:func:`_dense_cols_step`).

    Balanced (``phi == 1``): between rebasings only the factors ``u = 1 / S`` and
    ``v = 1 / T`` change (no logarithm per row and column); ``f`` and ``g`` are computed from
    them (``fr + eps log u``) when needed: before a rebasing or an exact half-update, and on
    return. The check compares ``a u / u_new`` with ``a`` (``exp(log a + (f - f_new) / eps)``)
    before the column half. Unbalanced: ``f`` and ``g`` are updated every iteration and the
    check is the largest change of a potential over ``eps`` after both halves.

    Returns ``(converged, it, err, ntrace)``: ``converged`` at iteration ``it`` (balanced:
    ``f`` is left at the iterate that passed the check, unless ``finish``: then that
    iteration is completed, as an epsilon-scaling level ends), else ``it = it1``; ``f`` and
    ``g`` hold the current potentials on return.
    """
    n, m = C.shape
    inv = 1.0 / eps
    balanced = phi == 1.0
    fnew = np.empty(n)
    gnew = np.empty(m)
    unew = np.empty(n)
    vnew = np.empty(m)
    tmp = np.empty(n + m)
    ws = np.empty(m)
    colsum = np.empty(m)
    lse = np.empty(max(n, m))
    err = np.inf
    conv = False
    it_end = it1
    for it in range(it0, it1 + 1):
        check = check_every > 0 and (it % check_every == 0 or it == max_iter)
        # rows: f from g, and in the same pass over K the column sums for g from the new f
        st = _dense_rows_step(C, K, a, b, logb, f, g, fr, gr, u, v, eps, inv, phi, balanced,
                              fnew, unew, ws, colsum, lse, counts)  # fmt: skip
        if check and balanced:
            err = 0.0
            if st == 2:
                for i in range(n):
                    err += abs(np.exp(loga[i] + (f[i] - fnew[i]) * inv) - a[i])
            else:
                for i in range(n):
                    err += abs(a[i] * (u[i] / unew[i]) - a[i])
            if err < tol and not finish:
                if st != 2:
                    _materialise(fr, u, eps, f)
                    _materialise(gr, v, eps, g)
                return True, it, err, ntrace
            trace[ntrace] = err
            ntrace += 1
            conv = err < tol
        if check and not balanced:
            err = 0.0
            for i in range(n):
                err = max(err, abs(fnew[i] - f[i]))
        for i in range(n):
            u[i] = unew[i]
        if st == 2 or not balanced:
            for i in range(n):
                f[i] = fnew[i]
        # columns: g from f
        st_c = _dense_cols_step(C, K, a, loga, f, g, fr, gr, u, v, eps, inv, phi, balanced, st,
                                gnew, vnew, colsum, tmp, lse, counts)  # fmt: skip
        if check and not balanced:
            for j in range(m):
                err = max(err, abs(gnew[j] - g[j]))
            err *= inv
        if st_c == 2 or not balanced:
            for j in range(m):
                g[j] = gnew[j]
        if st_c != 2:
            for j in range(m):
                v[j] = vnew[j]
        if st_c != 0 or st == 1 or (st == 2 and not balanced):
            counts[0] += 1
            if balanced and st_c != 2:
                _materialise(fr, u, eps, f)
                _materialise(gr, v, eps, g)
            _dense_rebase(C, f, g, inv, K, fr, gr, u, v)
        if check and not balanced:
            trace[ntrace] = err
            ntrace += 1
            if err < tol:
                return True, it, err, ntrace
        if conv:  # balanced with ``finish``: the iteration that passed the check is complete
            it_end = it
            break
    if balanced:
        _materialise(fr, u, eps, f)
        _materialise(gr, v, eps, g)
    return conv, it_end, err, ntrace


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def dense_first_g(C, K, a, loga, f, g, fr, gr, u, v, eps, phi, counts):
    """The first column update of a cold start, ``g`` from ``f`` (``g`` on entry is ignored):
    through the kernel at ``(f, 0)`` when its column sums are in range, else exactly."""
    n, m = C.shape
    inv = 1.0 / eps
    for j in range(m):
        g[j] = 0.0
    _dense_rebase(C, f, g, inv, K, fr, gr, u, v)
    tmp = np.empty(n + m)
    st = _dense_half(K, a, u, gr, eps, phi, False, g, v, tmp)
    if st == 2:
        counts[1] += 1
        lse = np.empty(m)
        _dense_lse_cols(C, f, loga, inv, lse)
        for j in range(m):
            g[j] = -phi * eps * lse[j]
    if st != 0:
        counts[0] += 1
        _dense_rebase(C, f, g, inv, K, fr, gr, u, v)


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def dense_plan_scaled(K, a, b, u, v, C, out_sum, out_cost):
    """In place, ``K_ij <- a_i u_i K_ij v_j b_j``: the plan from the stabilised kernel (no
    exponentials), its row sums and per-row transport cost ``sum_j P_ij C_ij``."""
    n, m = K.shape
    bv = np.empty(m)
    for j in range(m):
        bv[j] = b[j] * v[j]
    for i in range(n):
        au = a[i] * u[i]
        ki = K[i]
        ci = C[i]
        s = 0.0
        c = 0.0
        for j in range(m):
            p = ki[j] * au * bv[j]
            ki[j] = p
            s += p
            c += p * ci[j] if p > 0 else 0.0
        out_sum[i] = s
        out_cost[i] = c
