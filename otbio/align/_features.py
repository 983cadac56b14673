"""Residue features for the alignment: local geometry from CA coordinates, or embeddings.

The geometric recipe follows the design note: per residue, CA-CA distances to the residues
i +- 1..4, the virtual bond angle and torsion, contact counts within 8 / 10 / 12 A and a local
frame descriptor (the direction and distance of the nearest residue that is not a sequence
neighbour, in a frame built from CA i-1, i, i+1, in the spirit of Foldseek's 3Di); these are
concatenated over a window of +-2 residues. Everything is computed from the coordinates alone
in one serial Numba kernel (tens of microseconds for a chain of 150 residues; it releases the
GIL, so structures can be featurised in threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numba import njit

from otbio._errors import InputError
from otbio.align._structure import ONE_LETTER, Structure

__all__ = [
    "Features",
    "geometric_features",
    "load_embedding",
    "pair_features",
    "plasma_normalise",
]

#: Largest CA-CA distance between consecutive residues of one unbroken chain segment (A).
BREAK_DISTANCE = 4.3
CONTACT_CUTOFFS = (8.0, 10.0, 12.0)
WINDOW = 2
#: Columns of the per-residue base features (see geometric_features) used at the residue
#: itself: CA-CA distances to i +- 2..4, the local-frame direction and nearest distance.
CENTRE_COLUMNS = [0, 1, 2, 5, 6, 7, 14, 15, 16, 17]
#: Columns concatenated over the window i-2..i+2: bond angle, torsion, contact counts.
WINDOW_COLUMNS = [8, 9, 10, 11, 12, 13]
#: Noise levels below which a feature's spread is not standardised away (see Features.floor).
DIST_FLOOR = 0.75
ANGLE_FLOOR = 0.15
COUNT_FLOOR = 1.5
_AA = sorted(ONE_LETTER.values())


@dataclass(frozen=True, eq=False)
class Features:
    """Raw per-residue features of one structure, before the per-pair standardisation.

    Attributes
    ----------
    values
        (L, d) raw features; NaN where a neighbour is missing (chain ends and breaks).
    containment
        (d,) True for features compared one-sidedly (contact counts: a motif cut out of a
        chain has fewer contacts than the same residues in the chain); the others are
        compared two-sidedly.
    kind
        ``"geometric"`` or ``"embedding"``.
    floor
        (d,) smallest spread used when standardising each feature (its noise level, e.g.
        0.75 A for a distance), so near-constant features such as the CA(i)-CA(i+1)
        distance are not blown up into noise; None for embeddings.
    """

    values: np.ndarray
    containment: np.ndarray
    kind: str = "geometric"
    floor: np.ndarray | None = None


def _segments(st: Structure) -> np.ndarray:
    """Segment index per residue: a new segment at a chain change or a CA-CA gap."""
    ch = st.chain
    new_chain = np.asarray(ch[1:] != ch[:-1], dtype=np.bool_)
    return _segment_ids(np.ascontiguousarray(st.ca, dtype=np.float64), new_chain, BREAK_DISTANCE)


@njit(cache=True, nogil=True)
def _segment_ids(ca, new_chain, gap):
    n = ca.shape[0]
    seg = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        dx = ca[i, 0] - ca[i - 1, 0]
        dy = ca[i, 1] - ca[i - 1, 1]
        dz = ca[i, 2] - ca[i - 1, 2]
        brk = np.sqrt(dx * dx + dy * dy + dz * dz) > gap or new_chain[i - 1]
        seg[i] = seg[i - 1] + (1 if brk else 0)
    return seg


#: Offsets of the CA-CA distance columns 0-7 of the base features.
_DIST_OFFSETS = np.array([-4, -3, -2, -1, 1, 2, 3, 4], dtype=np.int64)
_N_BASE = 18


@njit(cache=True, nogil=True, inline="always")
def _dist3(ca, i, j):
    dx = ca[j, 0] - ca[i, 0]
    dy = ca[j, 1] - ca[i, 1]
    dz = ca[j, 2] - ca[i, 2]
    return np.sqrt(dx * dx + dy * dy + dz * dz)


@njit(cache=True, nogil=True)
def _base_features(ca, seg, offsets, cutoffs, out):
    """The 18 base features per residue (see :func:`geometric_features`), NaN where a
    neighbour is missing; ``out`` is (L, 18)."""
    n = ca.shape[0]
    nan = np.nan
    d2 = np.empty(n)
    cut2 = cutoffs * cutoffs
    xs = np.ascontiguousarray(ca[:, 0])
    ys = np.ascontiguousarray(ca[:, 1])
    zs = np.ascontiguousarray(ca[:, 2])
    for i in range(n):
        for c in range(offsets.shape[0]):
            j = i + offsets[c]
            if 0 <= j < n and seg[j] == seg[i]:
                out[i, c] = _dist3(ca, i, j)
            else:
                out[i, c] = nan
        okp = i >= 1 and seg[i - 1] == seg[i]
        okn = i + 1 < n and seg[i + 1] == seg[i]
        okn2 = i + 2 < n and seg[i + 2] == seg[i]
        # virtual bond angle at i
        out[i, 8] = nan
        out[i, 9] = nan
        out[i, 10] = nan
        if okp and okn:
            ux = ca[i - 1, 0] - ca[i, 0]
            uy = ca[i - 1, 1] - ca[i, 1]
            uz = ca[i - 1, 2] - ca[i, 2]
            vx = ca[i + 1, 0] - ca[i, 0]
            vy = ca[i + 1, 1] - ca[i, 1]
            vz = ca[i + 1, 2] - ca[i, 2]
            nu = np.sqrt(ux * ux + uy * uy + uz * uz)
            nv = np.sqrt(vx * vx + vy * vy + vz * vz)
            out[i, 8] = (ux * vx + uy * vy + uz * vz) / (nu * nv)
            if okn2:
                # torsion (i-1, i, i+1, i+2)
                b1x, b1y, b1z = -ux, -uy, -uz
                b2x, b2y, b2z = vx, vy, vz
                b3x = ca[i + 2, 0] - ca[i + 1, 0]
                b3y = ca[i + 2, 1] - ca[i + 1, 1]
                b3z = ca[i + 2, 2] - ca[i + 1, 2]
                n1x = b1y * b2z - b1z * b2y
                n1y = b1z * b2x - b1x * b2z
                n1z = b1x * b2y - b1y * b2x
                n2x = b2y * b3z - b2z * b3y
                n2y = b2z * b3x - b2x * b3z
                n2z = b2x * b3y - b2y * b3x
                ux_, uy_, uz_ = b2x / nv, b2y / nv, b2z / nv
                m1x = n1y * uz_ - n1z * uy_
                m1y = n1z * ux_ - n1x * uz_
                m1z = n1x * uy_ - n1y * ux_
                x = n1x * n2x + n1y * n2y + n1z * n2z
                y = m1x * n2x + m1y * n2y + m1z * n2z
                t = np.arctan2(y, x)
                out[i, 9] = np.sin(t)
                out[i, 10] = np.cos(t)
        # contact counts and the nearest residue at least 3 positions away (same segment),
        # from squared distances (one vectorised pass per row)
        xi, yi, zi = xs[i], ys[i], zs[i]
        for j in range(n):
            dx = xs[j] - xi
            dy = ys[j] - yi
            dz = zs[j] - zi
            d2[j] = dx * dx + dy * dy + dz * dz
        c0 = -1  # the residue itself
        c1 = -1
        c2 = -1
        k0, k1, k2 = cut2[0], cut2[1], cut2[2]
        for j in range(n):
            v = d2[j]
            c0 += 1 if v < k0 else 0
            c1 += 1 if v < k1 else 0
            c2 += 1 if v < k2 else 0
        for j in range(max(0, i - 2), min(n, i + 3)):
            if seg[j] == seg[i]:
                d2[j] = np.inf
        best2 = np.inf
        jb = -1
        for j in range(n):
            if d2[j] < best2:
                best2 = d2[j]
                jb = j
        best = np.sqrt(best2)
        out[i, 11] = c0
        out[i, 12] = c1
        out[i, 13] = c2
        out[i, 14] = nan
        out[i, 15] = nan
        out[i, 16] = nan
        out[i, 17] = -best if jb >= 0 else nan
        if okp and okn and jb >= 0:
            # frame: e1 along CA(i+1) - CA(i-1), e2 towards the bend, e3 = e1 x e2
            e1x = ca[i + 1, 0] - ca[i - 1, 0]
            e1y = ca[i + 1, 1] - ca[i - 1, 1]
            e1z = ca[i + 1, 2] - ca[i - 1, 2]
            ne = np.sqrt(e1x * e1x + e1y * e1y + e1z * e1z)
            e1x, e1y, e1z = e1x / ne, e1y / ne, e1z / ne
            sx = (ca[i - 1, 0] - ca[i, 0]) + (ca[i + 1, 0] - ca[i, 0])
            sy = (ca[i - 1, 1] - ca[i, 1]) + (ca[i + 1, 1] - ca[i, 1])
            sz = (ca[i - 1, 2] - ca[i, 2]) + (ca[i + 1, 2] - ca[i, 2])
            p = sx * e1x + sy * e1y + sz * e1z
            bx, by, bz = sx - p * e1x, sy - p * e1y, sz - p * e1z
            nb = np.sqrt(bx * bx + by * by + bz * bz)
            e2x, e2y, e2z = bx / nb, by / nb, bz / nb
            e3x = e1y * e2z - e1z * e2y
            e3y = e1z * e2x - e1x * e2z
            e3z = e1x * e2y - e1y * e2x
            wx = (ca[jb, 0] - ca[i, 0]) / best
            wy = (ca[jb, 1] - ca[i, 1]) / best
            wz = (ca[jb, 2] - ca[i, 2]) / best
            out[i, 14] = wx * e1x + wy * e1y + wz * e1z
            out[i, 15] = wx * e2x + wy * e2y + wz * e2z
            out[i, 16] = wx * e3x + wy * e3y + wz * e3z


@njit(cache=True, nogil=True)
def _window(base, seg, centre, window_cols, half, out):
    """``out`` = [base[:, centre], base[i + k, window_cols] for k = -half..half] (NaN outside
    the segment)."""
    n = base.shape[0]
    nc = centre.shape[0]
    nw = window_cols.shape[0]
    for i in range(n):
        for c in range(nc):
            out[i, c] = base[i, centre[c]]
        col = nc
        for k in range(-half, half + 1):
            j = i + k
            ok = 0 <= j < n and seg[j] == seg[i]
            for c in range(nw):
                out[i, col + c] = base[j, window_cols[c]] if ok else np.nan
            col += nw


def _feature_flags() -> tuple[np.ndarray, np.ndarray]:
    """Containment flags and noise floors of the windowed columns (fixed by the recipe)."""
    contain = np.array([False] * 8 + [False] * 3 + [True] * 3 + [False] * 3 + [True])
    floor = np.array([DIST_FLOOR] * 8 + [ANGLE_FLOOR] * 3 + [COUNT_FLOOR] * 3
                     + [ANGLE_FLOOR] * 3 + [DIST_FLOOR])  # fmt: skip
    w = np.array(WINDOW_COLUMNS)
    reps = 2 * WINDOW + 1
    contain_out = np.concatenate([contain[CENTRE_COLUMNS]] + [contain[w]] * reps)
    floor_out = np.concatenate([floor[CENTRE_COLUMNS]] + [floor[w]] * reps)
    return contain_out, floor_out


_FLAGS = _feature_flags()
_CENTRE = np.array(CENTRE_COLUMNS, dtype=np.int64)
_WINCOLS = np.array(WINDOW_COLUMNS, dtype=np.int64)
_CUTOFFS = np.array(CONTACT_CUTOFFS, dtype=np.float64)


def geometric_features(st: Structure) -> Features:
    """Per-residue local-geometry features of a structure, windowed over +-2 residues.

    Parameters
    ----------
    st
        The residues (only CA atoms are used).

    Returns
    -------
    Features
        ``values`` of shape (L, 10 + 5 * 6): at the residue itself, the CA-CA distances to
        i +- 2..4 and the local-frame descriptor (3 direction cosines of the nearest residue
        at least 3 positions away, in a frame built from CA i-1, i, i+1, and minus its
        distance); and for each residue of the window i-2..i+2, the cosine of the virtual
        bond angle, sine and cosine of the virtual torsion (i-1, i, i+1, i+2) and the
        contact counts within 8 / 10 / 12 A. NaN where a residue is missing.
    """
    ca = np.ascontiguousarray(st.ca, dtype=np.float64)
    n = ca.shape[0]
    seg = _segments(st)
    base = np.empty((n, _N_BASE))
    _base_features(ca, seg, _DIST_OFFSETS, _CUTOFFS, base)
    values = np.empty((n, len(_CENTRE) + (2 * WINDOW + 1) * len(_WINCOLS)))
    _window(base, seg, _CENTRE, _WINCOLS, WINDOW, values)
    contain, floors = _FLAGS
    return Features(values, contain.copy(), "geometric", floors.copy())


def sequence_onehot(st: Structure) -> np.ndarray:
    """(L, 20) one-hot amino-acid identity (all zeros for non-standard residues)."""
    out = np.zeros((len(st), len(_AA)))
    pos = {a: i for i, a in enumerate(_AA)}
    for i, c in enumerate(st.sequence):
        if c in pos:
            out[i, pos[c]] = 1.0
    return out


def load_embedding(path: str | os.PathLike, st: Structure) -> Features:
    """Per-residue embeddings (L, d) from a ``.npy`` file, checked against the structure."""
    from otbio.io import _need_file

    p = _need_file(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:
        msg = f"cannot read {p} as .npy: {type(exc).__name__}: {exc}".splitlines()[0]
        raise InputError(msg) from exc
    if arr.ndim != 2:
        msg = f"embedding {p} must be a 2-D array (residues x features), got shape {arr.shape}"
        raise InputError(msg)
    if arr.shape[0] != len(st):
        msg = (
            f"embedding {p} has {arr.shape[0]} rows but {st.name} has {len(st)} protein "
            "residues; compute one row per residue of the same selection"
        )
        raise InputError(msg)
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        msg = f"embedding {p} contains NaN or infinite values"
        raise InputError(msg)
    return Features(np.ascontiguousarray(arr), np.ones(arr.shape[1], dtype=bool), "embedding")


def plasma_normalise(h: np.ndarray) -> np.ndarray:
    """PLASMA-PF's per-residue normalisation: zero mean and unit variance across features."""
    mu = h.mean(axis=1, keepdims=True)
    sd = h.std(axis=1, keepdims=True)
    return (h - mu) / np.where(sd > 0, sd, 1.0)


