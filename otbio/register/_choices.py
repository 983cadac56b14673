"""The choices :func:`otbio.register.register_points` makes from the data.

The rotation search and the non-rigid pose check (:func:`_pose`), the outlier model
(:func:`_choose_outliers`, ``omega="auto"``) and the smoothness (:func:`_select_smoothness`),
each by comparing likelihoods of short EM runs (:func:`otbio.register._bcpd._em`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from otbio.register._bcpd import (
    _BETA_GRID,
    _EXACT_MAX,
    _HOLDOUT,
    _LAMBDA_GRID,
    _N_SPLITS,
    _OMEGA_START,
    _PAIR_GRID,
    _PLAIN_MARGIN,
    _POSE_APART,
    _POSE_CHECK,
    _POSE_ITER,
    _SEARCH_ITER,
    _SELECT_MAX,
    _em,
    _heldout_loglik,
    _rms_sigma,
    _rot2,
    _State,
)
from otbio.register._deform import DeformSolver


def _select_smoothness(ctx, st0, lambda_, beta, rng, *, device):
    """Data-driven ``lambda_`` / ``beta``: the pair whose fit best predicts held-out cells.

    A random ``_HOLDOUT`` share of the target cells is set aside; the deformation is fitted
    to the rest for each candidate (the (lambda, beta) pairs of ``_PAIR_GRID``; beta over
    ``_BETA_GRID`` when lambda is given, lambda over ``_LAMBDA_GRID`` when beta is given)
    from the same pose, and scored by the
    log-likelihood of the held-out cells under the fitted mixture (cross-validation: too
    stiff a map leaves them far from every source, too loose a one snaps the sources onto
    the fitted cells and shrinks sigma below the gaps). The score is averaged over
    ``_N_SPLITS`` disjoint held-out shares (folds of one permutation): one 20% split is
    noisy on a few hundred cells and picked beta 2 where beta 1 was better by up to 3
    points of RMSE cut; three splits chose as well as the best fixed candidate on the
    known-warp subset. The middle pair (lambda 1, beta 1.414) lifted the median RMSE cut at
    amplitude 0.06 (rotation 0) from 0.947 to 0.952 over the 2-2 / 2-1 / 2-0.7 grid. Runs on
    at most ``_SELECT_MAX`` landmarks per slice. Returns ``(lambda_, beta, record)``.
    """
    m, n = ctx.y0.shape[0], ctx.xw.shape[0]
    iy = np.arange(m) if m <= _SELECT_MAX else np.sort(rng.choice(m, _SELECT_MAX, replace=False))
    ix = np.arange(n) if n <= _SELECT_MAX else np.sort(rng.choice(n, _SELECT_MAX, replace=False))
    nh = max(1, int(round(_HOLDOUT * len(ix))))
    perm = rng.permutation(len(ix))
    if beta is None and lambda_ is None:
        grid = list(_PAIR_GRID)
    elif beta is None:
        grid = [(lambda_, b) for b in _BETA_GRID]
    else:
        grid = [(lam, beta) for lam in _LAMBDA_GRID]
    n_splits = max(1, min(_N_SPLITS, len(ix) // nh))
    per_split = np.zeros((n_splits, len(grid)))
    for k_split in range(n_splits):  # disjoint held-out shares (folds of one permutation)
        hold_ix = perm[k_split * nh : (k_split + 1) * nh]
        hold = np.sort(ix[hold_ix])
        train = np.sort(np.setdiff1d(ix, hold, assume_unique=True))
        sub = ctx.subset(train, iy)
        held = ctx.subset(hold, iy)
        for j, (lam, b) in enumerate(grid):
            solver = DeformSolver(sub.y0, b, None if len(iy) <= _EXACT_MAX else 300, rng)
            st = _em(
                sub,
                _State(
                    s=st0.s, lin=st0.lin, t=st0.t, v=np.zeros_like(sub.y0), sigma=st0.sigma,
                    e=st0.e,
                ),
                mode="nonrigid",
                solver=solver,
                lambda_=lam,
                max_iter=200,
                min_iter=30,
                tol=1e-4,
                estep="auto",
                device=device,
                band=0,
                t0=0.0,
                sc=1.0,
            )  # fmt: skip
            per_split[k_split, j] = _heldout_loglik(sub, st, held.xw, held.fxw) / nh
    scores = per_split.mean(0)
    k = int(np.argmax(scores))
    record = {
        "candidates_lambda": np.array([g[0] for g in grid]),
        "candidates_beta": np.array([g[1] for g in grid]),
        "heldout_loglik_per_cell": np.array(scores),
        "heldout_share": _HOLDOUT,
        "n_splits": n_splits,
        "heldout_loglik_per_split": per_split,
    }
    return grid[k][0], grid[k][1], record


def _rotation_search(ctx, sigma, e, mode, n_starts, rng, *, estep, device, rigid=False, size=500):
    """Similarity fits (rigid when ``rigid`` or ``mode="rigid"``) from ``n_starts`` initial
    rotations, most likely first.

    Each start rotates the source by ``360 k / n_starts`` degrees (about the z axis in 3-D)
    and runs a short similarity EM (rigid, unit scale, when partial overlap is assumed)
    with the expression term on at most ``size``
    landmarks per slice, ranked by the likelihood of the fit. This is what lets the
    registration recover 90 or 180 degree turns that a single start from the identity
    falls short of. Returns ``(fits, sub)``: ``fits`` a list of ``(state, angle_degrees)``
    sorted by decreasing likelihood, ``sub`` the landmarks they were fitted on.
    """
    sub = ctx
    m, n = ctx.y0.shape[0], ctx.xw.shape[0]
    if m > size or n > size:
        iy = np.sort(rng.choice(m, min(m, size), replace=False))
        ix = np.sort(rng.choice(n, min(n, size), replace=False))
        sub = ctx.subset(ix, iy)
    d = ctx.y0.shape[1]
    # rigid (unit scale) with partial overlap: with a free scale a partial source shrinks onto
    # part of the target and a wrong turn wins (60% overlap: RMSE cut 0.53 and 0.61 on 2 of
    # 6 pairs, 0.95-0.96 on all 6 rigid); on full overlap the similarity search did better
    # (on-lattice pairs: 0.996-0.999 against 0.947-0.951 rigid)
    fit_mode = "rigid" if mode == "rigid" or (rigid and mode != "affine") else "similarity"
    fits = []
    for k in range(n_starts):
        ang = 2 * np.pi * k / n_starts
        st0 = _State(
            s=1.0, lin=_rot2(ang, d), t=np.zeros(d), v=np.zeros_like(sub.y0), sigma=sigma, e=e
        )
        st = _em(
            sub,
            st0,
            mode=fit_mode,
            solver=None,
            lambda_=1.0,
            max_iter=_SEARCH_ITER,
            min_iter=10,
            tol=1e-3,
            estep="dense",
            device=device,
            band=0,
            t0=0.0,
            sc=1.0,
        )
        fits.append((st, float(np.rad2deg(ang))))
    fits.sort(key=lambda f: -f[0].loglik)
    return fits, sub


def _pose(ctx, sigma, e, mode, n_starts, rng, gamma, lambda_, beta, rigid, estep, device):
    """Rotation search, then (non-rigid) pose check: ``(s, lin, t, angle, record)``."""
    fits, sub = _rotation_search(
        ctx, sigma, e, mode, n_starts, rng, estep=estep, device=device, rigid=rigid
    )
    best_fit, angle = fits[0]
    record = {}
    if mode == "nonrigid":
        best_fit, angle, record = _check_poses(sub, fits, gamma, lambda_, beta, rng, device=device)
    record = {**record, "rigid_search": bool(rigid or mode == "rigid")}
    return best_fit.s, best_fit.lin, best_fit.t, angle, record


def _turn(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation between two rotation matrices."""
    c = (np.trace(a.T @ b) - (a.shape[0] - 2)) / 2.0
    return float(np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0))))


