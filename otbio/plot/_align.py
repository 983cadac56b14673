"""Heat map of a residue-level alignment plan (``otbio align --plot``)."""

from __future__ import annotations

import numpy as np

from otbio.plot._base import pyplot

__all__ = ["alignment_figure"]


def alignment_figure(
    plan: np.ndarray,
    *,
    pairs: np.ndarray | None = None,
    query_labels: list[str] | None = None,
    target_labels: list[str] | None = None,
    title: str = "",
):
    """Heat map of the plan (query residues as rows, target residues as columns).

    Parameters
    ----------
    plan
        (L_q, L_c) plan.
    pairs
        (n, 2) index pairs above the threshold, drawn as open circles.
    query_labels, target_labels
        Residue labels for the ticks (about 10 ticks are shown per axis).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    nq, nc = plan.shape
    w = float(np.clip(3 + nc / 25, 5, 14))
    h = float(np.clip(2 + nq / 25 * (w / max(3 + nc / 25, 1)), 3, 12))
    fig, ax = plt.subplots(figsize=(w, h))
    im = ax.imshow(plan, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    if pairs is not None and len(pairs):
        ax.scatter(
            pairs[:, 1], pairs[:, 0], s=12, facecolors="none", edgecolors="red", linewidths=0.6
        )
    for labels, n, setter in (
        (query_labels, nq, (ax.set_yticks, ax.set_yticklabels)),
        (target_labels, nc, (ax.set_xticks, ax.set_xticklabels)),
    ):
        if labels is not None:
            ticks = np.unique(np.linspace(0, n - 1, min(n, 10)).round().astype(int))
            setter[0](ticks)
            setter[1]([labels[t] for t in ticks], fontsize=7)
    ax.set_xlabel("target residue")
    ax.set_ylabel("query residue")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(
        im,
        ax=ax,
        label="plan: share of the query residue\nmatched to the target residue",
        fraction=0.04,
    )
    fig.tight_layout()
    return fig
