"""Figure of ``otbio classify``: where and which features the LOT classifier weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from otbio.plot._base import pyplot

__all__ = ["classifier_figure"]


def classifier_figure(
    z: np.ndarray,
    r: np.ndarray,
    w: np.ndarray,
    feature_names: Sequence[str],
    feature_values: np.ndarray,
    *,
    point_labels: Sequence[str] | None = None,
    n_label: int = 8,
    title: str = "",
    feature_kind: str = "feature",
):
    """Reference points in 2-D coloured by weight norm, with weight arrows; top features.

    ``z`` (k, d) support, ``r`` (k,) weights, ``w`` (k, d) classifier weights per reference
    point (signed for two classes). The 2-D view is the two principal axes of the weighted
    support; arrows are ``w_k`` projected on them (longest arrow = 15% of the view).
    ``feature_values`` are the importances of ``feature_names`` (bar plot, top first).
    """
    plt = pyplot()
    z = np.asarray(z, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    mu = r @ z
    zc = (z - mu) * np.sqrt(r)[:, None]
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    axes = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
    xy = (z - mu) @ axes.T
    wxy = w @ axes.T
    norm = np.linalg.norm(w, axis=1)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.3, 1]})
    order = np.argsort(norm)  # strongest on top
    sc = ax.scatter(
        xy[order, 0],
        xy[order, 1],
        c=norm[order],
        s=20 + 2000 * r[order],
        cmap="viridis",
        edgecolors="k",
        linewidths=0.3,
    )
    fig.colorbar(sc, ax=ax, label="weight norm |w_k|")
    ext = float(np.ptp(xy, axis=0).max()) or 1.0
    scale = 0.15 * ext / max(float(np.linalg.norm(wxy, axis=1).max()), 1e-300)
    top = np.argsort(-norm)[: max(n_label, 0)]
    for i in np.argsort(-norm)[: min(len(norm), 40)]:
        ax.annotate(
            "",
            xy=(xy[i, 0] + scale * wxy[i, 0], xy[i, 1] + scale * wxy[i, 1]),
            xytext=(xy[i, 0], xy[i, 1]),
            arrowprops={"arrowstyle": "->", "color": "crimson", "lw": 1.0},
        )
    if point_labels is not None:
        for i in top:
            ax.annotate(
                str(point_labels[i]), xy[i], fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
    ax.set_xlabel("reference view 1 (principal axis of the support)")
    ax.set_ylabel("reference view 2")
    ax.set_title("reference points: weight norm and direction (40 largest)")
    n = min(15, len(feature_names))
    vals = np.asarray(feature_values, dtype=np.float64)[:n]
    bx.barh(np.arange(n)[::-1], vals, color="steelblue")
    bx.set_yticks(np.arange(n)[::-1])
    bx.set_yticklabels([str(f) for f in list(feature_names)[:n]], fontsize=8)
    bx.set_xlabel("weight norm over reference points")
    bx.set_title(f"top {n} {feature_kind}s")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