def _check_poses(sub, fits, gamma, lambda_, beta, rng, *, device):
    """Among the rotation search's most likely distinct poses, the one a non-rigid fit
    explains best.

    A strong warp can make a wrong turn (say 90 degrees on a squarish slice) fit a
    similarity map about as well as the right one; the deformation then separates them:
    from the right pose it explains the targets (and their expression) far better. Each of
    the ``_POSE_CHECK`` most likely poses whose rotations differ by more than
    ``_POSE_APART`` degrees is refitted broad, non-rigid (``lambda_``/``beta`` or 2/2), on
    the search's landmarks; the highest likelihood wins. The winner's own start (its
    initial rotation, unit scale, no shift) is refitted too: a strong warp can also pull
    the similarity fit's scale and rotation off, and a deformation started there can stop
    in a local optimum (an RMSE cut of 0.78 where the plain start reaches 0.98). The plain
    start replaces the pose only when its likelihood is higher by more than
    ``_PLAIN_MARGIN`` of the pose's (elsewhere the two differ by under 1%, within the
    noise of 500 landmarks). Returns ``(state, initial rotation in degrees, record)``.
    """
    picked = []
    for j, (st, _) in enumerate(fits):
        if all(_turn(st.lin, fits[i][0].lin) > _POSE_APART for i in picked):
            picked.append(j)
        if len(picked) == _POSE_CHECK:
            break
    lam = 2.0 if lambda_ is None else lambda_
    solver = DeformSolver(sub.y0, 2.0 if beta is None else beta, None, rng)

    def nonrigid_loglik(st):
        sig = gamma * _rms_sigma(sub.xw, st.s * sub.y0 @ st.lin.T + st.t)
        fit = _em(
            sub,
            _State(s=st.s, lin=st.lin, t=st.t, v=np.zeros_like(sub.y0), sigma=sig, e=st.e),
            mode="nonrigid",
            solver=solver,
            lambda_=lam,
            max_iter=_POSE_ITER,
            min_iter=30,
            tol=1e-4,
            estep="dense",
            device=device,
            band=0,
            t0=0.0,
            sc=1.0,
        )
        return float(fit.loglik)

    ll = [nonrigid_loglik(fits[j][0]) for j in picked]
    best = picked[int(np.argmax(ll))]
    state, angle = fits[best]
    d = sub.y0.shape[1]
    plain = _State(
        s=1.0,
        lin=_rot2(np.deg2rad(angle), d),
        t=np.zeros(d),
        v=np.zeros_like(sub.y0),
        sigma=state.sigma,
        e=state.e,
    )
    ll_plain = nonrigid_loglik(plain)
    use_plain = ll_plain > max(ll) + _PLAIN_MARGIN * abs(max(ll))
    record = {
        "candidates_rotation": np.array([fits[j][1] for j in picked]),
        "similarity_loglik": np.array([fits[j][0].loglik for j in picked]),
        "nonrigid_loglik": np.array(ll),
        "plain_start_loglik": ll_plain,
        "plain_start": bool(use_plain),
    }
    return (plain if use_plain else state), angle, record


