"""Free-support Wasserstein barycenter of weighted point clouds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from otbio._errors import InputError

__all__ = ["BarycenterOutput", "barycenter"]

log = logging.getLogger("otbio")


@dataclass(frozen=True)
class BarycenterOutput:
    """Support ``x`` (k, d) and weights ``a`` (k,) of the barycenter, with its history."""

    x: np.ndarray
    a: np.ndarray
    n_iter: int
    converged: bool
    cost: float
    trace: np.ndarray


def barycenter(
    measures: Sequence[tuple[np.ndarray, np.ndarray | None]],
    *,
    weights: np.ndarray | None = None,
    init: np.ndarray | None = None,
    init_weights: np.ndarray | None = None,
    size: int | None = None,
    solver: Literal["exact", "sinkhorn"] = "exact",
    epsilon: float = 0.01,
    max_iter: int = 50,
    tol: float = 1e-7,
    seed: int = 0,
    jobs: int = 1,
    solver_kw: dict[str, Any] | None = None,
) -> BarycenterOutput:
    """Free-support Wasserstein-2 barycenter of ``measures`` with fixed support weights.

    .. math::
        \\min_{z_1..z_k} \\sum_i w_i W_2^2\\big(\\textstyle\\sum_k r_k \\delta_{z_k}, \\mu_i\\big)

    by the fixed-point iteration of Cuturi and Doucet (2014): solve OT from the current
    support to each measure, move each support point to the weighted mean of its barycentric
    projections :math:`z_k \\leftarrow \\sum_i w_i (P_i Y_i)_k / r_k`, repeat until the
    support moves less than ``tol`` (relative to its spread).

    Parameters
    ----------
    measures
        ``(points, weights)`` pairs; weights None means uniform.
    weights
        Weight of each measure (uniform by default), non-negative, summing to one.
    init, init_weights
        Initial support and its weights; by default ``size`` points drawn (seeded) from the
        pooled measures, uniform weights.
    solver
        ``"exact"`` (POT's network simplex inside, parallel over measures with ``jobs``) or
        ``"sinkhorn"`` (the engine's solver, relative epsilon on the mean cost).
    """
    from otbio.io import check_points, check_weights
    from otbio.ot._exact import emd, map_batch
    from otbio.ot._sinkhorn import sinkhorn

    if len(measures) == 0:
        msg = "barycenter needs at least one measure"
        raise InputError(msg)
    ms = []
    for i, (pts, w) in enumerate(measures):
        p = check_points(pts, name=f"points of measure {i}")
        ms.append((p, check_weights(w, p.shape[0], name=f"weights of measure {i}")))
    d = ms[0][0].shape[1]
    if any(p.shape[1] != d for p, _ in ms):
        msg = "all measures must have the same dimension"
        raise InputError(msg)
    lam = check_weights(weights, len(ms), name="measure weights")
    lam = lam / lam.sum()
    if init is None:
        rng = np.random.default_rng(seed)
        pooled = np.concatenate([p for p, _ in ms])
        k = size or min(len(pooled), max(p.shape[0] for p, _ in ms))
        init = pooled[rng.choice(len(pooled), size=k, replace=len(pooled) < k)]
    z = check_points(init, name="initial support").copy()
    if z.shape[1] != d:
        msg = "initial support has another dimension than the measures"
        raise InputError(msg)
    r = check_weights(init_weights, z.shape[0], name="support weights")
    r = r / r.sum()
    kw = dict(solver_kw or {})

    def solve(item):
        p, w = item
        if solver == "exact":
            out = emd(z, p, r, w)
        else:
            kw.setdefault("relative_epsilon", "mean")
            kw.setdefault("epsilon_scaling", None)
            out = sinkhorn(z, p, r, w, epsilon=epsilon, warn=False, **kw)
        t = out.plan_dot(p) / r[:, None]
        return t, out.cost

    trace = []
    converged = False
    spread = float(np.sqrt(((z - z.mean(0)) ** 2).sum(1).mean())) or 1.0
    it = 0
    total = 0.0
    for it in range(1, max_iter + 1):
        res = map_batch(solve, ms, jobs=jobs, threads=solver == "exact")
        z_new = sum(li * t for li, (t, _) in zip(lam, res))
        total = float(sum(li * c for li, (_, c) in zip(lam, res)))
        move = float(np.sqrt(((z_new - z) ** 2).sum(1).mean())) / spread
        trace.append(move)
        z = z_new
        log.debug("barycenter iteration %d: cost %.6g, move %.3e", it, total, move)
        if move < tol:
            converged = True
            break
    return BarycenterOutput(
        x=z, a=r, n_iter=it, converged=converged, cost=total, trace=np.asarray(trace)
    )
