"""Array-level registration: BCPD with an expression term (the Domain Elastic Transform).

:func:`register_points` is a short sequence of stages (:mod:`otbio.register._stages`); the
EM itself is in :mod:`otbio.register._bcpd` and the choices made from the data (pose,
outliers, smoothness) in :mod:`otbio.register._choices`.

References:
    O. Hirose, "A Bayesian formulation of coherent point drift", IEEE TPAMI 43(7), 2021
    (BCPD; reference C implementation ``ohirose/bcpd``, MIT licence).
    O. Hirose and E. Rodola, "Domain Elastic Transform: Bayesian function registration for
    high-dimensional scientific data", arXiv:2603.21235, 2026 (DET).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from otbio._docs import doc_params
from otbio._errors import InputError
from otbio._progress import logger as log
from otbio.register._bcpd import _COARSE
from otbio.register._deform import interpolate_displacement
from otbio.register._stages import (
    PARAM_RANGES,
    _broad_restart,
    _check_inputs,
    _coarse_options,
    _coarse_to_fine,
    _final_em,
    _landmarks,
    _normalise,
    _outlier_choice,
    _pose_search,
    _refinement_start,
    _report,
    _result_fields,
    _smoothness,
)

__all__ = ["PARAM_RANGES", "RegistrationResult", "register_points"]

Mode = Literal["nonrigid", "rigid", "affine"]
EStepMode = Literal["auto", "dense", "local"]


@dataclass(frozen=True)
class RegistrationResult:
    """A fitted map :math:`T(y) = s R (y + v(y)) + t` (or :math:`B y + t` when affine).

    Attributes are in the input's coordinate units: ``scale``, ``rotation`` (D x D, det +1;
    the full linear part ``B`` when affine), ``translation``; ``registered`` (M, D) holds
    :math:`T(y_m)` for every source point, ``displacement`` = ``registered - y``; ``sigma`` is
    the final match scale; ``trace`` the sigma of every iteration.
    Use :meth:`transform` to carry new points (cells of the source slice not used in the fit).
    """

    registered: np.ndarray
    displacement: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    sigma: float
    n_iter: int
    converged: bool
    trace: np.ndarray
    params: dict
    mode: str
    n_landmarks: int
    feature_scales: np.ndarray
    _norm: dict = field(repr=False)

    def __iter__(self):
        # `adata, result = otbio.register(...)` of earlier versions: say what changed
        msg = (
            "otbio.register() now writes into `source` (copy=False) and returns the "
            "RegistrationResult; pass copy=True to get (adata, result)"
        )
        raise TypeError(msg)

    def transform(self, points: np.ndarray, *, device: str = "cpu") -> np.ndarray:
        """Apply the fitted map to new source-frame points (n, D); returns (n, D)."""
        p = np.asarray(points, dtype=np.float64)
        nrm = self._norm
        if p.ndim != 2 or p.shape[1] != nrm["my"].shape[0]:
            msg = f"points must have shape (n, {nrm['my'].shape[0]}), got {p.shape}"
            raise InputError(msg)
        pn = (p - nrm["my"]) / nrm["sc"]
        if nrm["w"] is not None:
            pn = pn + interpolate_displacement(
                pn, nrm["centres"], nrm["w"], nrm["beta"], device=device
            )
        out = pn @ nrm["lin"].T + nrm["t"]
        return out * nrm["sc"] + nrm["mx"]

    def matches(
        self,
        target: np.ndarray,
        topk: int = 3,
        *,
        target_features: np.ndarray | None = None,
        source_features: np.ndarray | None = None,
        device: str = "cpu",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each source cell's ``topk`` most probable target cells under the final E-step.

        Returns ``(idx (M, topk), prob (M, topk))`` with :math:`P_{mn}` as in the E-step (without
        the outlier term), streamed by the engine: no M x N matrix.
        """
        from otbio.ot import PointCloud, kernel_topk, logsumexp

        nrm = self._norm
        sig = nrm["sigma"]
        zx = [(np.asarray(target, dtype=np.float64) - nrm["mx"]) / nrm["sc"] / sig]
        zy = [(self.registered - nrm["mx"]) / nrm["sc"] / sig]
        if nrm["fmu"] is not None and target_features is not None and source_features is not None:
            zx.append((np.asarray(target_features) - nrm["fmu"]) / nrm["fsc"] / nrm["h"])
            zy.append((np.asarray(source_features) - nrm["fmu"]) / nrm["fsc"] / nrm["h"])
        zx = np.ascontiguousarray(np.concatenate(zx, 1))
        zy = np.ascontiguousarray(np.concatenate(zy, 1))
        m = zy.shape[0]
        log_m = np.full(m, -np.log(m))
        lse = logsumexp(PointCloud(zx, zy), log_m, 2.0, device=device)
        idx, val = kernel_topk(PointCloud(zy, zx), log_m, -lse, 2.0, topk, device=device)
        return idx, np.exp(val)

    def summary(self) -> dict:
        """Plain-Python record for ``uns['registration']``."""
        return {
            "scale": float(self.scale),
            "rotation": np.asarray(self.rotation),
            "translation": np.asarray(self.translation),
            "sigma": float(self.sigma),
            "n_iter": int(self.n_iter),
            "converged": bool(self.converged),
            "trace": np.asarray(self.trace),
            "mode": self.mode,
            "n_landmarks": int(self.n_landmarks),
            "params": dict(self.params),
        }


