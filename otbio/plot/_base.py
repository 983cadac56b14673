"""Shared matplotlib setup: a non-interactive backend, one style."""

from __future__ import annotations


def pyplot():
    """Return matplotlib.pyplot with the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def place_labels(ax, xy, labels, *, fontsize: float = 7, color: str = "black") -> list:
    """Write ``labels`` next to the points ``xy`` without letting two labels overlap.

    Greedy, in the order given (put the most important first): each label tries offsets
    around its point, nearest first, and takes the first whose box overlaps no label placed
    before it and stays inside the axes; a label that finds no free place is left out (the
    figure shows fewer names rather than a pile of them). Identical labels of nearby points
    are written once. Returns the text objects drawn.
    """
    import numpy as np

    fig = ax.figure
    fig.canvas.draw()  # a renderer, and the final axes limits
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    steps = (4, 10, 18, 28)
    dirs = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
    placed, boxes, written = [], [], []
    for (px, py), lab in zip(np.asarray(xy, dtype=float), labels):
        lab = str(lab)
        here = ax.transData.transform((px, py))
        if any(t == lab and np.hypot(*(here - p)) < 40 for t, p in written):
            continue  # the same name already stands close by
        for s in steps:
            done = False
            for dx, dy in dirs:
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
                t = ax.annotate(
                    lab, (px, py), xytext=(dx * s, dy * s), textcoords="offset points",
                    fontsize=fontsize, color=color, ha=ha, va=va,
                )  # fmt: skip
                bb = t.get_window_extent(renderer).expanded(1.05, 1.1)
                inside = (
                    bb.x0 >= frame.x0 and bb.x1 <= frame.x1
                    and bb.y0 >= frame.y0 and bb.y1 <= frame.y1
                )  # fmt: skip
                if inside and not any(bb.overlaps(o) for o in boxes):
                    boxes.append(bb)
                    placed.append(t)
                    written.append((lab, here))
                    done = True
                    break
                t.remove()
            if done:
                break
    return placed
