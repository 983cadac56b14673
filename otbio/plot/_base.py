"""Shared matplotlib setup: a non-interactive backend, one style."""

from __future__ import annotations


def pyplot():
    """Return matplotlib.pyplot with the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
