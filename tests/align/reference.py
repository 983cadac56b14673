"""NumPy reference implementations of the alignment's numeric kernels (the original code).

The package computes these in Numba; the tests check that the results agree.
"""

from __future__ import annotations

import warnings

import numpy as np

from otbio.align._features import (
    ANGLE_FLOOR,
    BREAK_DISTANCE,
    CENTRE_COLUMNS,
    CONTACT_CUTOFFS,
    COUNT_FLOOR,
    DIST_FLOOR,
    WINDOW,
    WINDOW_COLUMNS,
    Features,
    plasma_normalise,
)


def random_rotation(rng) -> np.ndarray:
    """A uniformly random proper rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def segments(st) -> np.ndarray:
    step = np.linalg.norm(np.diff(st.ca, axis=0), axis=1)
    brk = (step > BREAK_DISTANCE) | (st.chain[1:] != st.chain[:-1])
    return np.concatenate([[0], np.cumsum(brk)])


def _shift(arr, seg, k):
    n = arr.shape[0]
    idx = np.arange(n) + k
    ok = (idx >= 0) & (idx < n)
    idx_c = np.clip(idx, 0, n - 1)
    ok &= seg[idx_c] == seg
    return arr[idx_c], ok


def geometric_features(st) -> Features:
    ca = st.ca
    n = ca.shape[0]
    seg = segments(st)
    cols, contain, floor = [], [], []
    for k in (-4, -3, -2, -1, 1, 2, 3, 4):
        other, ok = _shift(ca, seg, k)
        cols.append(np.where(ok, np.linalg.norm(other - ca, axis=1), np.nan))
        contain.append(False)
        floor.append(DIST_FLOOR)
    prev, okp = _shift(ca, seg, -1)
    nxt, okn = _shift(ca, seg, 1)
    nxt2, okn2 = _shift(ca, seg, 2)
    u = prev - ca
    v = nxt - ca
    with np.errstate(invalid="ignore", divide="ignore"):
        cosang = np.einsum("ij,ij->i", u, v) / (
            np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
        )
    cols.append(np.where(okp & okn, cosang, np.nan))
    contain.append(False)
    floor.append(ANGLE_FLOOR)
    b1, b2, b3 = ca - prev, nxt - ca, nxt2 - nxt
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    with np.errstate(invalid="ignore", divide="ignore"):
        b2u = b2 / np.linalg.norm(b2, axis=1, keepdims=True)
        m1 = np.cross(n1, b2u)
        tors = np.arctan2(np.einsum("ij,ij->i", m1, n2), np.einsum("ij,ij->i", n1, n2))
    okt = okp & okn & okn2
    cols += [np.where(okt, np.sin(tors), np.nan), np.where(okt, np.cos(tors), np.nan)]
    contain += [False, False]
    floor += [ANGLE_FLOOR, ANGLE_FLOOR]
    from scipy.spatial.distance import cdist

    dmat = cdist(ca, ca)
    for cut in CONTACT_CUTOFFS:
        cols.append((dmat < cut).sum(1).astype(np.float64) - 1.0)
        contain.append(True)
        floor.append(COUNT_FLOOR)
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = nxt - prev
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        bend = (u + v) - np.einsum("ij,ij->i", u + v, e1)[:, None] * e1
        e2 = bend / np.linalg.norm(bend, axis=1, keepdims=True)
        e3 = np.cross(e1, e2)
    far = dmat.copy()
    idx = np.arange(n)
    far[(np.abs(idx[:, None] - idx[None, :]) < 3) & (seg[:, None] == seg[None, :])] = np.inf
    far[idx, idx] = np.inf
    j = np.argmin(far, axis=1)
    dj = far[idx, j]
    okf = okp & okn & np.isfinite(dj)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = (ca[j] - ca) / dj[:, None]
    for e in (e1, e2, e3):
        cols.append(np.where(okf, np.einsum("ij,ij->i", w, e), np.nan))
        contain.append(False)
        floor.append(ANGLE_FLOOR)
    cols.append(np.where(np.isfinite(dj), -dj, np.nan))
    contain.append(True)
    floor.append(DIST_FLOOR)
    base = np.column_stack(cols)
    base_contain, base_floor = np.array(contain), np.array(floor)
    blocks = [base[:, CENTRE_COLUMNS]]
    contain_out = [base_contain[CENTRE_COLUMNS]]
    floor_out = [base_floor[CENTRE_COLUMNS]]
    win = base[:, WINDOW_COLUMNS]
    for k in range(-WINDOW, WINDOW + 1):
        other, ok = _shift(win, seg, k)
        blocks.append(np.where(ok[:, None], other, np.nan))
        contain_out.append(base_contain[WINDOW_COLUMNS])
        floor_out.append(base_floor[WINDOW_COLUMNS])
    return Features(
        np.ascontiguousarray(np.concatenate(blocks, axis=1)),
        np.concatenate(contain_out),
        "geometric",
        np.concatenate(floor_out),
    )


def pair_features(fq, fc, *, sq=None, sc=None, sequence_weight=0.0, plasma_pf=False):
    xq, xc = fq.values, fc.values
    if plasma_pf:
        zq, zc = plasma_normalise(xq), plasma_normalise(xc)
        return zq, zc, zq, zc
    both = np.concatenate([xq, xc], axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column missing everywhere
        mu = np.nanmean(both, axis=0)
        sd = np.nanstd(both, axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    sd = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
    if fq.floor is not None:
        sd = np.sqrt(sd**2 + fq.floor**2)
    zq = (xq - mu) / sd
    zc = (xc - mu) / sd
    two = ~fq.containment
    hq = np.concatenate([zq, -zq[:, two]], axis=1)
    hc = np.concatenate([zc, -zc[:, two]], axis=1)
    with np.errstate(invalid="ignore"):
        both_h = np.concatenate([hq, hc], axis=0)
        lo = np.nanmin(np.where(np.isnan(both_h), np.inf, both_h), axis=0)
        hi = np.nanmax(np.where(np.isnan(both_h), -np.inf, both_h), axis=0)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 0.0)
    hq = np.where(np.isnan(hq), lo, hq)
    hc = np.where(np.isnan(hc), hi, hc)
    if sequence_weight > 0 and sq is not None and sc is not None:
        w = 0.5 * sequence_weight
        hq = np.concatenate([hq, w * sq, -w * sq], axis=1)
        hc = np.concatenate([hc, w * sc, -w * sc], axis=1)
    keep = two if two.any() else np.ones_like(two)
    return hq, hc, np.nan_to_num(zq[:, keep]), np.nan_to_num(zc[:, keep])


def kabsch(x, y, w=None):
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    w = w / w.sum()
    cx, cy = w @ x, w @ y
    h = (x - cx).T @ ((y - cy) * w[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, cy - r @ cx


def tm_superpose(x, y, length, d0, n_iter=6):
    r, t = kabsch(x, y)
    d = np.linalg.norm(x @ r.T + t - y, axis=1)
    rmsd = float(np.sqrt(np.mean(d**2)))
    best = (float(np.sum(1.0 / (1.0 + (d / d0) ** 2)) / length), r, t)
    for _ in range(n_iter):
        w = 1.0 / (1.0 + (d / d0) ** 2)
        if w.sum() <= 1e-12:
            break
        r, t = kabsch(x, y, w)
        d = np.linalg.norm(x @ r.T + t - y, axis=1)
        tm = float(np.sum(1.0 / (1.0 + (d / d0) ** 2)) / length)
        if tm > best[0] + 1e-9:
            best = (tm, r, t)
        else:
            break
    return rmsd, best[0], best[1], best[2]


def diagonal(plan, k):
    n, m = plan.shape
    k = max(1, min(k, n, m))
    acc = np.zeros((n - k + 1, m - k + 1))
    for t in range(k):
        acc += plan[t : n - k + 1 + t, t : m - k + 1 + t]
    return float(acc.max() / k)