_REGISTER_POINTS_DOC = """Register source points ``y`` (with features ``fy``) onto target ``x`` (features ``fx``).

    Variational EM of BCPD (Hirose, TPAMI 2021) whose match kernel also compares features
    (DET, Hirose and Rodola, arXiv:2603.21235):

    .. math::
        K_{mn} = \\exp\\Big(-\\frac{|x_n - y_m|^2}{2\\sigma^2}
                 - \\sum_d \\frac{(f^x_{nd} - f^y_{md})^2}{2 h_d^2}\\Big),\\quad
        h_d = e_d / \\sqrt{\\zeta},\\ \\zeta = \\eta D / D',

    :math:`P_{mn} = \\tfrac1M K_{mn} / (\\sum_{m'} \\tfrac1M K_{m'n} + c_n)`; the map
    :math:`T(y) = sR(y + v(y)) + t` with :math:`v = GW`, :math:`G` the Gaussian kernel of
    width ``beta`` on the source and stiffness ``lambda_``.

    Args:
        x: target coordinates (N, D), D = 2 or 3.
        y: source coordinates (M, D).
        fx, fy: features (N, D') and (M, D') on a shared basis, or None (pure BCPD).
        lambda_: stiffness; larger keeps the deformation smoother.
        beta: deformation kernel width in units of the normalised slice radius. With
            neither given, the pair is chosen by held-out likelihood among (2, 2),
            (1, 1.414), (2, 1); with one given, the other among ``_BETA_GRID`` (2, 1, 0.7)
            or ``_LAMBDA_GRID`` (0.5, 2, 8). The choice and the scores are in ``params``.
        omega: outlier probability (share of target cells no source cell explains).
            ``"auto"`` (default) chooses it from the data: the final fit runs with the EM
            estimate (the mixing weight updated every iteration, from 0.1, kept within
            [0.001, 0.5]) and with none, and keeps the one under which the target cells are
            more likely (``params['omega_choice']``), so partly overlapping slices need no
            setting; None always uses the EM estimate; a number fixes it.
        gamma: initial sigma relative to the RMS source-target distance; 0.1 when the slices
            are already roughly aligned.
        eta: weight of the expression term against the coordinates.
        mode: ``nonrigid`` (similarity + deformation), ``rigid`` (rotation + translation)
            or ``affine``.
        max_iter, min_iter, tol: stop when sigma changes by less than ``tol`` (relative)
            after at least ``min_iter`` iterations. Sigma is kept above 1e-4 of the
            target's median nearest-neighbour spacing (it would otherwise wobble near zero
            once the fit is exact; at 1/20, the floor before, sections whose spots have
            exact partners stopped short of their exact match).
        downsample: register at most this many landmarks per slice (feature-sensitive
            sampling) and carry the displacement to every cell by GP interpolation.
        rank: Nystrom rank of the deformation solve (default: exact up to 1500 landmarks,
            else 300).
        estep: ``dense`` (all pairs), ``local`` (each target's 16 nearest sources, KD-tree)
            or ``auto`` (local once fewer than about 4 sources lie within 5 sigma of a
            target and M N > 4e6).
        device: ``cpu`` or ``cuda`` for the dense E-step.
        n_starts: initial rotations tried (evenly spaced over 360 degrees; about the z axis
            in 3-D) by a short similarity fit each (rigid, unit scale, when the outlier
            share is estimated or given: a partial source would shrink); the three most
            likely distinct
            poses are then refitted non-rigidly (a strong warp can make a wrong turn the
            more likely similarity fit) and the most likely of those starts the full fit,
            or its plain start (same turn, unit scale, no shift) when a non-rigid fit from
            there is clearly more likely (``params['pose_check']``). 1 starts from the
            identity only.
        seed: seeds landmark sampling and Nystrom columns.
        band: with ``progress``, report on stderr every ``band`` iterations.
        progress: report the iteration, sigma and E-step kind on stderr (long runs).

    Returns:
        :class:`RegistrationResult`.

    Notes:
        If it does not converge: raise ``max_iter``; if it converges to a wrong pose, raise
        ``gamma`` (broader start) or ``eta`` (lean on expression); if the warp is too stiff,
        lower ``beta`` or ``lambda_``; if it folds, raise them.
    """


