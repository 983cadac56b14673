"""Registration quality measures.

Accuracy (when the truth is known): position RMSE, its ratio to the unregistered RMSE, and
the top-1 correspondence rate. Labels: kNN label transfer from the target after warping.
Topology (otbio's own definitions): kNN preservation (mean Jaccard index of each cell's k
nearest neighbours before and after the warp), fold-free fraction (share of the source's
Delaunay simplices whose orientation the warp keeps) and distance correlation (Pearson
correlation of pairwise distances among source cells before and after, on at most 2000 cells).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "distance_correlation",
    "fold_free_fraction",
    "knn_preservation",
    "label_transfer_accuracy",
    "rmse",
    "score",
    "top1_correspondence",
]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean squared distance between matched rows of ``a`` and ``b``."""
    return float(np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).sum(1).mean()))


def top1_correspondence(registered: np.ndarray, target: np.ndarray, truth: np.ndarray) -> float:
    """Share of source cells whose nearest target cell is their true partner ``truth[m]``."""
    from scipy.spatial import cKDTree

    _, nn = cKDTree(target).query(registered, k=1)
    return float((nn == np.asarray(truth)).mean())


def knn_preservation(before: np.ndarray, after: np.ndarray, k: int = 10) -> float:
    """Mean Jaccard index of each cell's k nearest neighbours before and after the warp."""
    from scipy.spatial import cKDTree

    n = before.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return 1.0
    _, a = cKDTree(before).query(before, k=k + 1)
    _, b = cKDTree(after).query(after, k=k + 1)
    a, b = np.sort(a[:, 1:], 1), np.sort(b[:, 1:], 1)
    inter = np.array([np.intersect1d(a[i], b[i], assume_unique=True).size for i in range(n)])
    return float((inter / (2 * k - inter)).mean())


def fold_free_fraction(before: np.ndarray, after: np.ndarray) -> float:
    """Share of the source's Delaunay triangles (tetrahedra in 3-D) whose orientation is kept."""
    from scipy.spatial import Delaunay

    tri = Delaunay(before).simplices

    def orient(p):
        e = p[tri[:, 1:]] - p[tri[:, :1]]
        return np.linalg.det(e)

    ob, oa = orient(before), orient(after)
    keep = np.abs(ob) > 1e-12 * np.abs(ob).max()
    return float((np.sign(ob[keep]) == np.sign(oa[keep])).mean())


def distance_correlation(
    before: np.ndarray, after: np.ndarray, *, max_points: int = 2000, seed: int = 0
) -> float:
    """Pearson correlation of pairwise distances among source cells before and after."""
    from scipy.spatial.distance import pdist

    n = before.shape[0]
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    return float(np.corrcoef(pdist(before[idx]), pdist(after[idx]))[0, 1])


def label_transfer_accuracy(
    registered: np.ndarray, source_labels, target: np.ndarray, target_labels, k: int = 5
) -> float:
    """Share of source cells whose label equals the majority label of their k nearest
    target cells after warping."""
    from scipy.spatial import cKDTree

    tl = np.asarray(target_labels).astype(str)
    sl = np.asarray(source_labels).astype(str)
    k = min(k, target.shape[0])
    _, nb = cKDTree(target).query(registered, k=k)
    nb = nb.reshape(len(sl), -1)
    votes = tl[nb]
    pred = np.empty(len(sl), dtype=object)
    for i in range(len(sl)):
        vals, cnt = np.unique(votes[i], return_counts=True)
        pred[i] = vals[np.argmax(cnt)]
    return float((pred == sl).mean())


def score(
    source: np.ndarray,
    registered: np.ndarray,
    target: np.ndarray,
    *,
    true_positions: np.ndarray | None = None,
    truth_index: np.ndarray | None = None,
    source_labels=None,
    target_labels=None,
    k: int = 10,
) -> dict[str, float]:
    """All measures that the given inputs allow, as an ordered dict name -> value."""
    out: dict[str, float] = {}
    if true_positions is not None:
        r0 = rmse(source, true_positions)
        r1 = rmse(registered, true_positions)
        out["rmse_before"] = r0
        out["rmse_after"] = r1
        out["rmse_reduction"] = 1.0 - r1 / r0 if r0 > 0 else float("nan")
    if truth_index is not None:
        out["top1_before"] = top1_correspondence(source, target, truth_index)
        out["top1_after"] = top1_correspondence(registered, target, truth_index)
    if source_labels is not None and target_labels is not None:
        out["label_transfer_before"] = label_transfer_accuracy(
            source, source_labels, target, target_labels
        )
        out["label_transfer_after"] = label_transfer_accuracy(
            registered, source_labels, target, target_labels
        )
    out["knn_preservation"] = knn_preservation(source, registered, k)
    out["fold_free_fraction"] = fold_free_fraction(source, registered)
    out["distance_correlation"] = distance_correlation(source, registered)
    return out
