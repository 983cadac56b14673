"""The variational EM of BCPD with an expression term (DET): state, iterations, likelihoods.

The engine of :func:`otbio.register.register_points`: :class:`_Ctx` holds the fixed data of
one run, :class:`_State` the EM state, :func:`_em` iterates from a state until sigma
settles. The stages in :mod:`otbio.register._stages` and the data-driven choices in
:mod:`otbio.register._choices` run it.

References:
    O. Hirose, "A Bayesian formulation of coherent point drift", IEEE TPAMI 43(7), 2021
    (BCPD; reference C implementation ``ohirose/bcpd``, MIT licence).
    O. Hirose and E. Rodola, "Domain Elastic Transform: Bayesian function registration for
    high-dimensional scientific data", arXiv:2603.21235, 2026 (DET).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from otbio._errors import InputError
from otbio.register._estep import estep_dense, estep_local

_EXACT_MAX = 1500  # largest M solved by Cholesky; beyond it Nystrom
_FEATURE_FLOOR = 0.1
_SIGMA_FLOOR = 1e-4  # times the median nearest-neighbour spacing of the target
_LOCAL_K = 16  # nearest sources per target in the local E-step
_SEARCH_ITER = 60  # EM iterations of each start of the rotation search
_BETA_GRID = (2.0, 1.0, 0.7)  # data-driven beta when lambda is given
_LAMBDA_GRID = (0.5, 2.0, 8.0)  # data-driven lambda when beta is given
# (lambda, beta) candidates when neither is given: a stiff, a middle and a flexible map
# (beta 1.414 is the DET/BCPD program's default width 2 in its per-axis units)
_PAIR_GRID = ((2.0, 2.0), (1.0, 1.414), (2.0, 1.0))
_SELECT_MAX = 500  # landmarks per slice in the parameter selection
_HOLDOUT = 0.2  # share of target cells held out by the parameter selection
_OMEGA_START, _OMEGA_MIN, _OMEGA_MAX = 0.1, 1e-3, 0.5  # omega estimated from the data
_N_SPLITS = 3  # disjoint held-out shares whose scores are averaged
_POSE_CHECK = 3  # most likely distinct poses of the rotation search refitted non-rigidly
_POSE_APART = 20.0  # degrees between two poses counted as distinct
_POSE_ITER = 100  # EM iterations of each non-rigid pose check
_PLAIN_MARGIN = 0.05  # the plain start must beat the pose's likelihood by this share
_COARSE = 2000  # beyond this many cells: fit on this many landmarks, then refine at full size
_FINE_K = 32  # nearest sources per target in the full-resolution refinement
_FINE_MIN_ITER = 10
_FINE_MAX_ITER = 60  # iterations of the full-resolution refinement at most
_FINE_FLOOR = 0.25  # sigma floor of the refinement, times the target's spacing
_FINE_RANK = 200  # Nystrom rank of the full-resolution refinement


@dataclass
class _Ctx:
    """The fixed data of one EM run (normalised landmarks and constants)."""

    xw: np.ndarray
    fxw: np.ndarray | None
    y0: np.ndarray
    fy0: np.ndarray | None
    zeta: float
    omega: float
    log_vol: float
    fmu: np.ndarray | None
    fvar: np.ndarray | None
    sigma_min: float
    use_f: bool
    omega_auto: bool = False  # re-estimate omega every iteration (EM update of the mixing weight)

    def subset(self, ix: np.ndarray, iy: np.ndarray) -> _Ctx:
        """The same run restricted to source cells ``ix`` and target cells ``iy``."""

        def take(a, idx):
            return None if a is None else np.ascontiguousarray(a[idx])

        return replace(
            self, xw=take(self.xw, ix), fxw=take(self.fxw, ix), y0=take(self.y0, iy),
            fy0=take(self.fy0, iy),
        )  # fmt: skip


@dataclass
class _State:
    """The EM state: similarity ``s, lin, t``, deformation ``v`` (weights ``w``), scales."""

    s: float
    lin: np.ndarray
    t: np.ndarray
    v: np.ndarray
    sigma: float
    e: np.ndarray
    w: np.ndarray | None = None
    it: int = 0
    converged: bool = False
    trace: list = field(default_factory=list)
    loglik: float = -np.inf
    omega: float | None = None


def _rot2(theta: float, d: int) -> np.ndarray:
    r = np.eye(d)
    c, sn = np.cos(theta), np.sin(theta)
    r[:2, :2] = [[c, -sn], [sn, c]]
    return r


def _em(
    ctx,
    st,
    *,
    mode,
    solver,
    lambda_,
    max_iter,
    min_iter,
    tol,
    estep,
    device,
    band,
    t0,
    sc,
    local_k=_LOCAL_K,
):
    """Variational EM iterations from state ``st`` until sigma settles; returns the state.

    ``st.loglik`` is the log-likelihood of the targets under the last E-step's mixture
    (up to a constant common to all runs on the same data): the model-selection score of
    the rotation search.
    """
    xw, fxw, y0, fy0 = ctx.xw, ctx.fxw, ctx.y0, ctx.fy0
    m, d = y0.shape
    n = xw.shape[0]
    s, lin, t, v, sigma, e, w = st.s, st.lin, st.t, st.v, st.sigma, st.e, st.w
    u = y0 + v
    ycur = s * u @ lin.T + t if mode != "affine" else u @ lin.T + t
    zeta = ctx.zeta
    omega = ctx.omega if st.omega is None else st.omega
    trace = []
    converged = False
    it = 0
    loglik = -np.inf
    for it in range(1, max_iter + 1):
        h = e / np.sqrt(zeta) if ctx.use_f else e
        log_c = _log_outlier(xw, fxw, sigma, e, zeta, omega, ctx.log_vol, ctx.fmu, ctx.fvar)
        radius = 5.0 * sigma
        ball = np.pi * radius**2 if d == 2 else 4.0 / 3.0 * np.pi * radius**3
        expected = m * ball / np.exp(ctx.log_vol)  # sources within 5 sigma of a target
        local = estep == "local" or (estep == "auto" and m * n > 4_000_000 and expected < 4)
        if local and device == "cpu":
            es = estep_local(xw, fxw, ycur, fy0, sigma, h, log_c, k=local_k)
            kind = "local"
        else:
            es = estep_dense(xw, fxw, ycur, fy0, sigma, h, log_c, device=device)
            kind = "dense"
        loglik = es.log_norm - n * d * np.log(sigma) + n * np.log1p(-omega)
        if ctx.use_f:
            loglik -= n * zeta * float(np.log(e).sum())
        nu = es.nu
        nhat = float(nu.sum())
        if not nhat > 1e-12:
            msg = "no source cell matched any target cell; raise `gamma` or lower `omega`"
            raise InputError(msg)
        if ctx.omega_auto:  # EM update of the outlier share: targets no source explains
            omega = float(np.clip(1.0 - nhat / n, _OMEGA_MIN, _OMEGA_MAX))
        ok = nu > 1e-300
        xh = np.where(ok[:, None], es.px / np.where(ok, nu, 1.0)[:, None], ycur)
        if solver is not None:
            ee = ((xh - t) @ lin) / s - y0  # R^T (xh - t) / s - y0
            w, v = solver.solve(nu, ee, lambda_ * sigma**2 / s**2)
        u = y0 + v
        s, lin, t = _procrustes(u, xh, nu, mode)
        ycur = s * u @ lin.T + t if mode != "affine" else u @ lin.T + t
        s2 = (es.fn @ (xw**2).sum(1) + nu @ (ycur**2).sum(1) - 2 * (es.px * ycur).sum()) / (
            nhat * d
        )
        new_sigma = max(float(np.sqrt(max(s2, 0.0))), ctx.sigma_min)
        if ctx.use_f:
            e2 = (es.fn @ fxw**2 + nu @ fy0**2 - 2 * (es.pf * fy0).sum(0)) / nhat
            e = np.sqrt(np.maximum(e2, 0.0)) + _FEATURE_FLOOR
        change = abs(new_sigma - sigma) / max(sigma, 1e-300)
        # at the floor (positions resolved to a fraction of the spacing) the fit is done even
        # if the unfloored value still wobbles below it
        at_floor = new_sigma <= ctx.sigma_min and sigma <= ctx.sigma_min * 1.5
        sigma = new_sigma
        trace.append(sigma)
        if band and (it % band == 0 or it == 1):
            _band(it, sigma * sc, es.n_pairs, t0, kind)
        if it >= min_iter and (change < tol or at_floor):
            converged = True
            break
    return _State(
        s=s,
        lin=lin,
        t=t,
        v=v,
        sigma=sigma,
        e=e,
        w=w,
        it=it,
        converged=converged,
        trace=trace,
        loglik=float(loglik),
        omega=omega,
    )


def _rms_sigma(x, y):
    """RMS distance over all (source, target) pairs per dimension: the broad initial sigma."""
    d = x.shape[1]
    v = (x**2).sum(1).mean() + (y**2).sum(1).mean() - 2 * x.mean(0) @ y.mean(0)
    return float(np.sqrt(max(v, 1e-300) / d))


def _heldout_loglik(ctx, st, xh, fxh):
    """Log-likelihood of held-out target cells under the fitted mixture of state ``st``."""
    u = ctx.y0 + st.v
    ycur = st.s * u @ st.lin.T + st.t
    h = st.e / np.sqrt(ctx.zeta) if ctx.use_f else st.e
    n, d = xh.shape
    log_c = _log_outlier(
        xh,
        fxh,
        st.sigma,
        st.e,
        ctx.zeta,
        ctx.omega if st.omega is None else st.omega,
        ctx.log_vol,
        ctx.fmu,
        ctx.fvar,
    )
    es = estep_dense(xh, fxh, ycur, ctx.fy0, st.sigma, h, log_c)
    om = ctx.omega if st.omega is None else st.omega
    ll = es.log_norm - n * d * np.log(st.sigma) + n * np.log1p(-om)
    if ctx.use_f:
        ll -= n * ctx.zeta * float(np.log(st.e).sum())
    return float(ll)


def _procrustes(u, xh, nu, mode):
    """Weighted similarity (det R = +1), rigid (s = 1) or affine fit of u onto xh."""
    wsum = nu.sum()
    mu_x = nu @ xh / wsum
    mu_u = nu @ u / wsum
    xc = xh - mu_x
    uc = u - mu_u
    if mode == "affine":
        a = (uc * nu[:, None]).T @ uc
        b = (xc * nu[:, None]).T @ uc
        lin = np.linalg.solve(a.T, b.T).T
        return 1.0, lin, mu_x - lin @ mu_u
    cov = (xc * nu[:, None]).T @ uc
    uu, sv, vt = np.linalg.svd(cov)
    c = np.ones(len(sv))
    c[-1] = np.sign(np.linalg.det(uu @ vt)) or 1.0
    rot = (uu * c) @ vt
    s = 1.0 if mode == "rigid" else float((sv * c).sum() / (nu @ (uc * uc).sum(1)))
    return s, rot, mu_x - s * rot @ mu_u


def _log_outlier(xn, fxn, sigma, e, zeta, omega, log_vol, fmu, fvar):
    """log c_n: outlier odds, uniform density over the target box, tempered feature density.

    The expression term is the likelihood :math:`N(f; f_m, e^2)^\\zeta` (so that its
    kernel has width :math:`h = e/\\sqrt\\zeta`); the outlier's feature density is tempered
    the same way: a Gaussian fitted to the target features when D' > 10, else uniform over
    their bounding box.
    """
    n, d = xn.shape
    if omega <= 0:
        return np.full(n, -np.inf)
    lc = np.log(omega / (1.0 - omega)) + 0.5 * d * np.log(2 * np.pi * sigma**2) - log_vol
    if fxn is None or not fxn.shape[1]:
        return np.full(n, lc)
    lc = lc + 0.5 * zeta * np.log(2 * np.pi * e**2).sum()
    if fxn.shape[1] > 10:
        lp = -0.5 * (((fxn - fmu) ** 2) / fvar).sum(1) - 0.5 * np.log(2 * np.pi * fvar).sum()
    else:
        rng_ = np.maximum(fxn.max(0) - fxn.min(0), 1e-12)
        lp = np.full(n, -np.log(rng_).sum())
    return lc + zeta * lp


def _band(it, sigma, n_pairs, t0, kind):
    sys.stderr.write(
        f"register: iteration {it}, sigma {sigma:.4g}, {kind} E-step ({n_pairs} pairs), "
        f"{time.perf_counter() - t0:.1f} s\n"
    )
    sys.stderr.flush()
