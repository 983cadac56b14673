"""``otbio register``: elastic registration of spatial slices (BCPD + expression, DET)."""

from __future__ import annotations

import click

from otbio.cli import cli
from otbio.cli._util import (
    celltype_key_option,
    color_key_option,
    deprecated_aliases,
    max_iter_option,
    on_nonconvergence_option,
    output_option,
    plot_option,
    save_matches_option,
    tol_option,
    topk_option,
    use_rep_option,
)


@cli.command("register")
@deprecated_aliases({"--label-key": "--celltype-key", "--matches": "--save-matches"})
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@output_option(
    "Registered source slice (.h5ad) with obsm['spatial_registered'], obsm['displacement'] "
    "and uns['registration'] (other names with --key-added).",
    type=click.Path(dir_okay=False),
)
@click.option(
    "--key-added",
    default="spatial_registered",
    show_default=True,
    help="obsm key of the registered coordinates; any other name than the default also names the displacement (obsm[KEY_displacement]) and the record (uns[KEY]), so that one slice can hold several registrations.",
)
@click.option(
    "--spatial-key",
    default="spatial",
    show_default=True,
    help="obsm key of the coordinates (2-D or 3-D) in both slices; change it when your coordinates live elsewhere.",
)
@click.option(
    "--target-spatial-key",
    default=None,
    help="obsm key of the target's coordinates when it differs from --spatial-key, e.g. spatial_registered of a section already placed in a common frame (slice series).",
)
@use_rep_option(
    "obsm key of an expression representation shared by both slices (e.g. an integrated "
    "X_pca); without it otbio computes a joint PCA of the shared genes."
)
@click.option(
    "--n-pcs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Components of the joint PCA when --use-rep is not given; 10-50 works, fewer for noisy data.",
)
@click.option(
    "--no-expression",
    is_flag=True,
    help="Register on coordinates only (plain BCPD); use it when the slices share no reliable genes.",
)
@click.option(
    "--lambda",
    "lambda_",
    type=float,
    default=None,
    help="Stiffness of the deformation; raise it if the warp folds, lower it if it is too stiff. Default: chosen with --beta by held-out likelihood among the (lambda, beta) pairs (2, 2), (1, 1.414), (2, 1); among 0.5, 2, 8 when --beta is given.",
)
@click.option(
    "--beta",
    type=float,
    default=None,
    help="Width of the deformation kernel in units of the slice radius; lower (e.g. 1) for local warps. Default: chosen with --lambda by held-out likelihood among the (lambda, beta) pairs (2, 2), (1, 1.414), (2, 1); among 2, 1, 0.7 when --lambda is given (recorded in uns['registration']['params']).",
)
@click.option(
    "--omega",
    default="auto",
    show_default=True,
    help="Outlier probability (share of target cells with no source cell). 'auto' (default) estimates it by EM and keeps it only when the fit with it explains the target cells better than the fit without outliers (partial overlap handled without a setting); a number fixes it.",
)
@click.option(
    "--gamma",
    type=float,
    default=1.0,
    show_default=True,
    help="Initial match scale relative to the RMS distance between slices; 0.1 when they are already roughly aligned.",
)
@click.option(
    "--eta",
    type=float,
    default=1.0,
    show_default=True,
    help="Weight of expression against coordinates; raise it when shapes are ambiguous but expression is clear.",
)
@click.option(
    "--rigid-only",
    "rigid",
    is_flag=True,
    help="Fit only a rotation and translation (no scaling, no deformation).",
)
@click.option(
    "--affine",
    is_flag=True,
    help="Fit an affine map (no deformation).",
)
@click.option(
    "--n-starts",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Initial rotations tried (evenly spaced) by a short rigid fit each; the most likely starts the full fit. 1 trusts the slices' current orientation.",
)
@max_iter_option("Most EM iterations; raise it if the run stops before sigma settles.", default=500)
@tol_option(
    "Stop when sigma changes by less than this (relative), after at least 30 iterations.",
    default=1e-4,
)
@click.option(
    "--downsample",
    type=click.IntRange(min=3),
    default=None,
    help="Register at most this many feature-sensitive landmarks per slice and interpolate the displacement to every cell by a Gaussian process; use 3000-5000 for slices above ~10k cells (50k cells take about 35 s on 2 cores with 3000).",
)
@plot_option(
    "Write a before/after figure (both slices overlaid) to this file (.png, .pdf, .svg).",
    type=click.Path(dir_okay=False),
)
@color_key_option("obs column (in both slices) to colour the figure by; default colours by slice.")
@click.option(
    "--evaluate",
    is_flag=True,
    help="Print a table of quality measures (kNN preservation, fold-free fraction, distance correlation, and RMSE / label transfer when --true-key / --celltype-key are given).",
)
@click.option(
    "--true-key",
    default=None,
    help="obsm key in the source holding each cell's true position in the target frame (known warps); adds RMSE to --evaluate.",
)
@celltype_key_option(
    "obs column in both slices with cell types (or other cell labels); adds kNN "
    "label-transfer accuracy to --evaluate."
)
@save_matches_option(
    "Write each source cell's top target matches to this TSV, with p_target_from_source: "
    "the posterior probability that the target cell came from this source cell (it sums to at "
    "most 1 over the sources of one target, so one source's top matches can sum to more)."
)
@topk_option("Matches per source cell in --save-matches.")
@on_nonconvergence_option
def register_cmd(
    source: str,
    target: str,
    output: str,
    key_added: str,
    spatial_key: str,
    target_spatial_key: str | None,
    use_rep: str | None,
    n_pcs: int,
    no_expression: bool,
    lambda_: float | None,
    beta: float | None,
    omega: str,
    gamma: float,
    eta: float,
    rigid: bool,
    affine: bool,
    n_starts: int,
    max_iter: int,
    tol: float,
    downsample: int | None,
    plot_path: str | None,
    color_key: str | None,
    evaluate: bool,
    true_key: str | None,
    celltype_key: str | None,
    save_matches: str | None,
    topk: int,
    on_nonconvergence: str,
) -> None:
    """Register SOURCE onto TARGET with a smooth, non-folding map (BCPD with expression).

    Bayesian Coherent Point Drift (Hirose, TPAMI 2021) whose match kernel also compares
    expression (Domain Elastic Transform, Hirose and Rodola, arXiv:2603.21235). Writes the
    source slice with obsm['spatial_registered'], obsm['displacement'], uns['registration']
    (parameters in uns['registration']['params']).
    """
    import warnings
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from otbio import io
    from otbio._errors import ConvergenceWarning, InputError, OtbioError, not_found
    from otbio._settings import settings
    from otbio.register import register, registration_keys, score, spatial_coords

    if rigid and affine:
        raise click.UsageError("give at most one of --rigid-only and --affine")
    mode = "rigid" if rigid else "affine" if affine else "nonrigid"
    if omega.strip().lower() == "auto":
        omega_value = "auto"
    else:
        try:
            omega_value = float(omega)
        except ValueError:
            raise click.BadParameter(
                f"{omega!r} is not a number or 'auto'", param_hint="'--omega'"
            ) from None
    src = io.read_h5ad(source)
    tgt = io.read_h5ad(target)
    for key, what in ((color_key, "--color-key"), (celltype_key, "--celltype-key")):
        if key is not None:
            for ad_, name in ((src, "source"), (tgt, "target")):
                if key not in ad_.obs:
                    raise not_found("obs column", key, f"the {name} slice", ad_.obs.columns, what)
    truth = None
    if true_key is not None:
        if true_key not in src.obsm:
            raise not_found("obsm key", true_key, "the source slice", src.obsm.keys(), "--true-key")
        truth = io.check_points(np.asarray(src.obsm[true_key]), name="true positions")
    # the coordinates before registration (key_added may name spatial_key and replace them)
    y = spatial_coords(src, spatial_key, "source slice")
    x = spatial_coords(tgt, target_spatial_key or spatial_key, "target slice",
                       "target_spatial_key" if target_spatial_key else "spatial_key")  # fmt: skip
    uns_key = registration_keys(key_added)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = register(  # writes into src: the slice is not copied
            src,
            tgt,
            spatial_key=spatial_key,
            target_spatial_key=target_spatial_key,
            use_rep=use_rep,
            n_pcs=n_pcs,
            expression=not no_expression,
            lambda_=lambda_,
            beta=beta,
            omega=omega_value,
            gamma=gamma,
            eta=eta,
            mode=mode,
            max_iter=max_iter,
            tol=tol,
            downsample=downsample,
            n_starts=n_starts,
            device=settings.device,
            seed=settings.seed,
            key_added=key_added,
            progress=not settings.quiet,
        )
    if not res.converged:
        msg = (
            f"registration did not converge in {res.n_iter} iterations (sigma still changing "
            "by more than --tol); raise --max-iter or --tol"
        )
        if on_nonconvergence == "error":
            raise OtbioError(msg)
        warnings.warn(msg, ConvergenceWarning, stacklevel=1)  # one line, silent under --quiet
    if truth is not None and truth.shape != y.shape:
        msg = f"obsm['{true_key}'] has shape {truth.shape}, coordinates have {y.shape}"
        raise InputError(msg)
    table = None
    if evaluate:
        metrics = score(
            y,
            res.registered,
            x,
            true_positions=truth,
            source_labels=None if celltype_key is None else src.obs[celltype_key].to_numpy(),
            target_labels=None if celltype_key is None else tgt.obs[celltype_key].to_numpy(),
        )
        src.uns[uns_key]["metrics"] = metrics
        table = pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())})
    match_df = None
    if save_matches is not None:
        fx = fy = None
        if not no_expression:
            from otbio.register import joint_features

            if use_rep is not None:
                fy, fx = io.get_rep(src, use_rep=use_rep), io.get_rep(tgt, use_rep=use_rep)
            else:
                fy, fx = joint_features(src, tgt, n_pcs=n_pcs, seed=settings.seed)
        idx, prob = res.matches(x, topk, target_features=fx, source_features=fy)
        k = idx.shape[1]
        match_df = pd.DataFrame(
            {
                "source": np.repeat(np.asarray(src.obs_names), k),
                "rank": np.tile(np.arange(1, k + 1), len(y)),
                "target": np.asarray(tgt.obs_names)[idx.ravel()],
                "p_target_from_source": prob.ravel(),
            }
        )
    fig = None
    if plot_path is not None:
        from otbio.plot._register import registration_figure

        fig = registration_figure(
            y,
            res.registered,
            x,
            source_color=None if color_key is None else src.obs[color_key].to_numpy(),
            target_color=None if color_key is None else tgt.obs[color_key].to_numpy(),
            source_name=Path(source).stem,
            target_name=Path(target).stem,
            unit=str(src.uns.get("spatial_unit", "coordinate units")),
            metrics=src.uns[uns_key].get("metrics"),
            title=f"{Path(source).stem} onto {Path(target).stem}: {mode} registration, "
            f"{res.n_iter} iterations",
        )
    # everything computed: write outputs
    io.write_h5ad(src, output)
    if match_df is not None:
        io.write_table(match_df, save_matches)
    if fig is not None:
        io.save_figure(fig, plot_path)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    click.echo(
        f"registered {len(y)} cells onto {len(x)} ({mode}): {res.n_iter} iterations, "
        f"converged {res.converged}, final match scale sigma {res.sigma:.4g} (coordinate units), "
        f"scale {res.scale:.4f}"
    )
    if table is not None:
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
