"""Figure of ``otbio classify``: where and which features the LOT classifier weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from otbio.plot._base import place_labels, pyplot

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
    norm: np.ndarray | None = None,
    towards: str | None = None,
):
    """Reference points in 2-D coloured by weight norm, with weight arrows; top features.

    ``z`` (k, d) support, ``r`` (k,) weights, ``w`` (k, d) classifier weights per reference
    point (signed for two classes). The 2-D view is the two principal axes of the weighted
    support; arrows are ``w_k`` projected on them (longest arrow = 15% of the view).
    ``feature_values`` are the importances of ``feature_names`` (bar plot, top first).
    ``norm`` (k,) colours the points (default ``|w_k|``): pass the ``weight_norm`` of the
    points table so that the figure and the table share one scale. Cell-type labels are
    placed without overlap (:func:`otbio.plot._base.place_labels`); dot area is the share of
    cells at the point, with a size legend.
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
    norm = np.linalg.norm(w, axis=1) if norm is None else np.asarray(norm, dtype=np.float64)
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
    fig.colorbar(
        sc,
        ax=ax,
        label="how much the classifier uses the point\n(weight_norm, as in reference_points.tsv)",
    )
    shares = [s for s in (0.005, 0.01, 0.02, 0.05) if s <= max(float(r.max()), 0.005)][-3:]
    for s in shares:  # the size legend: dot area = share of cells at the point
        ax.scatter([], [], s=20 + 2000 * s, color="lightgray", edgecolors="k", linewidths=0.3,
                   label=f"{100 * s:g}% of cells")  # fmt: skip
    ax.legend(title="dot size", fontsize=7, title_fontsize=7, loc="best", frameon=False,
              labelspacing=1.2)  # fmt: skip
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
    ax.set_xlabel("reference points in cell space: direction of largest spread (axis 1)")
    ax.set_ylabel("direction of second largest spread (axis 2)")
    arrows = f"arrows: change that points towards '{towards}'" if towards else "arrows: weights"
    ax.set_title(f"where the classes differ ({arrows}, 40 largest)", fontsize=9)
    n = min(15, len(feature_names))
    vals = np.asarray(feature_values, dtype=np.float64)[:n]
    bx.barh(np.arange(n)[::-1], vals, color="steelblue")
    bx.set_yticks(np.arange(n)[::-1])
    bx.set_yticklabels([str(f) for f in list(feature_names)[:n]], fontsize=8)
    bx.set_xlabel("importance (weight over all reference points)")
    bx.set_title(f"top {n} {feature_kind}s")
    if title:
        fig.suptitle(title)
    fig.tight_layout()  # before the labels: they are placed in the final layout
    if point_labels is not None:
        place_labels(ax, xy[top], [point_labels[i] for i in top])
    return fig
