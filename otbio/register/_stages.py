"""The stages of :func:`otbio.register.register_points`, one function each.

In the order the entry point runs them:

1. :func:`_check_inputs`: the arrays and options checked into a :class:`_Settings`;
2. :func:`_normalise`: both slices centred and scaled together (:class:`_Problem`);
3. coarse fit (slices over ``_COARSE`` cells, :func:`_coarse_to_fine`): the whole method run
   on ``_COARSE`` landmarks by a recursive call with :func:`_coarse_options`;
4. :func:`_landmarks`: the cells the EM sees and its initial scales (:class:`_Run`);
5. :func:`_refinement_start` (after a coarse fit): the coarse map carried to every cell, the
   full-resolution refinement's settings;
   or :func:`_pose_search`: rotation search and non-rigid pose check;
6. :func:`_outlier_choice` (``omega="auto"``): the outlier share estimated or none, by
   likelihood, and the rigid re-search when outliers win;
7. :func:`_broad_restart`: sigma broad again from the chosen pose;
8. :func:`_smoothness`: lambda and beta chosen by held-out likelihood, the deformation solve;
9. :func:`_final_em`: the EM from the start so built;
10. :func:`_report`: the convergence warning and the log line;
11. :func:`_result_fields`: the map carried to every source cell, the record.

Each stage takes the state it needs explicitly; those that change the run's state say what
they update in ``run`` (:class:`_Run`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from otbio._errors import ConvergenceWarning, InputError
from otbio._progress import logger as log
from otbio.register._bcpd import (
    _COARSE,
    _EXACT_MAX,
    _FEATURE_FLOOR,
    _FINE_FLOOR,
    _FINE_K,
    _FINE_MAX_ITER,
    _FINE_MIN_ITER,
    _FINE_RANK,
    _LOCAL_K,
    _OMEGA_START,
    _SIGMA_FLOOR,
    _Ctx,
    _em,
    _rms_sigma,
    _State,
)
from otbio.register._choices import _choose_outliers, _pose, _select_smoothness
from otbio.register._deform import DeformSolver, interpolate_displacement
from otbio.register._downsample import feature_sensitive_sample

#: Accepted ranges of the fit parameters (in the units of the normalised slices): beyond
#: them the EM overflows (gamma 1e300), never ends (lambda 1e300) or fails in its SVD.
PARAM_RANGES = {"lambda_": (1e-4, 1e4), "beta": (1e-3, 1e3), "gamma": (1e-6, 1e4),
                "eta": (0.0, 1e4)}  # fmt: skip


@dataclass(frozen=True)
class _Settings:
    """The options of one :func:`register_points` call, checked.

    The keyword arguments as given, except ``omega``: the starting (or fixed) outlier
    share, with ``omega_auto`` (the share is EM-estimated: ``omega`` None or ``"auto"``)
    and ``omega_choose`` (``"auto"``: estimated or none, whichever is more likely).
    ``stage`` is the name of this fit in the log.
    """

    lambda_: float | None
    beta: float | None
    omega: float
    omega_auto: bool
    omega_choose: bool
    gamma: float
    eta: float
    mode: str
    max_iter: int
    min_iter: int
    tol: float
    downsample: int | None
    rank: int | None
    estep: str
    device: str
    n_starts: int
    seed: int
    band: int
    progress: bool
    stage: str


def _check_inputs(args: dict) -> tuple[np.ndarray, np.ndarray, _Settings]:
    """Check the arguments of :func:`register_points` (``args``: its parameters by name).

    Returns ``(x, y, settings)``: the coordinates as contiguous float64 arrays and the
    checked options. Raises :class:`InputError` with one clear line on a bad value.
    """
    x = np.ascontiguousarray(args["x"], dtype=np.float64)
    y = np.ascontiguousarray(args["y"], dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        msg = f"source and target coordinates must have the same number of dimensions, got {y.shape} and {x.shape}"
        raise InputError(msg)
    d = x.shape[1]
    if d not in (2, 3):
        msg = f"coordinates must be 2-D or 3-D, got {d} dimensions"
        raise InputError(msg)
    if x.shape[0] < 3 or y.shape[0] < 3:
        msg = f"each slice needs at least 3 cells (source {y.shape[0]}, target {x.shape[0]})"
        raise InputError(msg)
    for name in ("lambda_", "beta", "gamma", "eta"):
        lo, hi = PARAM_RANGES[name]
        v = args[name]
        if v is not None and not lo <= v <= hi:
            msg = f"`{name}` must lie between {lo:g} and {hi:g}, got {v}"
            raise InputError(msg)
    omega = args["omega"]
    if isinstance(omega, str) and omega != "auto":
        msg = f"`omega` must be a number in [0, 1), None or 'auto', got {omega!r}"
        raise InputError(msg)
    omega_choose = omega == "auto"  # EM estimate or none, whichever explains the data better
    omega_auto = omega is None or omega_choose
    omega = _OMEGA_START if omega_auto else omega
    if not 0 <= omega < 1:
        msg = f"`omega` must be in [0, 1), got {omega}"
        raise InputError(msg)
    if args["n_starts"] < 1:
        msg = f"`n_starts` must be at least 1, got {args['n_starts']}"
        raise InputError(msg)
    if args["eta"] < 0:
        msg = f"`eta` must be non-negative, got {args['eta']}"
        raise InputError(msg)
    same = ("lambda_", "beta", "gamma", "eta", "mode", "max_iter", "min_iter", "tol",
            "downsample", "rank", "estep", "device", "n_starts", "seed", "band", "progress")  # fmt: skip
    opts = _Settings(
        **{k: args[k] for k in same},
        omega=omega,
        omega_auto=omega_auto,
        omega_choose=omega_choose,
        stage=args["_stage"],
    )
    return x, y, opts


@dataclass(frozen=True)
class _Problem:
    """Both slices as the fit sees them: centred, one shared RMS radius ``sc``.

    ``x``, ``y`` (and ``fx``, ``fy``) as given (float64), ``xn``, ``yn`` normalised
    (``(x - mx) / sc``), ``fxn``, ``fyn`` the features centred on their joint mean ``fmu``
    and scaled by their joint RMS ``fsc`` (None without the expression term, ``use_f``
    False); ``t0`` the start time of the fit (for the progress lines).
    """

    x: np.ndarray
    y: np.ndarray
    fx: np.ndarray | None
    fy: np.ndarray | None
    xn: np.ndarray
    yn: np.ndarray
    fxn: np.ndarray | None
    fyn: np.ndarray | None
    mx: np.ndarray
    my: np.ndarray
    sc: float
    use_f: bool
    fmu: np.ndarray | None
    fsc: float
    t0: float


def _normalise(x, y, fx, fy, opts: _Settings) -> _Problem:
    """Centre each slice and scale both by one shared RMS radius (a rigid fit stays rigid);
    centre and scale the features jointly. Takes the checked coordinates ``x``, ``y`` and
    the features as given; returns the :class:`_Problem`. Raises :class:`InputError` when
    the features differ in width."""
    t0 = time.perf_counter()
    mx, my = x.mean(0), y.mean(0)
    sc = float(np.sqrt(0.5 * (((x - mx) ** 2).sum(1).mean() + ((y - my) ** 2).sum(1).mean())))
    sc = sc if sc > 0 else 1.0
    xn, yn = (x - mx) / sc, (y - my) / sc
    use_f = fx is not None and fy is not None and opts.eta > 0 and np.shape(fx)[1] > 0
    fmu0, fsc = None, 1.0
    if use_f:
        fx = np.asarray(fx, dtype=np.float64)
        fy = np.asarray(fy, dtype=np.float64)
        if fx.shape[1] != fy.shape[1]:
            msg = f"source and target features differ in width ({fy.shape[1]} vs {fx.shape[1]})"
            raise InputError(msg)
        allf = np.concatenate([fx, fy])
        fmu0 = allf.mean(0)
        fsc = float(np.sqrt(((allf - fmu0) ** 2).mean())) or 1.0
        fxn, fyn = (fx - fmu0) / fsc, (fy - fmu0) / fsc
    else:
        fxn = fyn = None
    return _Problem(x=x, y=y, fx=fx, fy=fy, xn=xn, yn=yn, fxn=fxn, fyn=fyn, mx=mx, my=my,
                    sc=sc, use_f=use_f, fmu=fmu0, fsc=fsc, t0=t0)  # fmt: skip


def _coarse_to_fine(prob: _Problem, opts: _Settings) -> bool:
    """Whether to fit on ``_COARSE`` landmarks first and refine at full resolution: a
    non-rigid fit of more than ``_COARSE`` cells, not downsampled, E-step not forced dense.

    Coarse-to-fine (BCPD++-style acceleration, Hirose TPAMI 2021): the rotation search, the
    smoothness selection and the broad EM run on feature-sensitive landmarks; the map is
    then carried to every cell (GP interpolation) and refined there with the
    neighbour-restricted E-step and the Nystrom deformation solve.
    """
    return (
        opts.downsample is None
        and opts.mode == "nonrigid"
        and max(prob.x.shape[0], prob.y.shape[0]) > _COARSE
        and opts.estep != "dense"
    )


def _coarse_options(opts: _Settings) -> dict:
    """Keyword arguments of the coarse fit's :func:`register_points` call: the caller's
    options (``omega`` as given) on ``_COARSE`` landmarks."""
    omega = "auto" if opts.omega_choose else None if opts.omega_auto else opts.omega
    return dict(
        lambda_=opts.lambda_, beta=opts.beta, omega=omega, gamma=opts.gamma, eta=opts.eta,
        mode=opts.mode, max_iter=opts.max_iter, min_iter=opts.min_iter, tol=opts.tol,
        downsample=_COARSE, rank=opts.rank, estep=opts.estep, device=opts.device,
        n_starts=opts.n_starts, seed=opts.seed, band=opts.band, progress=opts.progress,
        _stage="coarse fit on landmarks",
    )  # fmt: skip


@dataclass
class _Run:
    """The state the stages hand on, from the landmarks to the final EM.

    ``ctx`` the EM's fixed data on the landmarks (its outlier model and sigma floor may be
    changed by later stages), ``iy`` the source landmarks' indices, ``spacing`` the target
    landmarks' median nearest-neighbour distance, ``rng`` the run's random stream.
    ``start`` the state the final EM starts from (pose ``s, lin, t``, deformation ``v``,
    ``sigma``, feature scales ``e``); ``angle``, ``pose_check``, ``omega_choice``,
    ``selection`` the records of the choices; ``lambda_``, ``beta`` the smoothness (None
    until chosen); ``omega_choose`` whether the outlier model is still to choose;
    ``estep``, ``local_k``, ``min_iter``, ``max_iter``, ``rank`` the final EM's settings;
    ``refining`` whether this run refines a coarse fit.
    """

    ctx: _Ctx
    iy: np.ndarray
    spacing: float
    rng: np.random.Generator
    start: _State
    lambda_: float | None
    beta: float | None
    omega_choose: bool
    estep: str
    min_iter: int
    max_iter: int
    rank: int | None
    local_k: int = _LOCAL_K
    angle: float = 0.0
    pose_check: dict = field(default_factory=dict)
    omega_choice: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    refining: bool = False


def _landmarks(prob: _Problem, opts: _Settings) -> _Run:
    """The cells the EM sees and its initial state.

    Takes the normalised slices; with ``downsample`` below the larger slice, draws that
    many feature-sensitive landmarks per slice (source first, from the run's stream seeded
    by ``seed``). Initial state: identity pose, no deformation, sigma ``gamma`` times the
    RMS source-target distance, feature scales from the features' spread; the sigma floor
    is ``_SIGMA_FLOOR`` of the target's median spacing (positions are not resolved below
    it: without the floor sigma keeps falling and wobbling once the fit is exact).
    Returns the :class:`_Run`. Raises :class:`InputError` for ``downsample`` below 3.
    """
    rng = np.random.default_rng(opts.seed)
    x, y, d = prob.x, prob.y, prob.x.shape[1]
    iy = np.arange(y.shape[0])
    ix = np.arange(x.shape[0])
    if opts.downsample is not None and opts.downsample < max(x.shape[0], y.shape[0]):
        if opts.downsample < 3:
            msg = f"`downsample` must be at least 3, got {opts.downsample}"
            raise InputError(msg)
        iy = feature_sensitive_sample(prob.yn, prob.fyn, opts.downsample, rng)
        ix = feature_sensitive_sample(prob.xn, prob.fxn, opts.downsample, rng)
        log.info("downsampled to %d source and %d target landmarks", len(iy), len(ix))
    y0 = np.ascontiguousarray(prob.yn[iy])
    xw = np.ascontiguousarray(prob.xn[ix])
    fy0 = None if prob.fyn is None else np.ascontiguousarray(prob.fyn[iy])
    fxw = None if prob.fxn is None else np.ascontiguousarray(prob.fxn[ix])
    sigma = opts.gamma * float(
        np.sqrt(((xw**2).sum(1).mean() + (y0**2).sum(1).mean() - 2 * xw.mean(0) @ y0.mean(0)) / d)
    )
    if prob.use_f:
        e2 = fxw.var(0) + fy0.var(0) + (fxw.mean(0) - fy0.mean(0)) ** 2
        e = np.sqrt(e2) + _FEATURE_FLOOR
        zeta = opts.eta * d / fxw.shape[1]
        fmu, fvar = fxw.mean(0), fxw.var(0) + 1e-12
    else:
        e = np.zeros(0)
        zeta = 1.0
        fmu = fvar = None
    from scipy.spatial import cKDTree

    spacing = float(np.median(cKDTree(xw).query(xw, k=2)[0][:, 1]))
    span = np.maximum(xw.max(0) - xw.min(0), 1e-12)
    ctx = _Ctx(
        xw=xw, fxw=fxw, y0=y0, fy0=fy0, zeta=zeta, omega=opts.omega,
        log_vol=float(np.log(span).sum()), fmu=fmu, fvar=fvar,
        sigma_min=_SIGMA_FLOOR * spacing if spacing > 0 else 1e-6, use_f=prob.use_f,
        omega_auto=opts.omega_auto,
    )  # fmt: skip
    start = _State(s=1.0, lin=np.eye(d), t=np.zeros(d), v=np.zeros_like(y0), sigma=sigma, e=e)
    return _Run(
        ctx=ctx, iy=iy, spacing=spacing, rng=rng, start=start, lambda_=opts.lambda_,
        beta=opts.beta, omega_choose=opts.omega_choose, estep=opts.estep,
        min_iter=opts.min_iter, max_iter=opts.max_iter, rank=opts.rank,
    )  # fmt: skip


def _refinement_start(run: _Run, coarse, opts: _Settings) -> None:
    """Full-resolution refinement: start from the coarse fit (a :class:`RegistrationResult`
    on ``_COARSE`` landmarks) and take its choices.

    Updates ``run``: ``start`` the coarse pose, sigma and feature scales with its
    deformation carried to every cell (GP interpolation); its smoothness, outlier model,
    initial rotation, pose check and smoothness record (no outlier choice left); the
    refinement's settings: ``_FINE_K`` neighbours per target in the local E-step (the
    ``auto`` E-step made local on the CPU), at least ``_FINE_MIN_ITER`` and at most
    ``_FINE_MAX_ITER`` iterations, Nystrom rank ``_FINE_RANK`` unless ``rank`` is given,
    and the sigma floor raised to ``_FINE_FLOOR`` of the spacing (a low-rank map cannot
    follow every cell: below a quarter of the spacing the truncated E-step and the rank-200
    solve chase each other and sigma oscillates).
    """
    cn, p = coarse._norm, coarse.params
    run.lambda_, run.beta = p["lambda"], p["beta"]
    v = interpolate_displacement(run.ctx.y0, cn["centres"], cn["w"], run.beta, device=opts.device)
    run.start = _State(s=coarse.scale, lin=coarse.rotation, t=cn["t"], v=v, sigma=cn["sigma"],
                       e=np.asarray(coarse.feature_scales))  # fmt: skip
    run.ctx.omega = p["omega"]
    run.ctx.omega_auto = bool(p["omega_estimated"])
    run.omega_choose = False  # the coarse fit chose: refine with its outlier model
    run.angle, run.pose_check = p["initial_rotation"], p["pose_check"]
    run.selection = p["smoothness_selection"]
    run.local_k, run.min_iter = _FINE_K, _FINE_MIN_ITER
    run.ctx.sigma_min = max(run.ctx.sigma_min, _FINE_FLOOR * run.spacing)
    run.max_iter = min(opts.max_iter, _FINE_MAX_ITER)
    run.estep = "local" if opts.estep == "auto" and opts.device == "cpu" else opts.estep
    run.rank = _FINE_RANK if opts.rank is None else opts.rank  # a smooth map: lower rank
    run.refining = True


def _set_pose(run: _Run, pose: tuple) -> None:
    """Take the ``(s, lin, t, angle, record)`` of :func:`_pose` into ``run``."""
    s, lin, t, run.angle, run.pose_check = pose
    run.start = replace(run.start, s=s, lin=lin, t=t)


def _pose_search(run: _Run, opts: _Settings) -> None:
    """Rotation search from ``n_starts`` turns, then the non-rigid pose check (:func:`_pose`).

    With partial overlap assumed (``omega`` given > 0, or always estimated) the search is
    rigid; otherwise it fits similarity maps without outliers (``"auto"`` searches again,
    rigid, when the data choose outliers: :func:`_outlier_choice`). Updates ``run.start``
    (pose), ``run.angle`` and ``run.pose_check``.
    """
    partial = (opts.omega_auto and not opts.omega_choose) or (
        not opts.omega_auto and opts.omega > 0
    )
    ctx = replace(run.ctx, omega=0.0, omega_auto=False) if run.omega_choose else run.ctx
    st = run.start
    _set_pose(run, _pose(ctx, st.sigma, st.e, opts.mode, opts.n_starts, run.rng, opts.gamma,
                         run.lambda_, run.beta, partial, run.estep, opts.device))  # fmt: skip


def _outlier_choice(run: _Run, opts: _Settings) -> None:
    """``omega="auto"``: the outlier share estimated by EM or none, whichever is more likely.

    Two broad fits from the chosen pose (:func:`_choose_outliers`, on their own stream
    seeded ``seed + 1`` so that the main stream runs as without the choice); when the
    estimate wins and ``n_starts`` > 1, the pose is searched again, rigid, with the
    estimated share. Updates ``run.ctx`` (outlier model), ``run.omega_choice`` and, after a
    re-search, ``run.start`` (pose), ``run.angle`` and ``run.pose_check``.
    """
    ctx, st = run.ctx, run.start
    choice = _choose_outliers(
        ctx,
        _State(s=st.s, lin=st.lin, t=st.t, v=np.zeros_like(ctx.y0), sigma=st.sigma, e=st.e),
        opts.mode,
        run.lambda_,
        run.beta,
        np.random.default_rng(opts.seed + 1),  # leaves the main stream as without the choice
        device=opts.device,
    )
    ctx.omega_auto = choice["chosen"] == "estimated"
    ctx.omega = _OMEGA_START if ctx.omega_auto else 0.0
    log.info(
        "outlier share: %s (EM estimate %.3f, log-likelihood %.1f; none: %.1f)",
        "estimated" if ctx.omega_auto else "none",
        choice["omega_estimated"],
        choice["loglik_estimated"],
        choice["loglik_none"],
    )
    if ctx.omega_auto and opts.n_starts > 1:
        _set_pose(run, _pose(ctx, st.sigma, st.e, opts.mode, opts.n_starts, run.rng,
                             opts.gamma, run.lambda_, run.beta, True, run.estep, opts.device))  # fmt: skip
        choice["pose_searched_again"] = True
    run.omega_choice = choice


def _broad_restart(run: _Run, opts: _Settings) -> None:
    """Restart broad from the chosen pose: sigma ``gamma`` times the RMS distance again.

    The deformation fit then sees the whole mismatch instead of the rigid fit's local
    optimum (a start at the rigid fit's small sigma locks in its errors). Updates
    ``run.start.sigma``.
    """
    st, ctx = run.start, run.ctx
    sigma = opts.gamma * _rms_sigma(ctx.xw, st.s * ctx.y0 @ st.lin.T + st.t)
    run.start = replace(st, sigma=sigma)
    log.info("initial rotation %.0f degrees (best of %d starts)", run.angle, opts.n_starts)


def _smoothness(run: _Run, opts: _Settings) -> DeformSolver | None:
    """Smoothness choice and the deformation solve.

    Non-rigid, lambda or beta not given (and not refining a coarse fit, which chose
    already): the held-out likelihood chooses them (:func:`_select_smoothness`, on the main
    stream, from the current pose). Unset values default to 2. Updates ``run.lambda_``,
    ``run.beta``, ``run.selection``; returns the :class:`DeformSolver` on the landmarks
    (exact up to ``_EXACT_MAX`` of them, else Nystrom rank 300, or ``rank``), None unless
    non-rigid.
    """
    m = run.ctx.y0.shape[0]
    rk = run.rank if run.rank is not None else (None if m <= _EXACT_MAX else 300)
    if not run.refining and opts.mode == "nonrigid" and (run.lambda_ is None or run.beta is None):
        st = run.start
        run.lambda_, run.beta, run.selection = _select_smoothness(
            run.ctx,
            _State(s=st.s, lin=st.lin, t=st.t, v=np.zeros_like(run.ctx.y0), sigma=st.sigma,
                   e=st.e),
            run.lambda_,
            run.beta,
            run.rng,
            device=opts.device,
        )  # fmt: skip
        log.info(
            "smoothness chosen by held-out likelihood: lambda %g, beta %g", run.lambda_, run.beta
        )
    run.lambda_ = 2.0 if run.lambda_ is None else run.lambda_
    run.beta = 2.0 if run.beta is None else run.beta
    if opts.mode != "nonrigid":
        return None
    solver = DeformSolver(run.ctx.y0, run.beta, rk, run.rng)
    log.info("deformation solve: %s", "exact" if solver.exact else f"Nystrom rank {rk}")
    return solver


def _final_em(run: _Run, solver, prob: _Problem, opts: _Settings) -> _State:
    """The EM (:func:`_em`) from ``run.start`` with the run's settings and ``solver``
    (None: no deformation), progress lines every ``band`` iterations with ``progress``.
    Returns the fitted :class:`_State`."""
    return _em(
        run.ctx, run.start, mode=opts.mode, solver=solver, lambda_=run.lambda_,
        max_iter=run.max_iter, min_iter=run.min_iter, tol=opts.tol, estep=run.estep,
        device=opts.device, band=opts.band if opts.progress else 0, t0=prob.t0, sc=prob.sc,
        local_k=run.local_k,
    )  # fmt: skip


def _report(fit: _State, coarse, prob: _Problem, opts: _Settings) -> tuple[int, list]:
    """Warn when the EM stopped at ``max_iter`` (:class:`ConvergenceWarning`, attributed to
    the caller of :func:`register_points`) and log the fit's line (one sigma per run: the
    final one). Returns ``(n_iter, sigma trace)`` in normalised units, the coarse fit's
    iterations first when there was one."""
    it, trace = fit.it, fit.trace
    if coarse is not None:
        it += coarse.n_iter
        trace = list(coarse.trace / prob.sc) + list(trace)
    if not fit.converged:
        warnings.warn(
            f"registration stopped at max_iter {opts.max_iter} before sigma settled; raise max_iter",
            ConvergenceWarning,
            stacklevel=3,
        )
    if opts.stage == "registration":
        log.info(
            "registration: %d iterations, converged %s, final match scale sigma %.4g "
            "(coordinate units)",
            it,
            fit.converged,
            fit.sigma * prob.sc,
        )
    else:
        log.info("%s: %d iterations", opts.stage, it)
    return it, trace


def _result_fields(prob, run, fit, solver, it, trace, coarse, opts) -> dict:
    """The fields of the :class:`RegistrationResult`: the fitted map carried to every source
    cell (the deformation GP-interpolated from the landmarks), in the input's units.

    Takes the problem, the run (its choices), the fitted state, the solver, ``(it, trace)``
    of :func:`_report` and the coarse fit (or None).
    """
    s, lin, t, sigma, e = fit.s, fit.lin, fit.t, fit.sigma, fit.e
    yn, sc = prob.yn, prob.sc
    full_lin = s * lin if opts.mode != "affine" else lin
    if solver is not None and len(run.iy) < prob.y.shape[0]:
        vall = interpolate_displacement(yn, solver.centres, fit.w, run.beta, device=opts.device)
    elif solver is not None:
        vall = fit.v
    else:
        vall = np.zeros_like(yn)
    registered = ((yn + vall) @ full_lin.T + t) * sc + prob.mx
    norm = {
        "mx": prob.mx,
        "my": prob.my,
        "sc": sc,
        "lin": full_lin,
        "t": t,
        "w": fit.w if solver is not None else None,
        "centres": None if solver is None else solver.centres,
        "beta": run.beta,
        "sigma": sigma,
        "fmu": prob.fmu if prob.use_f else None,
        "fsc": prob.fsc if prob.use_f else 1.0,
        "h": e / np.sqrt(run.ctx.zeta) if prob.use_f else e,
    }
    return dict(
        registered=registered,
        displacement=registered - prob.y,
        scale=float(s),
        rotation=lin,
        translation=sc * t + prob.mx - full_lin @ prob.my,
        sigma=float(sigma * sc),
        n_iter=it,
        converged=fit.converged,
        trace=np.asarray(trace) * sc,
        params=_params(prob, run, fit, coarse, opts),
        mode=opts.mode,
        n_landmarks=len(run.iy),
        feature_scales=np.asarray(e),
        _norm=norm,
    )


def _params(prob, run, fit, coarse, opts) -> dict:
    """``params`` of the result: every option and every choice made from the data."""
    landmarks = len(run.iy) < prob.y.shape[0]
    return {
        "lambda": run.lambda_,
        "beta": run.beta,
        "omega": float(fit.omega),
        "omega_estimated": bool(opts.omega_auto and float(fit.omega) > 0),
        "omega_choice": run.omega_choice,
        "gamma": opts.gamma,
        "eta": opts.eta,
        "mode": opts.mode,
        "max_iter": opts.max_iter,
        "min_iter": opts.min_iter,
        "tol": opts.tol,
        "downsample": -1 if opts.downsample is None else int(opts.downsample),
        "estep": run.estep,
        "route": "landmarks" if landmarks else "coarse-to-fine" if coarse else "full",
        "coarse_landmarks": _COARSE if coarse is not None else -1,
        "seed": opts.seed,
        "smoothness_selection": run.selection,
        "n_starts": opts.n_starts,
        "initial_rotation": run.angle,
        "pose_check": run.pose_check,
        "expression": bool(prob.use_f),
        "loglik": float(fit.loglik),
    }
