"""Feature-sensitive downsampling: landmarks where expression or the tissue edge changes.

Each cell gets a weight from its neighbourhood (its ``k`` nearest cells, a KD-tree stand-in
for the voxel of the design note): the expression variance among the neighbours, plus a
tissue-edge term (how far the neighbours' centroid sits from the cell, relative to their
spread; large at the boundary), plus a small constant so that no region is left empty.
Landmarks are drawn without replacement with probability proportional to the weight.
"""

from __future__ import annotations

import numpy as np

__all__ = ["feature_sensitive_sample"]


def feature_sensitive_sample(
    pts: np.ndarray, feats: np.ndarray | None, size: int, rng, *, k: int = 10, const: float = 0.5
) -> np.ndarray:
    """Indices of ``size`` landmarks (sorted), or all indices when ``size >= len(pts)``."""
    from scipy.spatial import cKDTree

    n = pts.shape[0]
    if size >= n:
        return np.arange(n)
    k = min(k + 1, n)
    dist, nb = cKDTree(pts).query(pts, k=k)
    spread = dist[:, 1:].mean(1) + 1e-12
    edge = np.linalg.norm(pts[nb].mean(1) - pts, axis=1) / spread
    w = edge / (edge.mean() + 1e-12)
    if feats is not None and feats.shape[1]:
        fv = ((feats[nb] - feats[nb].mean(1, keepdims=True)) ** 2).sum(-1).mean(1)
        w = w + fv / (fv.mean() + 1e-12)
    w = w + const
    idx = rng.choice(n, size=size, replace=False, p=w / w.sum())
    return np.sort(idx)