@njit(cache=True, nogil=True)
def _standardise(xq, xc, floor, use_floor, two, keep):
    """The numeric core of :func:`pair_features` (row-major passes, NaN-aware).

    Per column: mean and standard deviation over the residues of both proteins (NaN
    ignored; sd 1 when undefined or below 1e-9), widened by the floor; ``z = (x - mu) /
    sd``; ``h = [z, -z[:, two]]`` with NaN set to the column minimum (query) or maximum
    (target) of ``h`` over both; ``z[:, keep]`` with NaN as 0 for the score.
    """
    nq, d = xq.shape
    nc = xc.shape[0]
    t = two.shape[0]
    nk = keep.shape[0]
    cnt = np.zeros(d)
    s1 = np.zeros(d)
    for side in range(2):
        x = xq if side == 0 else xc
        for i in range(x.shape[0]):
            for k in range(d):
                v = x[i, k]
                if v == v:
                    s1[k] += v
                    cnt[k] += 1.0
    mu = np.zeros(d)
    for k in range(d):
        if cnt[k] > 0:
            mu[k] = s1[k] / cnt[k]
    s2 = np.zeros(d)
    for side in range(2):
        x = xq if side == 0 else xc
        for i in range(x.shape[0]):
            for k in range(d):
                v = x[i, k]
                if v == v:
                    s2[k] += (v - mu[k]) * (v - mu[k])
    inv = np.empty(d)
    for k in range(d):
        sd = np.sqrt(s2[k] / cnt[k]) if cnt[k] > 0 else 1.0
        if not (sd > 1e-9 and np.isfinite(sd)):
            sd = 1.0
        if use_floor:
            sd = np.sqrt(sd**2 + floor[k] ** 2)
        inv[k] = sd
    hq = np.empty((nq, d + t))
    hc = np.empty((nc, d + t))
    zq = np.zeros((nq, nk))
    zc = np.zeros((nc, nk))
    lo = np.full(d + t, np.inf)
    hi = np.full(d + t, -np.inf)
    for side in range(2):
        x = xq if side == 0 else xc
        h = hq if side == 0 else hc
        z = zq if side == 0 else zc
        for i in range(x.shape[0]):
            for k in range(d):
                h[i, k] = (x[i, k] - mu[k]) / inv[k]
            for c in range(t):
                h[i, d + c] = -h[i, two[c]]
            for c in range(nk):
                v = h[i, keep[c]]
                z[i, c] = v if v == v else 0.0
            for k in range(d + t):
                v = h[i, k]
                if v == v:
                    lo[k] = min(lo[k], v)
                    hi[k] = max(hi[k], v)
    for k in range(d + t):
        if not np.isfinite(lo[k]):
            lo[k] = 0.0
            hi[k] = 0.0
    for i in range(nq):
        for k in range(d + t):
            if hq[i, k] != hq[i, k]:
                hq[i, k] = lo[k]
    for i in range(nc):
        for k in range(d + t):
            if hc[i, k] != hc[i, k]:
                hc[i, k] = hi[k]
    return hq, hc, zq, zc


