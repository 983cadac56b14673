"""Registration figure: both slices overlaid before and after the warp."""

from __future__ import annotations

import numpy as np

from otbio.plot._base import pyplot

__all__ = ["registration_figure"]


def registration_figure(
    source: np.ndarray,
    registered: np.ndarray,
    target: np.ndarray,
    *,
    source_color=None,
    target_color=None,
    title: str = "",
):
    """Two panels: source and target overlaid before, registered source and target after.

    Args:
        source, registered, target: coordinates (n, 2|3); only the first two axes are drawn.
        source_color, target_color: optional category labels per cell (same categories in
            both); without them the source is orange and the target blue.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), constrained_layout=True)
    cats = None
    if source_color is not None and target_color is not None:
        cats = sorted(set(map(str, source_color)) | set(map(str, target_color)))
        cmap = plt.get_cmap("tab20")
        lut = {c: cmap(i % 20) for i, c in enumerate(cats)}
    for ax, pts, name in ((axes[0], source, "before"), (axes[1], registered, "after")):
        if cats is None:
            ax.scatter(target[:, 0], target[:, 1], s=8, c="tab:blue", alpha=0.6, label="target")
            ax.scatter(pts[:, 0], pts[:, 1], s=8, c="tab:orange", alpha=0.6, label="source")
        else:
            ax.scatter(
                target[:, 0],
                target[:, 1],
                s=10,
                marker="o",
                alpha=0.5,
                c=[lut[str(c)] for c in target_color],
                label="target (o)",
            )
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=10,
                marker="x",
                alpha=0.8,
                c=[lut[str(c)] for c in source_color],
                label="source (x)",
            )
        ax.set_title(f"{name} registration")
        ax.set_aspect("equal")
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
