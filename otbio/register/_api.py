"""AnnData-level registration: features, checks, the fit and the documented output keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from otbio._contract import annotate, clean_params
from otbio._errors import InputError, not_found
from otbio._progress import logger as log
from otbio.io import check_points, get_rep
from otbio.register._core import Mode, RegistrationResult, register_points

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["KEY_ADDED", "joint_features", "register", "registration_keys", "spatial_coords"]

KEY_ADDED = "spatial_registered"


def spatial_coords(
    adata: AnnData, spatial_key: str, what: str, param: str = "spatial_key"
) -> np.ndarray:
    """``obsm[spatial_key]`` as a finite (n, 2|3) float array, or one-line InputError."""
    if spatial_key not in adata.obsm:
        raise not_found("obsm key", spatial_key, f"the {what}", adata.obsm.keys(), param)
    pts = check_points(np.asarray(adata.obsm[spatial_key]), name=f"{what} coordinates")
    if pts.shape[0] < 3:
        msg = f"the {what} has {pts.shape[0]} cells; registration needs at least 3"
        raise InputError(msg)
    if pts.shape[1] not in (2, 3):
        msg = f"{what} coordinates must be 2-D or 3-D, got {pts.shape[1]} columns in obsm['{spatial_key}']"
        raise InputError(msg)
    return pts


def joint_features(
    source: AnnData, target: AnnData, *, n_pcs: int = 30, n_top_genes: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Joint PCA of both slices on their shared genes.

    Counts are normalised to 10,000 per cell and log1p-transformed together; the
    ``n_top_genes`` most variable shared genes enter a randomised PCA of ``n_pcs`` components.
    """
    import scipy.sparse as sp
    from sklearn.utils.extmath import randomized_svd

    shared = source.var_names.intersection(target.var_names)
    if len(shared) == 0:
        msg = "the slices share no genes (var_names); pass use_rep with a shared representation or expression=False"
        raise InputError(msg)
    xs = source[:, shared].X
    xt = target[:, shared].X
    try:  # any numeric X (float16 and integer counts too) as float64
        mat = sp.vstack(
            [sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else
             sp.csr_matrix(np.asarray(x, dtype=np.float64)) for x in (xs, xt)]
        ).tocsr()  # fmt: skip
    except (TypeError, ValueError) as exc:
        msg = f"expression X is not numeric ({exc}); pass use_rep or expression=False"
        raise InputError(msg) from None
    if mat.data.size and not np.isfinite(mat.data).all():
        msg = "expression counts contain NaN or infinite values; pass use_rep or expression=False"
        raise InputError(msg)
    if mat.data.size and (mat.data < 0).any():
        msg = "expression counts contain negative values; pass use_rep or expression=False"
        raise InputError(msg)
    tot = np.asarray(mat.sum(1)).ravel()
    tot[tot <= 0] = 1.0
    mat = sp.diags(1e4 / tot) @ mat
    mat.data = np.log1p(mat.data)
    mean = np.asarray(mat.mean(0)).ravel()
    var = np.asarray(mat.multiply(mat).mean(0)).ravel() - mean**2
    top = np.argsort(-var, kind="stable")[: min(n_top_genes, len(shared))]
    dense = mat[:, top].toarray() - mean[top]
    k = max(1, min(n_pcs, dense.shape[0] - 1, dense.shape[1]))
    u, s, _ = randomized_svd(dense, k, random_state=seed)
    pcs = u * s
    log.info("joint PCA: %d shared genes, %d variable, %d components", len(shared), len(top), k)
    return pcs[: source.n_obs], pcs[source.n_obs :]