def pair_features(
    fq: Features,
    fc: Features,
    *,
    sq: np.ndarray | None = None,
    sc: np.ndarray | None = None,
    sequence_weight: float = 0.0,
    plasma_pf: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features of one query-target pair, ready for the hinge cost, and for the score.

    Each feature is standardised over the residues of both proteins. Two-sided features are
    entered twice, as ``z`` and ``-z``, so that the hinge cost
    :math:`\\sum_k \\max(0, x_k - y_k)` over them is the L1 distance :math:`\\sum |z_q - z_c|`;
    containment features (contact counts) enter once, so a query residue is not penalised for
    having fewer contacts than its partner. Missing values cost nothing: they are set to the
    column minimum in the query and the column maximum in the target.

    Returns
    -------
    hq, hc
        (L_q, d') and (L_c, d') inputs of ``PointCloud(hq, hc, cost="hinge")``.
    zq, zc
        (L_q, d) and (L_c, d) standardised features (NaN as 0), used by the score.
    """
    xq, xc = fq.values, fc.values
    if xq.shape[1] != xc.shape[1]:
        msg = (
            f"query and target features differ in width ({xq.shape[1]} vs {xc.shape[1]}); "
            "use embeddings from the same model for both"
        )
        raise InputError(msg)
    if plasma_pf:
        zq, zc = plasma_normalise(xq), plasma_normalise(xc)
        return zq, zc, zq, zc
    floor = fq.floor if fq.floor is not None else np.zeros(xq.shape[1])
    two = np.flatnonzero(~fq.containment)
    keep = two if two.size else np.arange(xq.shape[1])  # embeddings: every feature
    hq, hc, zq, zc = _standardise(
        np.ascontiguousarray(xq, dtype=np.float64),
        np.ascontiguousarray(xc, dtype=np.float64),
        np.ascontiguousarray(floor, dtype=np.float64),
        fq.floor is not None,
        two,
        keep,
    )
    if sequence_weight > 0 and sq is not None and sc is not None:
        w = 0.5 * sequence_weight
        hq = np.concatenate([hq, w * sq, -w * sq], axis=1)
        hc = np.concatenate([hc, w * sc, -w * sc], axis=1)
    return np.ascontiguousarray(hq), np.ascontiguousarray(hc), zq, zc
