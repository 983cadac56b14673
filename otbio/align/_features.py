"""Residue features for the alignment: local geometry from CA coordinates, or embeddings.

The geometric recipe follows the design note: per residue, CA-CA distances to the residues
i +- 1..4, the virtual bond angle and torsion, contact counts within 8 / 10 / 12 A and a local
frame descriptor (the direction and distance of the nearest residue that is not a sequence
neighbour, in a frame built from CA i-1, i, i+1, in the spirit of Foldseek's 3Di); these are
concatenated over a window of +-2 residues. Everything is computed in a few milliseconds with
NumPy, from the coordinates alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

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
    ca = st.ca
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    brk = (step > BREAK_DISTANCE) | (st.chain[1:] != st.chain[:-1])
    return np.concatenate([[0], np.cumsum(brk)])


def _shift(arr: np.ndarray, seg: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``arr[i + k]`` and a mask saying whether i + k exists in the same segment."""
    n = arr.shape[0]
    idx = np.arange(n) + k
    ok = (idx >= 0) & (idx < n)
    idx_c = np.clip(idx, 0, n - 1)
    ok &= seg[idx_c] == seg
    return arr[idx_c], ok


def geometric_features(st: Structure) -> Features:
    """Per-residue local-geometry features of a structure, windowed over +-2 residues.

    Parameters
    ----------
    st
        The residues (only CA atoms are used).

    Returns
    -------
    Features
        ``values`` of shape (L, 5 * 18): for each residue of the window i-2..i+2, the 8 CA-CA
        distances to i +- 1..4, the cosine of the virtual bond angle, sine and cosine of the
        virtual torsion (i-1, i, i+1, i+2), contact counts within 8 / 10 / 12 A, and the
        local-frame descriptor (3 direction cosines and the distance of the nearest residue
        at least 3 positions away). NaN where a residue is missing.
    """
    ca = st.ca
    n = ca.shape[0]
    seg = _segments(st)
    cols: list[np.ndarray] = []
    contain: list[bool] = []
    floor: list[float] = []
    # CA-CA distances i +- 1..4
    for k in (-4, -3, -2, -1, 1, 2, 3, 4):
        other, ok = _shift(ca, seg, k)
        d = np.linalg.norm(other - ca, axis=1)
        cols.append(np.where(ok, d, np.nan))
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
    # virtual torsion (i-1, i, i+1, i+2)
    b1 = ca - prev
    b2 = nxt - ca
    b3 = nxt2 - nxt
    n1 = np.cross(b1, b2)
    n2 = np.cross(b2, b3)
    with np.errstate(invalid="ignore", divide="ignore"):
        b2u = b2 / np.linalg.norm(b2, axis=1, keepdims=True)
        m1 = np.cross(n1, b2u)
        x = np.einsum("ij,ij->i", n1, n2)
        y = np.einsum("ij,ij->i", m1, n2)
        tors = np.arctan2(y, x)
    okt = okp & okn & okn2
    cols.append(np.where(okt, np.sin(tors), np.nan))
    cols.append(np.where(okt, np.cos(tors), np.nan))
    contain += [False, False]
    floor += [ANGLE_FLOOR, ANGLE_FLOOR]
    # contact counts
    from scipy.spatial.distance import cdist

    dmat = cdist(ca, ca)
    for cut in CONTACT_CUTOFFS:
        cols.append((dmat < cut).sum(1).astype(np.float64) - 1.0)
        contain.append(True)
        floor.append(COUNT_FLOOR)
    # local frame: e1 along CA(i+1) - CA(i-1), e2 towards the bend, e3 = e1 x e2
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = nxt - prev
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        bend = (u + v) - np.einsum("ij,ij->i", u + v, e1)[:, None] * e1
        e2 = bend / np.linalg.norm(bend, axis=1, keepdims=True)
        e3 = np.cross(e1, e2)
    far = dmat.copy()
    idx = np.arange(n)
    near_seq = np.abs(idx[:, None] - idx[None, :]) < 3
    far[near_seq & (seg[:, None] == seg[None, :])] = np.inf
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
    # minus the distance: a containment feature (in a motif cut out of a chain the nearest
    # residue can only be farther away than in the chain)
    cols.append(np.where(np.isfinite(dj), -dj, np.nan))
    contain.append(True)
    floor.append(DIST_FLOOR)
    base = np.column_stack(cols)
    base_contain = np.array(contain)
    base_floor = np.array(floor)
    # window +-2: concatenate the neighbours' angles and contact counts (NaN outside the
    # segment); distances and the frame descriptor already look along the chain
    blocks = [base[:, CENTRE_COLUMNS]]
    contain_out = [base_contain[CENTRE_COLUMNS]]
    floor_out = [base_floor[CENTRE_COLUMNS]]
    win = base[:, WINDOW_COLUMNS]
    for k in range(-WINDOW, WINDOW + 1):
        other, ok = _shift(win, seg, k)
        blocks.append(np.where(ok[:, None], other, np.nan))
        contain_out.append(base_contain[WINDOW_COLUMNS])
        floor_out.append(base_floor[WINDOW_COLUMNS])
    values = np.ascontiguousarray(np.concatenate(blocks, axis=1))
    containment = np.concatenate(contain_out)
    floors = np.concatenate(floor_out)
    return Features(values, containment, "geometric", floors)


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
    both = np.concatenate([xq, xc], axis=0)
    with np.errstate(invalid="ignore"):
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
    # the score compares the two-sided features only (containment features differ on
    # purpose between a motif and its parent chain)
    keep = two if two.any() else np.ones_like(two)  # embeddings: every feature
    zq = np.nan_to_num(zq[:, keep])
    zc = np.nan_to_num(zc[:, keep])
    return np.ascontiguousarray(hq), np.ascontiguousarray(hc), zq, zc