def register(
    source: AnnData,
    target: AnnData,
    *,
    spatial_key: str = "spatial",
    target_spatial_key: str | None = None,
    use_rep: str | None = None,
    n_pcs: int = 30,
    expression: bool = True,
    lambda_: float | None = None,
    beta: float | None = None,
    omega: float | str | None = "auto",
    gamma: float = 1.0,
    eta: float = 1.0,
    mode: Mode = "nonrigid",
    max_iter: int = 500,
    tol: float = 1e-4,
    downsample: int | None = None,
    n_starts: int = 8,
    device: str = "cpu",
    seed: int = 0,
    key_added: str = KEY_ADDED,
    copy: bool = False,
    progress: bool = False,
) -> RegistrationResult | tuple[AnnData, RegistrationResult]:
    """Register the source slice onto the target slice (BCPD with an expression term, DET).

    The map :math:`T(y) = sR(y + v(y)) + t` is fitted by the variational EM of BCPD
    (Hirose, TPAMI 2021; ``ohirose/bcpd``, MIT) whose match kernel also compares expression
    (Domain Elastic Transform, Hirose and Rodola, arXiv:2603.21235); see
    :func:`otbio.register.register_points` for the model and every parameter.

    Args:
        source, target: slices with coordinates in ``obsm[spatial_key]``.
        target_spatial_key: ``obsm`` key of the target's coordinates when it differs (e.g.
            ``spatial_registered`` of a section already placed in a common frame, so that maps
            compose along a series); ``spatial_key`` by default.
        use_rep: ``obsm`` key of a representation shared by both slices; without it the
            counts are normalised, logged and reduced by a joint PCA of ``n_pcs`` components
            on the shared genes.
        expression: False registers on coordinates only (pure BCPD).
        n_starts: initial rotations tried by the rigid/similarity search (1: identity only).
        key_added: where the result goes (see :func:`registration_keys`): ``obsm[key_added]``
            the registered coordinates; with the default ``spatial_registered`` the
            displacement is ``obsm['displacement']`` and the record ``uns['registration']``,
            otherwise ``obsm[key_added + '_displacement']`` and ``uns[key_added]``.
        copy: False (default) writes into ``source`` and returns the result; True leaves
            ``source`` untouched and returns ``(new AnnData, result)``.
        progress: report progress on stderr (the command line passes ``not --quiet``).

    Writes into ``source`` (or its copy):

    - ``obsm[key_added]`` (n, D): registered coordinates of every source cell;
    - the displacement (n, D): registered minus original coordinates;
    - the record: scale, rotation, translation, sigma, n_iter, converged, trace, mode,
      n_landmarks and ``params`` (every parameter, with the choices made from the data).

    Returns:
        The :class:`RegistrationResult` (use ``result.transform`` for new cells); with
        ``copy=True``, ``(adata, result)``.
    """
    if not str(key_added).strip():
        msg = "key_added must name an obsm key"
        raise InputError(msg)
    y = spatial_coords(source, spatial_key, "source slice")
    x = spatial_coords(target, target_spatial_key or spatial_key, "target slice",
                       "target_spatial_key" if target_spatial_key else "spatial_key")  # fmt: skip
    if x.shape[1] != y.shape[1]:
        msg = f"source coordinates are {y.shape[1]}-D but target coordinates are {x.shape[1]}-D; pass matching spatial_key"
        raise InputError(msg)
    fx = fy = None
    if expression:
        if use_rep is not None:
            coords = (spatial_key, target_spatial_key or spatial_key, key_added)
            fy = get_rep(source, use_rep=use_rep, what="source slice", not_reps=coords)
            fx = get_rep(target, use_rep=use_rep, what="target slice", not_reps=coords)
            if fx.shape[1] != fy.shape[1]:
                msg = f"obsm['{use_rep}'] has {fy.shape[1]} columns in the source and {fx.shape[1]} in the target; use a shared representation"
                raise InputError(msg)
        else:
            fy, fx = joint_features(source, target, n_pcs=n_pcs, seed=seed)
    res = register_points(
        x,
        y,
        fx,
        fy,
        lambda_=lambda_,
        beta=beta,
        omega=omega,
        gamma=gamma,
        eta=eta,
        mode=mode,
        max_iter=max_iter,
        tol=tol,
        downsample=downsample,
        n_starts=n_starts,
        device=device,
        seed=seed,
        progress=progress,
    )
    out = annotate(source, copy)
    disp_key, uns_key = registration_keys(key_added)
    out.obsm[key_added] = res.registered
    out.obsm[disp_key] = res.displacement
    summ = res.summary()
    summ["params"].update(
        {
            "spatial_key": spatial_key,
            "target_spatial_key": target_spatial_key or spatial_key,
            "use_rep": use_rep,
            "n_pcs": n_pcs,
            "key_added": key_added,
        }
    )
    summ["params"] = clean_params(summ["params"])
    out.uns[uns_key] = summ
    log.info("added obsm['%s'], obsm['%s'], uns['%s']", key_added, disp_key, uns_key)
    return (out, res) if copy else res


def registration_keys(key_added: str = KEY_ADDED) -> tuple[str, str]:
    """``(displacement obsm key, uns key)`` that :func:`register` derives from ``key_added``:
    ``('displacement', 'registration')`` for the default ``spatial_registered`` (the names
    of earlier versions), ``(key_added + '_displacement', key_added)`` otherwise."""
    if key_added == KEY_ADDED:
        return "displacement", "registration"
    return f"{key_added}_displacement", key_added
