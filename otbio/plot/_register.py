"""Registration figure: both slices overlaid before and after the warp."""

from __future__ import annotations

import numpy as np

from otbio.plot._base import pyplot

__all__ = ["registration_figure"]

_METRIC_NAMES = {  # plain words: a reader who never ran the tool reads the title
    "rmse_reduction": "RMSE cut",
    "fold_free_fraction": "share of triangles not folded",
    "knn_preservation": "neighbours kept",
    "label_transfer_after": "label transfer",
    "distance_correlation": "distances kept (corr.)",
}


def registration_figure(
    source: np.ndarray,
    registered: np.ndarray,
    target: np.ndarray,
    *,
    source_color=None,
    target_color=None,
    source_name: str = "source",
    target_name: str = "target",
    unit: str = "coordinate units",
    metrics: dict | None = None,
    title: str = "",
):
    """Two panels on the same axes: source and target overlaid before, registered after.

    Args:
        source, registered, target: coordinates (n, 2|3); only the first two axes are drawn.
        source_color, target_color: optional category labels per cell (same categories in
            both); without them the source is orange and the target blue.
        source_name, target_name: slice names for the legend (e.g. the file names).
        unit: unit of the coordinates, for the axis labels.
        metrics: quality measures (:func:`otbio.register.score`); the known ones go in the
            title.
        title: first line of the title.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), constrained_layout=True)
    allp = np.vstack([source[:, :2], registered[:, :2], target[:, :2]])
    lo, hi = allp.min(0), allp.max(0)
    pad = 0.03 * float((hi - lo).max() or 1.0)
    cats = None
    if source_color is not None and target_color is not None:
        cats = sorted(set(map(str, source_color)) | set(map(str, target_color)))
        cmap = plt.get_cmap("tab20")
        lut = {c: cmap(i % 20) for i, c in enumerate(cats)}
    for ax, pts, name in (
        (axes[0], source, f"before: {source_name} as given"),
        (axes[1], registered, f"after: {source_name} registered"),
    ):
        if cats is None:
            ax.scatter(target[:, 0], target[:, 1], s=8, c="tab:blue", alpha=0.6, label=target_name)
            ax.scatter(pts[:, 0], pts[:, 1], s=8, c="tab:orange", alpha=0.6, label=source_name)
        else:
            ax.scatter(
                target[:, 0],
                target[:, 1],
                s=10,
                marker="o",
                alpha=0.5,
                c=[lut[str(c)] for c in target_color],
                label=f"{target_name} (o)",
            )
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=10,
                marker="x",
                alpha=0.8,
                c=[lut[str(c)] for c in source_color],
                label=f"{source_name} (x)",
            )
        ax.set_title(name)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"x ({unit})")
        ax.set_ylabel(f"y ({unit})")
        ax.legend(loc="best", fontsize=8)
    lines = [title] if title else []
    if metrics:
        known = [
            f"{label} {metrics[k]:.3f}"
            for k, label in _METRIC_NAMES.items()
            if k in metrics and np.isfinite(metrics[k])
        ]
        if known:
            lines.append(", ".join(known))
    if lines:
        fig.suptitle("\n".join(lines))
    return fig