def _choose_outliers(ctx, st0, mode, lambda_, beta, rng, *, device):
    """Outliers or none: the share of target cells that no source cell explains, from the data.

    From the chosen pose, two broad fits on at most ``_SELECT_MAX`` landmarks per slice (the
    final mode; non-rigid with ``lambda_``/``beta`` or 2/2, at most ``_POSE_ITER``
    iterations): one with the outlier share estimated by EM (from 0.1, within [0.001, 0.5]),
    one without outliers. The more likely under its own mixture wins (the likelihood counts
    the outlier weight, so the estimate pays for the mass it takes from the sources). On full
    overlap the estimate let the source shrink onto part of the target (RMSE cut 0.57 where
    none reached 0.95) and was less likely by about 150 nats; with 60% overlap no outliers
    reached 0.04-0.17 and was less likely by about 400 nats. Returns the record for
    ``params['omega_choice']``.
    """
    m, n = ctx.y0.shape[0], ctx.xw.shape[0]
    sub = ctx
    if m > _SELECT_MAX or n > _SELECT_MAX:
        iy = np.sort(rng.choice(m, min(m, _SELECT_MAX), replace=False))
        ix = np.sort(rng.choice(n, min(n, _SELECT_MAX), replace=False))
        sub = ctx.subset(ix, iy)
    nonrigid = mode == "nonrigid"
    solver = DeformSolver(sub.y0, 2.0 if beta is None else beta, None, rng) if nonrigid else None
    fits = []
    for auto in (True, False):
        c = replace(sub, omega=_OMEGA_START if auto else 0.0, omega_auto=auto)
        st = _em(
            c,
            replace(st0, v=np.zeros_like(sub.y0), omega=None),
            mode=mode,
            solver=solver,
            lambda_=2.0 if lambda_ is None else lambda_,
            max_iter=_POSE_ITER,
            min_iter=30,
            tol=1e-4,
            estep="dense",
            device=device,
            band=0,
            t0=0.0,
            sc=1.0,
        )
        fits.append(st)
    est, none = fits
    return {
        "omega_estimated": float(est.omega),
        "loglik_estimated": float(est.loglik),
        "loglik_none": float(none.loglik),
        "chosen": "estimated" if est.loglik > none.loglik else "none",
    }