@doc_params(reference=_REGISTER_POINTS_DOC)
def register_points(
    x: np.ndarray,
    y: np.ndarray,
    fx: np.ndarray | None = None,
    fy: np.ndarray | None = None,
    *,
    lambda_: float | None = None,
    beta: float | None = None,
    omega: float | str | None = "auto",
    gamma: float = 1.0,
    eta: float = 1.0,
    mode: Mode = "nonrigid",
    max_iter: int = 500,
    min_iter: int = 30,
    tol: float = 1e-4,
    downsample: int | None = None,
    rank: int | None = None,
    estep: EStepMode = "auto",
    device: str = "cpu",
    n_starts: int = 8,
    seed: int = 0,
    band: int = 25,
    progress: bool = False,
    _stage: str = "registration",
) -> RegistrationResult:
    """{reference}"""
    args = dict(locals())  # the parameters by name, checked into one record
    x, y, opts = _check_inputs(args)
    prob = _normalise(x, y, fx, fy, opts)
    coarse = None
    if _coarse_to_fine(prob, opts):  # fit on landmarks, then refine at full resolution
        coarse = register_points(prob.x, prob.y, prob.fx, prob.fy, **_coarse_options(opts))
        log.info("coarse fit on %d landmarks done; refining at full resolution", _COARSE)
    run = _landmarks(prob, opts)
    if coarse is not None:
        _refinement_start(run, coarse, opts)
    elif opts.n_starts > 1:
        _pose_search(run, opts)  # rotation search, then the non-rigid pose check
    if run.omega_choose:
        _outlier_choice(run, opts)  # omega="auto": estimated or none; rigid re-search
    if opts.n_starts > 1 and coarse is None:
        _broad_restart(run, opts)
    solver = _smoothness(run, opts)  # lambda, beta by held-out likelihood; the solve
    fit = _final_em(run, solver, prob, opts)
    it, trace = _report(fit, coarse, prob, opts)  # ConvergenceWarning, the log line
    return RegistrationResult(**_result_fields(prob, run, fit, solver, it, trace, coarse, opts))
