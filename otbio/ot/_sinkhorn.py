"""Log-domain Sinkhorn with an online cost, epsilon scaling and warm starts."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from otbio._errors import ConvergenceWarning, InputError
from otbio.ot import _kernels as K
from otbio.ot._backend import get_backend
from otbio.ot._defaults import DENSE_MAX_ENTRIES, SINKHORN_DEFAULTS, SinkhornDefaults
from otbio.ot._geometry import CostName, PointCloud

__all__ = [
    "DENSE_MAX_ENTRIES",
    "SINKHORN_DEFAULTS",
    "Sinkhorn",
    "SinkhornDefaults",
    "SinkhornOutput",
    "resolve_epsilon",
    "sinkhorn",
]


log = logging.getLogger("otbio")


def _log_weights(w: np.ndarray) -> np.ndarray:
    """log(w), -inf where w is 0 (without a floating-point warning)."""
    return np.log(w, out=np.full(np.shape(w), -np.inf), where=np.asarray(w) > 0)


def _weights(w, n: int, name: str) -> np.ndarray:
    """:func:`otbio.io.check_weights` with a quick path for a valid float64 vector."""
    if isinstance(w, np.ndarray) and w.dtype == np.float64 and w.shape == (n,):
        total = w.sum()
        if np.isfinite(total) and total > 0 and w.min() >= 0:
            return np.ascontiguousarray(w)
    from otbio.io import check_weights

    return check_weights(w, n, name=name, dtype=np.float64)


@dataclass(frozen=True)
class SinkhornOutput:
    """Result of :class:`Sinkhorn`: dual potentials and a plan that is streamed, not stored.

    The plan is :math:`P_{ij} = a_i b_j \\exp((f_i + g_j - c_{ij}) / \\varepsilon)`.

    Attributes
    ----------
    f, g
        Dual potentials, shapes (n,) and (m,).
    cost
        Transport cost :math:`\\langle P, C \\rangle` (without the entropy term), as POT's
        ``sinkhorn2`` returns it.
    n_iter, converged, marginal_error
        Iterations run (all epsilon levels), whether the tolerance was reached, and the final
        error: the L1 error of the row marginal (balanced) or the largest change of a
        potential divided by epsilon (unbalanced).
    trace
        The error at every check, in order.
    """

    geom: PointCloud
    a: np.ndarray
    b: np.ndarray
    f: np.ndarray
    g: np.ndarray
    epsilon: float
    reg_m: float | None
    n_iter: int
    converged: bool
    marginal_error: float
    cost: float
    trace: np.ndarray
    device: str = "cpu"
    _be: Any = field(default=None, repr=False, compare=False)
    _dense: Any = field(default=None, repr=False, compare=False)

    # -- plan reductions -------------------------------------------------------------
    def _sides(self, axis: int):
        if axis == 1:
            return self.geom, self.f, self.g, self.a, self.b
        if axis == 0:
            return self.geom.transpose(), self.g, self.f, self.b, self.a
        msg = "axis must be 0 or 1"
        raise ValueError(msg)

    def _dense_scores(self, axis: int):
        """Cost (n, m) or its transpose, the plan in the same orientation, and the column
        scores ``g_j / eps + log b_j - c_ij / eps`` (without the row term)."""
        c, p = self._dense["cost"], self._dense["plan"]
        _, _, g, _, b = self._sides(axis)
        if axis == 0:
            c, p = c.T, p.T
        return c, p, (g / self.epsilon + _log_weights(b))[None, :] - c / self.epsilon

    def _apply(self, v, axis: int, want_cost: bool = False):
        if self._dense is not None:
            c, p, s = self._dense_scores(axis)
            dt = self.geom.dtype
            out = {"sum": p.sum(1).astype(dt), "argmax": s.argmax(1)}
            out["dot"] = (p @ v).astype(dt) if v is not None else np.zeros((len(p), 0), dt)
            out["cost"] = ((p * c).sum(1) if want_cost else np.zeros(len(p))).astype(dt)
            return out
        geom, f, g, a, b = self._sides(axis)
        be = self._be or get_backend(self.device)
        eps = self.epsilon
        alpha = be.asarray(f / eps + _log_weights(a))
        beta = be.asarray(g / eps + _log_weights(b))
        out = be.apply(geom, alpha, beta, eps, None if v is None else be.asarray(v), want_cost)
        return {k: be.to_numpy(val) for k, val in out.items()}

    def plan_dot(self, v: np.ndarray, axis: int = 1) -> np.ndarray:
        """:math:`P v` for ``axis=1`` (v of shape (m, k)), :math:`P^T v` for ``axis=0``."""
        v = np.asarray(v, dtype=self.geom.dtype)
        squeeze = v.ndim == 1
        out = self._apply(v.reshape(v.shape[0], -1), axis)["dot"]
        return out[:, 0] if squeeze else out

    def marginals(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column sums of the plan."""
        return self._apply(None, 1)["sum"], self._apply(None, 0)["sum"]

    def barycentric_projection(self, axis: int = 1) -> np.ndarray:
        """:math:`T(x_i) = \\sum_j P_{ij} y_j / \\sum_j P_{ij}` (``axis=1``), or of ``y``."""
        geom = self.geom if axis == 1 else self.geom.transpose()
        out = self._apply(geom.y, axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return out["dot"] / out["sum"][:, None]

    def plan_argmax(self, axis: int = 1) -> np.ndarray:
        """For each row (``axis=1``) or column (``axis=0``), the index of its largest entry."""
        return self._apply(None, axis)["argmax"]

    def plan_topk(self, k: int, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` largest plan entries per row (or column): indices and values."""
        geom, f, g, a, b = self._sides(axis)
        if self._dense is not None:
            _, _, s = self._dense_scores(axis)
            k = min(int(k), s.shape[1])
            idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
            val = np.take_along_axis(s, idx, 1) + (f / self.epsilon + _log_weights(a))[:, None]
            return idx, np.exp(val)
        be = self._be or get_backend(self.device)
        eps = self.epsilon
        idx, val = be.topk(
            geom,
            be.asarray(f / eps + _log_weights(a)),
            be.asarray(g / eps + _log_weights(b)),
            eps,
            k,
        )
        return be.to_numpy(idx), np.exp(be.to_numpy(val))

    def plan(self, copy: bool = True) -> np.ndarray:
        """The dense (n, m) plan. Memory n x m: only for problems that fit.

        ``copy=False``: on the dense route, the stored plan itself (read-only), no copy.
        """
        if self._dense is not None:
            return self._dense["plan"].copy() if copy else self._dense["plan"]
        c = self.geom.cost_matrix()
        logp = (
            (self.f[:, None] + self.g[None, :] - c) / self.epsilon
            + _log_weights(self.a)[:, None]
            + _log_weights(self.b)[None, :]
        )
        return np.exp(logp)


def resolve_epsilon(
    geom: PointCloud,
    a: np.ndarray,
    b: np.ndarray,
    epsilon: float,
    relative: Literal["mean", "max"] | None,
    *,
    cost: np.ndarray | None = None,
) -> float:
    """Absolute epsilon: ``epsilon`` itself, or ``epsilon`` times the mean or max cost.

    ``cost``: the dense cost matrix when it is at hand (the scale is then read from it).
    """
    if not np.isfinite(epsilon) or epsilon <= 0:
        msg = f"epsilon must be positive, got {epsilon}"
        raise InputError(msg)
    if relative is None:
        return float(epsilon)
    if relative == "mean":
        scale = geom.mean_cost(a, b) if cost is None else _mean_cost(cost, a, b)
    elif relative == "max":
        scale = geom.max_cost() if cost is None else float(cost.max())
    else:
        msg = f"relative epsilon must be 'mean' or 'max', got '{relative}'"
        raise InputError(msg)
    if not np.isfinite(scale):
        msg = f"the {relative} cost is {scale}: the coordinates are too large for {geom.dtype}"
        raise InputError(msg)
    if scale <= 0:
        scale = 1.0
    eps = float(epsilon * scale)
    if not np.isfinite(eps):
        msg = (
            f"`epsilon` {epsilon:g} times the {relative} cost ({scale:.4g}) overflows to {eps}; "
            "give a smaller one"
        )
        raise InputError(msg)
    return eps


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _mean_cost(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a / a.sum()) @ c @ (b / b.sum()))


#: Largest n x m solved by the dense route on the CPU when ``dense`` is None (auto): the
#: cost matrix and the kernel, two float64 n x m arrays, then take at most 64 MiB.
#: Kernel entries visited between two progress checks of the dense route (about 0.1 s).
DENSE_PROGRESS_ENTRIES = 50_000_000
DENSE_TRACE_CHUNK = 100_000  # iterations per dense kernel call (bounds the trace buffer)
#: adaptive epsilon scaling (``scaling_iter=None``): the target epsilon is tried first for
#: PROBE_ITER iterations; unless the L1 marginal error is then below PROBE_EASY_ERROR and
#: still falling fast (at most PROBE_DECAY times its value half-way; a plateau means mass
#: that still has to cross a gap, e.g. between clusters) the solve restarts cold from the mean
#: cost, halving epsilon (``epsilon_scaling``), and leaves each level as soon as its marginal
#: error is below LEVEL_TOL (at most LEVEL_CAP iterations).
#: Chosen on benchmarks/engine.py's epsilon sweep (see benchmarks/RESULTS.md).
PROBE_ITER = 10
PROBE_EASY_ERROR = 0.05
PROBE_DECAY = 0.6
LEVEL_TOL = 3e-3
LEVEL_CAP = 1000


@dataclass(frozen=True)
class Sinkhorn:
    """Log-domain Sinkhorn solver between two weighted point clouds.

    Solves

    .. math::
        \\min_{P \\ge 0} \\langle P, C \\rangle + \\varepsilon \\mathrm{KL}(P \\| a b^T)
        + \\rho\\,\\mathrm{KL}(P 1 \\| a) + \\rho\\,\\mathrm{KL}(P^T 1 \\| b)

    where the marginal terms are hard constraints when ``reg_m`` (:math:`\\rho`) is None
    (balanced OT). The updates are

    .. math::
        f_i = -\\phi\\,\\varepsilon \\log \\sum_j \\exp((g_j - c_{ij})/\\varepsilon) b_j,
        \\qquad \\phi = \\rho / (\\rho + \\varepsilon)\\ (1\\text{ if balanced}),

    and symmetrically for ``g``; they never underflow, whatever epsilon.

    Parameters
    ----------
    epsilon
        Entropic regularisation; relative to a cost scale with ``relative_epsilon`` (the
        default: 1% of the mean cost), absolute with ``relative_epsilon=None``.
    relative_epsilon
        ``"mean"`` or ``"max"``: multiply ``epsilon`` by the mean or largest cost; None: absolute.
    reg_m
        KL weight of the marginal penalties (unbalanced OT); None for balanced.
    tol
        Stop when the marginal error (balanced) or the potential change (unbalanced)
        falls below it.
    max_iter
        Iteration limit in all, epsilon-scaling levels included (levels stop early rather
        than use up the budget; at least one iteration runs at the target epsilon), so
        ``SinkhornOutput.n_iter`` never exceeds it.
    check_every
        Iterations between convergence checks (each check is free: it reuses an update);
        None: every iteration on the CPU, every 10 on other devices (a check there waits
        for the device).
    epsilon_scaling
        Factor in (0, 1) of epsilon scaling (levels from the mean cost down to the target,
        each warm-starting the next); None: off. Ignored with ``init`` (a warm start is
        already close).
    scaling_iter
        None (adaptive, the default): the target epsilon is tried first for
        :data:`PROBE_ITER` iterations, and only when the marginal error is then still above
        :data:`PROBE_EASY_ERROR` does the solve restart cold at the mean cost and scale,
        leaving each level as soon as its marginal error is below :data:`LEVEL_TOL`. So an
        easy epsilon pays nothing for scaling and a hard one pays at most the probe. An
        integer: exactly that many iterations on every level, no probe (the schedule of
        otbio 0.1; GeomLoss anneals with one).

    The defaults are :data:`SINKHORN_DEFAULTS`, shared with ``otbio transport`` and
    ``otbio embed``.
    device
        ``"cpu"`` (Numba), ``"cuda"`` (CuPy), ``"auto"``.
    progress
        Report the iteration and error on stderr about every 2 seconds (long runs only).
    dense
        Route on the CPU. ``None`` (auto): problems with ``n * m <= DENSE_MAX_ENTRIES``
        (about 4 million) compute the cost matrix once and run the whole loop in one serial
        Numba call, as matrix-vector products on a log-stabilised kernel (same iterates,
        stopping rule and result as the online route, to rounding; the plan and its
        reductions then come from the stored matrices); larger ones stream the cost
        online in parallel kernels. ``True`` forces the dense route, ``False`` the online
        one. Other devices always stream.

    Notes
    -----
    When it does not converge: epsilon too small for the iteration budget (use
    ``epsilon_scaling`` or a larger ``max_iter``), masses of ``a`` and ``b`` that differ
    (balanced OT rescales ``b`` to the mass of ``a``; consider ``reg_m``), or float32 with an
    epsilon far below the cost scale (use float64).

    References
    ----------
    Cuturi (2013), Sinkhorn distances; Schmitzer (2019), stabilized sparse scaling
    algorithms for entropy regularized transport problems; Chizat et al. (2018), scaling
    algorithms for unbalanced optimal transport problems.
    """

    epsilon: float = SINKHORN_DEFAULTS.epsilon
    relative_epsilon: Literal["mean", "max"] | None = SINKHORN_DEFAULTS.relative_epsilon
    reg_m: float | None = None
    tol: float = SINKHORN_DEFAULTS.tol
    max_iter: int = SINKHORN_DEFAULTS.max_iter
    check_every: int | None = None
    epsilon_scaling: float | None = SINKHORN_DEFAULTS.epsilon_scaling
    scaling_iter: int | None = None
    device: str = "cpu"
    warn: bool = True
    progress: bool = False
    dense: bool | None = None

    def __call__(
        self,
        geom: PointCloud,
        a: np.ndarray | None = None,
        b: np.ndarray | None = None,
        *,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> SinkhornOutput:
        """Solve between the clouds of ``geom`` with weights ``a``, ``b`` (None: uniform).

        ``init``: warm-start potentials ``(f, g)`` (epsilon scaling is then skipped). The
        stages: :meth:`_check` (weights and parameters), :meth:`_use_dense` (the route), then
        :meth:`_solve_dense` or :meth:`_solve_online`, which both run the epsilon schedule of
        :meth:`_run_schedule`. Returns a :class:`SinkhornOutput`.
        """
        a, b = self._check(geom, a, b)
        be = get_backend(self.device)
        if self._use_dense(be, *geom.shape):
            return self._solve_dense(geom, a, b, init)
        return self._solve_online(geom, a, b, init, be)

    def _check(self, geom: PointCloud, a, b) -> tuple[np.ndarray, np.ndarray]:
        """Validate stage: the weights ``a`` (n,) and ``b`` (m,) as float64 vectors (balanced:
        ``b`` rescaled to the mass of ``a``) and the solver's parameters (InputError when
        one is out of range). Returns ``(a, b)``."""
        n, m = geom.shape
        a = _weights(a, n, "weights a")
        b = _weights(b, m, "weights b")
        if self.reg_m is None:
            b = b * (a.sum() / b.sum())
        elif not self.reg_m > 0:
            msg = f"reg_m must be positive, got {self.reg_m}"
            raise InputError(msg)
        if self.max_iter < 1 or self.tol <= 0:
            msg = "max_iter must be >= 1 and tol > 0"
            raise InputError(msg)
        if self.epsilon_scaling is not None and not 0 < self.epsilon_scaling < 1:
            msg = "epsilon_scaling must lie in (0, 1)"
            raise InputError(msg)
        return a, b

    def _use_dense(self, be, n: int, m: int) -> bool:
        """Route stage: whether an ``n`` x ``m`` problem on backend ``be`` takes the dense
        route (``dense`` None: CPU problems up to ``DENSE_MAX_ENTRIES``); InputError when the
        dense route is forced on another device."""
        if self.dense is None:
            return be.name == "cpu" and n * m <= DENSE_MAX_ENTRIES
        if self.dense and be.name != "cpu":
            msg = f"the dense Sinkhorn route runs on the CPU only, not on device '{be.name}'"
            raise InputError(msg)
        return bool(self.dense)

    def _solve_online(self, geom: PointCloud, a: np.ndarray, b: np.ndarray, init, be):
        """The online route on backend ``be``: the cost streamed by the backend's kernels.

        Prepares the state (:class:`_OnlineRoute`), runs the schedule, warns when the
        tolerance was not reached and returns the :class:`SinkhornOutput`.
        """
        route = _OnlineRoute(self, geom, a, b, init, be)
        n_iter, converged, err = self._run_schedule(route, init)
        self._warn(converged, err, stacklevel=4)
        return route.output(n_iter, converged, err)

    def _solve_dense(self, geom: PointCloud, a: np.ndarray, b: np.ndarray, init):
        """The dense route: one cost matrix, the whole loop in Numba (see ``dense``).

        Prepares the state (:class:`_DenseRoute`), runs the schedule, warns when the
        tolerance was not reached and returns the :class:`SinkhornOutput`.
        """
        route = _DenseRoute(self, geom, a, b, init)
        n_iter, converged, err = self._run_schedule(route, init)
        self._warn(converged, err, stacklevel=4)
        return route.output(n_iter, converged, err)

    def _run_schedule(self, route, init) -> tuple[int, bool, float]:
        """Epsilon-schedule stage, the same for both routes (``route``: a
        :class:`_OnlineRoute` or :class:`_DenseRoute`, whose potentials it advances).

        Fixed scaling (``scaling_iter`` set): the levels, then the target epsilon. Adaptive
        (``scaling_iter`` None): the target epsilon for the probe; unless it converged, ran
        out of iterations or looks easy (:meth:`_easy`), a cold restart through the levels;
        then the target epsilon with what is left of ``max_iter``. No scaling (or ``init``):
        the target epsilon only. Returns ``(n_iter, converged, err)``.
        """
        scaling = self.epsilon_scaling is not None and init is None
        fixed = scaling and self.scaling_iter is not None
        lv = self._schedule(route.mean_cost(), route.eps) if fixed else []
        n_iter, it0, run_main = 0, 1, True
        if lv:  # fixed levels first
            n_iter = route.levels(lv, 0)
        else:
            route.start(init)
        if scaling and not fixed:  # adaptive: the target epsilon first
            probe = min(self._probe_length(route.check_every), self.max_iter)
            it, converged, err = route.main_loop(1, probe)
            run_main = not converged and it < self.max_iter
            if run_main and not self._easy(route.trace_so_far()):  # levels only when needed
                lv = self._schedule(route.mean_cost(), route.eps)
            if not run_main:
                n_iter = it
            elif lv:  # not easy: scale from a cold start
                route.cold()
                n_iter = route.levels(lv, it)
            else:
                it0 = it + 1
        if run_main:
            budget = max(1, self.max_iter - n_iter)  # max_iter counts the scaling levels too
            it, converged, err = route.main_loop(it0, budget)
            n_iter += it
        return n_iter, converged, err

    def _phi(self, e: float) -> float:
        """Damping of the potentials at epsilon ``e``: ``reg_m / (reg_m + e)``, 1 if balanced."""
        return 1.0 if self.reg_m is None else self.reg_m / (self.reg_m + e)

    def _schedule(self, e0: float, eps: float) -> list[tuple[float, int, float]]:
        """The epsilon-scaling levels above the target, from ``e0`` (the mean cost):
        ``(epsilon, iteration cap, level tolerance)``; empty when ``eps >= e0``."""
        q = self.epsilon_scaling
        out = []
        e = max(e0, eps)
        while e > eps * (1 + 1e-9):
            if self.scaling_iter is not None:
                out.append((e, self.scaling_iter, 0.0))
            else:
                out.append((e, LEVEL_CAP, LEVEL_TOL))
            e = max(eps, e * q)
        return out

    def _level_cap(self, cap: int, n_iter: int) -> int:
        """Iterations allowed on a level after ``n_iter``: fixed levels run whole or not at
        all; adaptive ones leave at least one iteration to the target epsilon."""
        if self.scaling_iter is not None:
            return cap if n_iter + cap < self.max_iter else 0
        return min(cap, self.max_iter - n_iter - 1)

    def _check_every(self, device: str) -> int:
        if self.check_every is not None:
            return self.check_every
        return 1 if device == "cpu" else 10

    @staticmethod
    def _easy(trace) -> bool:
        """Whether the probe's errors say the target epsilon is easy: the last one below
        PROBE_EASY_ERROR and (with a check half-way) at most PROBE_DECAY times that one."""
        if len(trace) == 0 or not trace[-1] < PROBE_EASY_ERROR:
            return False
        return len(trace) < 2 or trace[-1] <= PROBE_DECAY * trace[len(trace) // 2 - 1]

    @staticmethod
    def _probe_length(check_every: int) -> int:
        """Iterations of the probe at the target epsilon: ``PROBE_ITER`` rounded up to a check."""
        return -(-PROBE_ITER // check_every) * check_every

    def _level_error(self, xp, loga, f, f_new, e) -> float:
        if self.reg_m is None:
            return float(xp.abs(xp.exp(loga + (f - f_new) / e) - xp.exp(loga)).sum())
        return float(xp.abs(f_new - f).max()) / e

    def _warn(self, converged: bool, err: float, stacklevel: int = 3) -> None:
        if not converged and self.warn:
            warnings.warn(
                f"Sinkhorn did not converge in {self.max_iter} iterations "
                f"(error {err:.2e} > tol {self.tol:.1e}); increase max_iter, epsilon, "
                "or use epsilon_scaling",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )

    @staticmethod
    def _log(n, m, eps, n_iter, converged, err, route) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "sinkhorn (%s): %d x %d, eps=%.4g, %d iterations, converged=%s, error=%.2e",
            route,
            n,
            m,
            eps,
            n_iter,
            converged,
            err,
        )


class _OnlineRoute:
    """State of the online route, built from ``(solver, geom, a, b, init, be)``: the target
    epsilon, log weights, potentials ``f``, ``g`` on the backend ``be`` (zero, or ``init``),
    the log-sum-exp shifts the CPU kernels carry from one half-update to the next, and the
    trace of the checks. :meth:`Sinkhorn._run_schedule` drives it through :meth:`start`,
    :meth:`levels`, :meth:`main_loop` and :meth:`cold`; :meth:`output` finishes.
    """

    __slots__ = ("a", "b", "be", "check_every", "eps", "f", "g", "geom", "gt", "kw_f", "kw_g",
                 "loga", "logb", "solver", "t_report", "trace")  # fmt: skip

    def __init__(self, solver: Sinkhorn, geom: PointCloud, a, b, init, be) -> None:
        n, m = geom.shape
        dt = geom.dtype
        self.solver, self.geom, self.a, self.b, self.be = solver, geom, a, b, be
        self.eps = resolve_epsilon(geom, a, b, solver.epsilon, solver.relative_epsilon)
        xp = be.xp
        self.loga = be.asarray(_log_weights(a).astype(dt))
        self.logb = be.asarray(_log_weights(b).astype(dt))
        if init is None:
            f = xp.zeros(n, dtype=dt)
            g = xp.zeros(m, dtype=dt)
        else:
            f = be.asarray(np.asarray(init[0], dtype=dt))
            g = be.asarray(np.asarray(init[1], dtype=dt))
            if f.shape != (n,) or g.shape != (m,):
                msg = f"init potentials must have shapes ({n},) and ({m},)"
                raise InputError(msg)
        self.f, self.g = f, g
        self.gt = geom.transpose()
        # log-sum-exp shifts carried from one half-update to the next, owned by this solve
        self.kw_f = self.kw_g = {}
        if be.name == "cpu":
            self.kw_f = {"guess": np.full(n, np.nan, dtype=dt)}
            self.kw_g = {"guess": np.full(m, np.nan, dtype=dt)}
        self.trace: list[float] = []
        self.check_every = solver._check_every(be.name)
        self.t_report = time.perf_counter() + 2.0

    def f_update(self, g, e: float):
        """Row half-update at epsilon ``e``: the new ``f`` from ``g``."""
        lse = self.be.lse(self.geom, g / e + self.logb, e, **self.kw_f)
        return (-self.solver._phi(e) * e) * lse

    def g_update(self, f, e: float):
        """Column half-update at epsilon ``e``: the new ``g`` from ``f``."""
        lse = self.be.lse(self.gt, f / e + self.loga, e, **self.kw_g)
        return (-self.solver._phi(e) * e) * lse

    def mean_cost(self) -> float:
        """The mean cost under ``a b^T`` (the first epsilon-scaling level)."""
        return self.geom.mean_cost(self.a, self.b)

    def trace_so_far(self) -> list[float]:
        """The errors of the checks so far."""
        return self.trace

    def start(self, init) -> None:
        """Before the target epsilon without levels: a cold start's first ``g`` from ``f``."""
        if init is None:
            self.g = self.g_update(self.f, self.eps)

    def cold(self) -> None:
        """Restart from ``f = 0`` (the levels then compute ``g`` from it)."""
        self.f = self.be.xp.zeros_like(self.f)

    def levels(self, lv: list[tuple[float, int, float]], n_iter: int) -> int:
        """The scaling levels ``lv`` from ``(f, g)``; ``n_iter`` iterations already run.
        Leaves ``g`` computed at the target epsilon; returns the iterations in all."""
        s, xp, f, g = self.solver, self.be.xp, self.f, self.g
        first = True
        for e, cap, tol_e in lv:
            cap = s._level_cap(cap, n_iter)
            if cap < 1:
                break
            if first:
                g = self.g_update(f, e)
                first = False
            for _ in range(cap):
                f_new = self.f_update(g, e)
                n_iter += 1
                done = tol_e > 0 and s._level_error(xp, self.loga, f, f_new, e) < tol_e
                f = f_new
                g = self.g_update(f, e)
                if done:
                    break
        if first:  # no level ran
            g = self.g_update(f, self.eps)
        log.debug("epsilon scaling: %d iterations in all so far", n_iter)
        self.f, self.g = f, g
        return n_iter

    def main_loop(self, it0: int, budget: int) -> tuple[int, bool, float]:
        """Iterations ``it0..budget`` at the target epsilon: (iterations, converged, err)."""
        s, xp, eps, loga = self.solver, self.be.xp, self.eps, self.loga
        f, g = self.f, self.g
        err = np.inf
        for it in range(it0, budget + 1):
            if s.progress and time.perf_counter() > self.t_report:
                self.t_report = time.perf_counter() + 2.0
                print(f"sinkhorn: iteration {it}, error {err:.2e}", file=sys.stderr, flush=True)
            f_new = self.f_update(g, eps)
            if it % self.check_every == 0 or it == budget:
                if s.reg_m is None:
                    row = xp.exp(loga + (f - f_new) / eps)
                    err = float(xp.abs(row - xp.exp(loga)).sum())
                    if err < s.tol:
                        self.f, self.g = f, g
                        return it - 1, True, err
                else:
                    g_new = self.g_update(f_new, eps)
                    err = float(
                        max(float(xp.abs(f_new - f).max()), float(xp.abs(g_new - g).max())) / eps
                    )
                    f, g = f_new, g_new
                    self.trace.append(err)
                    if err < s.tol:
                        self.f, self.g = f, g
                        return it, True, err
                    continue
                self.trace.append(err)
            f = f_new
            g = self.g_update(f, eps)
        self.f, self.g = f, g
        return budget, False, err

    def output(self, n_iter: int, converged: bool, err: float) -> SinkhornOutput:
        """Finish stage: float64 potentials, the transport cost and (balanced) the final
        marginal error from one streamed pass over the plan; logs the solve and returns the
        :class:`SinkhornOutput`."""
        be, geom, a, b, eps = self.be, self.geom, self.a, self.b, self.eps
        dt = geom.dtype
        f_np = be.to_numpy(self.f).astype(np.float64)
        g_np = be.to_numpy(self.g).astype(np.float64)
        alpha = be.asarray((f_np / eps + _log_weights(a)).astype(dt))
        beta = be.asarray((g_np / eps + _log_weights(b)).astype(dt))
        red = be.apply(geom, alpha, beta, eps, None, True)
        cost = float(be.to_numpy(red["cost"]).sum())
        if self.solver.reg_m is None:
            err = float(np.abs(be.to_numpy(red["sum"]) - a).sum())
        self.solver._log(*geom.shape, eps, n_iter, converged, err, "online")
        return SinkhornOutput(
            geom=geom,
            a=a,
            b=b,
            f=f_np,
            g=g_np,
            epsilon=eps,
            reg_m=self.solver.reg_m,
            n_iter=n_iter,
            converged=converged,
            marginal_error=err,
            cost=cost,
            trace=np.asarray(self.trace),
            device=be.name,
            _be=be,
        )


class _DenseRoute:
    """State of the dense route, built from ``(solver, geom, a, b, init)``: the cost matrix,
    the target epsilon, log weights, potentials ``f``, ``g`` (float64 copies, updated in place
    by the Numba loop), the stabilised kernel with its reference potentials and scaling
    factors, the trace buffer and the counters. :meth:`Sinkhorn._run_schedule` drives it
    through :meth:`start`, :meth:`levels`, :meth:`main_loop` and :meth:`cold`;
    :meth:`output` finishes.
    """

    __slots__ = ("a", "arrays", "b", "c", "check_every", "chunk", "counts", "eps", "f", "fr",
                 "g", "geom", "gr", "kmat", "loga", "logb", "solver", "t_report", "trace",
                 "trace_parts", "u", "v")  # fmt: skip

    def __init__(self, solver: Sinkhorn, geom: PointCloud, a, b, init) -> None:
        n, m = geom.shape
        self.solver, self.geom, self.a, self.b = solver, geom, a, b
        self.c = c = geom.dense_cost()
        self.eps = resolve_epsilon(geom, a, b, solver.epsilon, solver.relative_epsilon, cost=c)
        self.loga, self.logb = _log_weights(a), _log_weights(b)
        if init is None:
            f = np.zeros(n)
            g = np.zeros(m)
        else:
            f = np.array(init[0], dtype=np.float64)  # copies: updated in place
            g = np.array(init[1], dtype=np.float64)
            if f.shape != (n,) or g.shape != (m,):
                msg = f"init potentials must have shapes ({n},) and ({m},)"
                raise InputError(msg)
        self.f, self.g = f, g
        self.kmat = np.empty((n, m))
        self.fr, self.gr, self.u, self.v = np.empty(n), np.empty(m), np.empty(n), np.empty(m)
        # the trace grows by chunks: never sized by max_iter (a huge limit must not allocate)
        self.trace_parts: list[np.ndarray] = []
        self.check_every = solver._check_every("cpu")
        self.trace = np.empty(DENSE_TRACE_CHUNK // max(1, self.check_every) + 2)
        self.counts = np.zeros(2, dtype=np.int64)  # kernel rebasings, exact half-updates
        # the arrays every call of the dense loop works on (in place), by keyword
        self.arrays = dict(C=c, K=self.kmat, a=a, b=b, loga=self.loga, logb=self.logb, f=f,
                           g=g, fr=self.fr, gr=self.gr, u=self.u, v=self.v, trace=self.trace,
                           counts=self.counts)  # fmt: skip
        # chunks of about DENSE_PROGRESS_ENTRIES kernel entries (~0.1 s): progress reports, and
        # Python handles SIGTERM/SIGINT between two kernel calls; the trace never grows by max_iter
        self.chunk = min(
            solver.max_iter, DENSE_TRACE_CHUNK, max(1, DENSE_PROGRESS_ENTRIES // (n * m))
        )
        self.t_report = time.perf_counter() + 2.0

    def first_g(self, e: float) -> None:
        """A cold start's first ``g`` from ``f`` at epsilon ``e``, and the kernel built on them."""
        K.dense_first_g(self.c, self.kmat, self.a, self.loga, self.f, self.g, self.fr, self.gr,
                        self.u, self.v, e, self.solver._phi(e), self.counts)  # fmt: skip

    def rebase(self, e: float) -> None:
        """The kernel at epsilon ``e`` rebuilt on the current ``(f, g)``."""
        K._dense_rebase(self.c, self.f, self.g, 1.0 / e, self.kmat, self.fr, self.gr, self.u,
                        self.v)  # fmt: skip

    def mean_cost(self) -> float:
        """The mean cost under ``a b^T`` (the first epsilon-scaling level)."""
        return _mean_cost(self.c, self.a, self.b)

    def trace_so_far(self) -> np.ndarray:
        """The errors of the checks so far."""
        return np.concatenate(self.trace_parts)

    def start(self, init) -> None:
        """Before the target epsilon without levels: the first ``g`` of a cold start, or the
        kernel on the warm start ``init``."""
        if init is None:
            self.first_g(self.eps)
        else:
            self.rebase(self.eps)

    def cold(self) -> None:
        """Restart from zero potentials (in place: the loop's arrays are these)."""
        self.f[:] = 0.0
        self.g[:] = 0.0

    def levels(self, lv: list[tuple[float, int, float]], n_iter: int) -> int:
        """The scaling levels ``lv`` from the current ``(f, g)`` (zero: a cold start);
        ``n_iter`` iterations already run. Leaves the kernel at the target epsilon; returns
        the iterations in all."""
        s, first = self.solver, True
        for e, cap, tol_e in lv:
            cap = s._level_cap(cap, n_iter)
            if cap < 1:
                break
            if first:
                self.first_g(e)
                first = False
            else:
                self.rebase(e)
            _, it_stop, _, _ = K.dense_sinkhorn(
                **self.arrays, eps=e, phi=s._phi(e), it0=1, it1=cap, max_iter=cap,
                check_every=1 if tol_e > 0 else 0, tol=tol_e, ntrace=0, finish=True,
            )  # fmt: skip
            n_iter += it_stop
        if first:
            self.first_g(self.eps)
        else:
            self.rebase(self.eps)
        return n_iter

    def main_loop(self, it0: int, budget: int) -> tuple[int, bool, float]:
        """Iterations ``it0..budget`` at the target epsilon: (iterations, converged, err)."""
        s, eps = self.solver, self.eps
        converged, err, it = False, np.inf, it0 - 1
        while it < budget and not converged:
            it1 = min(budget, it + self.chunk)
            converged, it_stop, err, nt = K.dense_sinkhorn(
                **self.arrays, eps=eps, phi=s._phi(eps), it0=it + 1, it1=it1, max_iter=budget,
                check_every=self.check_every, tol=s.tol, ntrace=0, finish=False,
            )  # fmt: skip
            self.trace_parts.append(self.trace[:nt].copy())
            it = it_stop
            if s.progress and not converged and time.perf_counter() > self.t_report:
                self.t_report = time.perf_counter() + 2.0
                print(f"sinkhorn: iteration {it}, error {err:.2e}", file=sys.stderr, flush=True)
        if converged and s.reg_m is None:
            it -= 1  # the iteration that passed the check is not counted (as online)
        return (it if converged else budget), converged, err

    def output(self, n_iter: int, converged: bool, err: float) -> SinkhornOutput:
        """Finish stage: the kernel becomes the plan (in place, read-only), with its row sums
        and transport cost; (balanced) the final marginal error; logs the solve and returns
        the :class:`SinkhornOutput`, which keeps the cost matrix and the plan."""
        n, m = self.geom.shape
        a, b, eps, counts = self.a, self.b, self.eps, self.counts
        rows, costs = np.empty(n), np.empty(n)
        K.dense_plan_scaled(self.kmat, a, b, self.u, self.v, self.c, rows, costs)
        if self.solver.reg_m is None:
            err = float(np.abs(rows - a).sum())
        self.solver._log(n, m, eps, n_iter, converged, err, "dense")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sinkhorn (dense): %d kernel rebasings, %d exact half-updates", *counts)
        return SinkhornOutput(
            geom=self.geom,
            a=a,
            b=b,
            f=self.f,
            g=self.g,
            epsilon=eps,
            reg_m=self.solver.reg_m,
            n_iter=n_iter,
            converged=converged,
            marginal_error=err,
            cost=float(costs.sum()),
            trace=np.concatenate(self.trace_parts) if self.trace_parts else self.trace[:0].copy(),
            device="cpu",
            _dense={
                "cost": self.c,
                "plan": _readonly(self.kmat),
                "rebasings": int(counts[0]),
                "exact_half_updates": int(counts[1]),
            },
        )


def sinkhorn(
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    *,
    cost: CostName = "sqeuclidean",
    init: tuple[np.ndarray, np.ndarray] | None = None,
    **solver_kw: Any,
) -> SinkhornOutput:
    """One-call shortcut: ``Sinkhorn(**solver_kw)(PointCloud(x, y, cost), a, b)``.

    Examples
    --------
    Two points on a line, each moved one unit: the cost is 1.

    >>> import numpy as np
    >>> from otbio.ot import sinkhorn
    >>> out = sinkhorn(np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]]), epsilon=0.01)
    >>> round(out.cost, 6), out.converged
    (1.0, True)
    """
    return Sinkhorn(**solver_kw)(PointCloud(x, y, cost), a, b, init=init)
