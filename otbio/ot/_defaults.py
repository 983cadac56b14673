"""Engine defaults shared by every entry point (no heavy imports: read by the CLI at start)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DENSE_MAX_ENTRIES", "SINKHORN_DEFAULTS", "SinkhornDefaults"]

#: the CPU Sinkhorn takes its dense route (one n x m cost matrix, one serial Numba loop) up to
#: this many cost entries (n * m, about 4 million); larger problems stream the cost online
DENSE_MAX_ENTRIES = 1 << 22


@dataclass(frozen=True)
class SinkhornDefaults:
    """The Sinkhorn defaults of every entry point, defined once.

    :class:`otbio.ot.Sinkhorn`, ``otbio transport`` and ``otbio embed``
    (:func:`otbio.lot.embed`) all take these: epsilon 1% of the mean cost, reached by adaptive
    epsilon scaling (halving from the mean cost when the target epsilon is not easy; see
    ``Sinkhorn.scaling_iter``), L1 marginal error below 1e-5, at most 10,000 iterations in
    all (scaling levels included). On the bundled cohort (``test_data/pbmc_cohort.h5ad``, 24
    donors) every donor converges against a 128- or 512-point reference (at most about 7,900
    iterations), and two donors converge with each other in about 500 iterations.
    """

    epsilon: float = 0.01
    relative_epsilon: Literal["mean", "max"] | None = "mean"
    epsilon_scaling: float | None = 0.5
    tol: float = 1e-5
    max_iter: int = 10_000


SINKHORN_DEFAULTS = SinkhornDefaults()
