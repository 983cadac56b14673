"""``otbio register``: elastic registration of spatial slices (BCPD + expression, DET)."""

from __future__ import annotations

import click

from otbio._errors import InputError
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
    from otbio import io
    from otbio._settings import settings
    from otbio.register import registration_keys

    mode = _check_mode(rigid, affine)
    omega_value = _parse_omega(omega)
    src, tgt, truth = _read_slices(source, target, color_key, celltype_key, true_key)
    y, x = _coordinates(src, tgt, spatial_key, target_spatial_key)
    uns_key = registration_keys(key_added)[1]
    res, caught = _run_registration(  # writes into src: the slice is not copied
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
    _apply_convergence_policy(res, on_nonconvergence)
    if truth is not None and truth.shape != y.shape:
        msg = f"obsm['{true_key}'] has shape {truth.shape}, coordinates have {y.shape}"
        raise InputError(msg)
    table = _evaluate(src, tgt, y, x, res, truth, celltype_key, uns_key) if evaluate else None
    match_df = None
    if save_matches is not None:
        match_df = _matches_table(src, tgt, y, x, res, topk, no_expression, use_rep, n_pcs)
    fig = None
    if plot_path is not None:
        fig = _registration_plot(src, tgt, y, x, res, source, target, color_key, uns_key, mode)
    # everything computed: write outputs
    io.write_h5ad(src, output)
    if match_df is not None:
        io.write_table(match_df, save_matches)
    if fig is not None:
        io.save_figure(fig, plot_path)
    _report(caught, res, y, x, mode, table)


def _check_mode(rigid: bool, affine: bool) -> str:
    """The transformation model of --rigid-only / --affine: 'rigid', 'affine' or 'nonrigid'.

    Raises click.UsageError when both flags are given.
    """
    if rigid and affine:
        raise click.UsageError("give at most one of --rigid-only and --affine")
    return "rigid" if rigid else "affine" if affine else "nonrigid"


def _parse_omega(omega: str) -> float | str:
    """The value of --omega: 'auto' (any case, spaces ignored) or a number.

    Raises click.BadParameter for anything else.
    """
    if omega.strip().lower() == "auto":
        return "auto"
    try:
        return float(omega)
    except ValueError:
        raise click.BadParameter(
            f"{omega!r} is not a number or 'auto'", param_hint="'--omega'"
        ) from None


def _read_slices(
    source: str,
    target: str,
    color_key: str | None,
    celltype_key: str | None,
    true_key: str | None,
):
    """Read SOURCE and TARGET and check the obs columns and the obsm key they must hold.

    Takes the two paths, --color-key, --celltype-key and --true-key; returns the source and
    target AnnData and the source's true positions (checked points) or None. Raises
    InputError (naming the option) for a column or key that is not there.
    """
    import numpy as np

    from otbio import io
    from otbio._errors import not_found

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
    return src, tgt, truth


def _coordinates(src, tgt, spatial_key: str, target_spatial_key: str | None):
    """The coordinates before registration (--key-added may name --spatial-key and replace
    them): returns the source's (--spatial-key) and the target's (--target-spatial-key, else
    --spatial-key), each n x d; errors name the option that was used."""
    from otbio.register import spatial_coords

    y = spatial_coords(src, spatial_key, "source slice")
    x = spatial_coords(tgt, target_spatial_key or spatial_key, "target slice",
                       "target_spatial_key" if target_spatial_key else "spatial_key")  # fmt: skip
    return y, x


def _run_registration(src, tgt, **params):
    """Run :func:`otbio.register.register` (which writes its results into ``src``) with the
    warnings it raises held back.

    Takes the two slices and register()'s keyword arguments; returns the registration
    result and the warnings caught (convergence warnings are the command's to give; the
    others are shown again after the outputs, see :func:`_report`).
    """
    import warnings

    from otbio._errors import ConvergenceWarning
    from otbio.register import register

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = register(src, tgt, **params)
    return res, caught


def _apply_convergence_policy(res, on_nonconvergence: str) -> None:
    """--on-nonconvergence for the EM: nothing when ``res`` converged; else fail with exit 1
    (error) or one warning line at the end of the command (warn, silent under --quiet)."""
    import warnings

    from otbio._errors import ConvergenceWarning, OtbioError

    if res.converged:
        return
    msg = (
        f"registration did not converge in {res.n_iter} iterations (sigma still changing "
        "by more than --tol); raise --max-iter or --tol"
    )
    if on_nonconvergence == "error":
        raise OtbioError(msg)
    warnings.warn(msg, ConvergenceWarning, stacklevel=1)  # one line, silent under --quiet


def _evaluate(src, tgt, y, x, res, truth, celltype_key: str | None, uns_key: str):
    """The --evaluate table: quality measures of the registration (plus RMSE against
    --true-key and kNN label transfer of --celltype-key when given).

    Takes the slices, the coordinates before registration, the result, the true positions
    (or None), --celltype-key and the record's uns key; stores the measures in
    ``src.uns[uns_key]['metrics']`` and returns them as a two-column table (metric, value).
    """
    import pandas as pd

    from otbio.register import score

    metrics = score(
        y,
        res.registered,
        x,
        true_positions=truth,
        source_labels=None if celltype_key is None else src.obs[celltype_key].to_numpy(),
        target_labels=None if celltype_key is None else tgt.obs[celltype_key].to_numpy(),
    )
    src.uns[uns_key]["metrics"] = metrics
    return pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())})


def _matches_table(src, tgt, y, x, res, topk: int, no_expression: bool, use_rep, n_pcs: int):
    """The --save-matches table: each source cell's --topk target matches.

    Takes the slices, their coordinates, the result, --topk and the expression options
    (the matches compare expression as the registration did); returns a table with columns
    source, rank, target and p_target_from_source.
    """
    import numpy as np
    import pandas as pd

    from otbio import io
    from otbio._settings import settings

    fx = fy = None
    if not no_expression:
        from otbio.register import joint_features

        if use_rep is not None:
            fy, fx = io.get_rep(src, use_rep=use_rep), io.get_rep(tgt, use_rep=use_rep)
        else:
            fy, fx = joint_features(src, tgt, n_pcs=n_pcs, seed=settings.seed)
    idx, prob = res.matches(x, topk, target_features=fx, source_features=fy)
    k = idx.shape[1]
    return pd.DataFrame(
        {
            "source": np.repeat(np.asarray(src.obs_names), k),
            "rank": np.tile(np.arange(1, k + 1), len(y)),
            "target": np.asarray(tgt.obs_names)[idx.ravel()],
            "p_target_from_source": prob.ravel(),
        }
    )


def _registration_plot(
    src, tgt, y, x, res, source: str, target: str, color_key, uns_key: str, mode: str
):
    """The --plot figure: both slices overlaid before and after registration.

    Takes the slices, their coordinates, the result, the two paths (their stems name the
    slices), --color-key, the record's uns key (its metrics, when --evaluate ran) and the
    mode; returns the matplotlib figure (not yet written).
    """
    from pathlib import Path

    from otbio.plot._register import registration_figure

    return registration_figure(
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


def _report(caught, res, y, x, mode: str, table) -> None:
    """After the outputs are written: show again the warnings register() raised (not the
    convergence ones), then the summary line on stdout and the --evaluate table."""
    import warnings

    from otbio._errors import ConvergenceWarning

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
