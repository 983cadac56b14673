"""Figures of the LOT commands: a 2-D view of the sample embedding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from otbio.plot._base import place_labels, pyplot

__all__ = ["embedding_pca", "lot_embedding_figure"]


def embedding_pca(v: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the rows of ``v`` (centred, by SVD): coordinates (n, 2) and explained ratios."""
    v = np.asarray(v, dtype=np.float64)
    vc = v - v.mean(0)
    u, s, _ = np.linalg.svd(vc, full_matrices=False)
    m = min(n_components, s.size)
    coords = u[:, :m] * s[:m]
    if m < n_components:
        coords = np.hstack([coords, np.zeros((v.shape[0], n_components - m))])
    # fix signs so that the figure is the same on every machine
    for j in range(m):
        if coords[np.argmax(np.abs(coords[:, j])), j] < 0:
            coords[:, j] *= -1
    tot = float((s**2).sum()) or 1.0
    ratio = np.zeros(n_components)
    ratio[:m] = s[:m] ** 2 / tot
    return coords, ratio


def lot_embedding_figure(
    coords: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    ratio: np.ndarray | None = None,
    color_by: str = "",
    title: str = "LOT embedding",
):
    """Scatter of samples in the first two principal components of their LOT vectors."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    coords = np.asarray(coords)
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=30, color="C0")
    else:
        labels = np.asarray([str(x) for x in labels])
        for i, lab in enumerate(dict.fromkeys(labels)):
            sel = labels == lab
            ax.scatter(coords[sel, 0], coords[sel, 1], s=30, color=f"C{i % 10}", label=lab)
        ax.legend(title=color_by or None, fontsize=8, frameon=False)
    r = ratio if ratio is not None else np.zeros(2)
    ax.set_xlabel(f"embedding PC1 ({100 * r[0]:.0f}% of the variance between samples)")
    ax.set_ylabel(f"embedding PC2 ({100 * r[1]:.0f}%)")
    ax.set_title(title)
    fig.tight_layout()  # before the labels: they are placed in the final layout
    if names is not None and len(names) <= 40:  # names where they fit, none on top of another
        place_labels(ax, coords, [str(nm) for nm in names], fontsize=6, color="0.3")
    return fig
