"""``otbio transport``: the engine on two point clouds."""

from __future__ import annotations

import logging
import warnings

import click

from otbio._errors import InputError, OtbioError
from otbio.cli import cli
from otbio.cli._util import (
    check_epsilon,
    epsilon_option,
    epsilon_scaling_option,
    handle_convergence,
    max_iter_option,
    on_nonconvergence_option,
    relative_epsilon_option,
    save_matches_option,
    tol_option,
    topk_option,
    use_rep_option,
    weight_key_option,
)

log = logging.getLogger("otbio")


@cli.command("transport")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@use_rep_option("obsm key of the coordinates in .h5ad inputs (e.g. X_pca); X when absent.")
@weight_key_option("obs column (h5ad) or table column holding point weights; uniform when absent.")
@click.option(
    "--cost",
    type=click.Choice(["sqeuclidean", "l1", "hinge"]),
    default="sqeuclidean",
    show_default=True,
    help="Ground cost between points.",
)
@click.option(
    "--solver",
    type=click.Choice(["sinkhorn", "exact"]),
    default="sinkhorn",
    show_default=True,
    help="Entropic log-domain Sinkhorn (any size) or exact network simplex (POT; up to a few thousand points a side).",
)
@epsilon_option("Entropic regularisation. Smaller is sharper and slower; see --relative-epsilon.")
@relative_epsilon_option(
    "Multiply --epsilon by the mean or largest cost, so one value suits data of any scale; "
    "none takes it as absolute."
)
@click.option(
    "--reg-m",
    type=float,
    default=None,
    help="KL weight of the marginal penalties for unbalanced transport; balanced when absent. Use it when masses differ or outliers should stay unmatched.",
)
@tol_option("Stop when the L1 error of the marginals falls below it.")
@max_iter_option("Iteration limit, epsilon-scaling levels included.")
@epsilon_scaling_option(
    "Anneal epsilon from the mean cost by this factor per level when the target epsilon is "
    "not easy (it is tried first for 10 iterations); speeds up small epsilons. 0 turns it off."
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Precision of the kernels; float32 is about twice as fast but needs a moderate epsilon.",
)
@click.option(
    "--save-potentials",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the dual potentials f and g (.npz).",
)
@click.option(
    "--save-projection",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the barycentric projection of every source point onto the target (.npy, n x d).",
)
@topk_option("With --save-matches: how many target matches per source point.")
@save_matches_option(
    "Write each source point's top --topk target matches and plan values (TSV); points "
    "are named by obs names for .h5ad inputs, by row number (from 0) otherwise."
)
@on_nonconvergence_option
def transport(
    source,
    target,
    use_rep,
    weight_key,
    cost,
    solver,
    epsilon,
    relative_epsilon,
    reg_m,
    tol,
    max_iter,
    epsilon_scaling,
    dtype,
    save_potentials,
    save_projection,
    topk,
    save_matches,
    on_nonconvergence,
):
    """Optimal transport between two point clouds SOURCE and TARGET.

    Inputs are .h5ad (coordinates from --use-rep or X), .npy, or .csv/.tsv tables of numeric
    columns. Prints the transport cost and convergence (converged: the marginal error fell
    below --tol within --max-iter); optional outputs save the potentials, the barycentric
    projection and the top matches.
    """
    import numpy as np

    from otbio import io
    from otbio._settings import settings
    from otbio.ot import PointCloud, Sinkhorn, emd

    check_epsilon(epsilon)
    if reg_m is not None and not reg_m > 0:
        msg = f"--reg-m must be positive, got {reg_m}"
        raise InputError(msg)
    x, a = io.read_points(source, use_rep=use_rep, weight_key=weight_key)
    y, b = io.read_points(target, use_rep=use_rep, weight_key=weight_key)
    dt = np.float32 if dtype == "float32" else np.float64
    geom = PointCloud(x.astype(dt), y.astype(dt), cost)
    a = io.check_weights(a, x.shape[0], name=f"weights of {source}")
    b = io.check_weights(b, y.shape[0], name=f"weights of {target}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver == "exact":
            if x.shape[0] * y.shape[0] > 25_000_000:
                msg = "--solver exact needs a dense n x m matrix; this problem is too large, use --solver sinkhorn"
                raise InputError(msg)
            out = emd(x, y, a, b, cost=cost)
            n_iter, eps, err = 0, 0.0, float(np.abs(out.marginals()[0] - a).sum())
        else:
            solver_ = Sinkhorn(
                epsilon=epsilon,
                relative_epsilon=None if relative_epsilon == "none" else relative_epsilon,
                reg_m=reg_m,
                tol=tol,
                max_iter=max_iter,
                epsilon_scaling=epsilon_scaling or None,
                device=settings.device,
                progress=not settings.quiet,
            )
            out = solver_(geom, a, b)
            n_iter, eps, err = out.n_iter, out.epsilon, out.marginal_error
    if not all(np.isfinite(v) for v in (out.cost, eps, err)):
        msg = (
            f"the {solver} solver gave a non-finite result (cost {out.cost}, epsilon {eps}, "
            f"marginal error {err}); use --dtype float64, rescale the coordinates or raise "
            "--epsilon"
        )
        raise OtbioError(msg)
    handle_convergence(out.converged, "transport", on_nonconvergence)
    log.info("solver=%s cost=%s epsilon=%.4g", solver, cost, eps)
    # compute every output before writing any
    results = {}
    if save_projection:
        results["projection"] = out.barycentric_projection()
    if save_matches:
        if solver == "exact":
            p = out.plan()
            idx = np.argsort(-p, axis=1)[:, :topk]
            val = np.take_along_axis(p, idx, axis=1)
        else:
            idx, val = out.plan_topk(topk)
        import pandas as pd  # only here: pandas alone costs about 1 s of start-up

        n = idx.shape[0]
        src_names, tgt_names = io.point_names(source, n), io.point_names(target, y.shape[0])
        results["matches"] = pd.DataFrame(
            {
                "source": np.repeat(src_names, idx.shape[1]),
                "rank": np.tile(np.arange(1, idx.shape[1] + 1), n),
                "target": tgt_names[idx.ravel()],
                "plan": val.ravel(),
            }
        )
    if save_potentials:
        if solver == "exact":
            msg = "--save-potentials needs --solver sinkhorn"
            raise InputError(msg)

        io.write_npz(save_potentials, f=out.f, g=out.g, epsilon=out.epsilon)
    if "projection" in results:
        io.write_npy(results["projection"], save_projection)
    if "matches" in results:
        io.write_table(results["matches"], save_matches)
    click.echo(f"solver\t{solver}")
    click.echo(f"cost\t{out.cost:.10g}")
    click.echo(f"epsilon\t{eps:.12g}")
    click.echo(f"iterations\t{n_iter}")
    click.echo(f"converged\t{out.converged}")
    click.echo(f"marginal_error\t{err:.3e}")
