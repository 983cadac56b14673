"""LOT commands: ``otbio reference``, ``embed``, ``concat``, ``barycenter``, ``distances``."""

from __future__ import annotations

from pathlib import Path

import click

from otbio._errors import InputError, not_found
from otbio._settings import settings
from otbio.cli import cli
from otbio.cli._util import (
    celltype_key_option,
    check_epsilon,
    check_output_file,
    color_key_option,
    deprecated_aliases,
    epsilon_option,
    epsilon_scaling_option,
    exact_cells_option,
    groupby_option,
    handle_convergence,
    max_iter_option,
    on_nonconvergence_option,
    output_option,
    plot_option,
    relative_epsilon_option,
    sample_key_option,
    tol_option,
    use_rep_option,
    vars_option,
    weight_key_option,
)


def _split(values) -> list[str] | None:
    """Flatten repeated and comma-separated option values."""
    if not values:
        return None
    if isinstance(values, str):
        values = [values]
    out = [s.strip() for v in values for s in str(v).split(",") if s.strip()]
    return out or None


def _read_all(paths) -> tuple[list, list[str]]:
    from otbio.io import read_h5ad

    if not paths:
        msg = "give at least one .h5ad file"
        raise InputError(msg)
    adatas = [read_h5ad(p) for p in paths]
    names = [Path(p).name.removesuffix(".h5ad") for p in paths]
    if len(set(names)) < len(names):  # a/s0.h5ad and b/s0.h5ad: name them by their paths
        names = [str(p).removesuffix(".h5ad") for p in paths]
    return adatas, names


def _say(msg: str) -> None:
    """One summary line on stderr, hidden by --quiet."""
    if not settings.quiet:
        click.echo(msg, err=True)


@cli.command("reference")
@deprecated_aliases({"--label-key": "--celltype-key"})
@click.argument("cells", nargs=-1, required=True)
@sample_key_option
@use_rep_option(
    "obsm key of the cell coordinates, e.g. X_pca (30-50 PCs work well). Use --vars instead "
    "to embed chosen markers of X."
)
@vars_option
@click.option(
    "--method",
    type=click.Choice(["kmeans", "barycenter", "sample", "gaussian"]),
    default="kmeans",
    show_default=True,
    help="How the reference is made: k-means centres of pooled cells (fast, good default); "
    "a free-support Wasserstein barycenter (slower, best LOT approximation); a random subsample; "
    "or draws from a Gaussian fitted to the pooled cells.",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Number of reference points k. Larger k approximates W2 better; the embedding has k*d columns.",
)
@click.option(
    "--cells-per-sample",
    type=click.IntRange(min=1),
    default=None,
    help="Cells drawn from every sample into the pool (so that large samples do not dominate). "
    "Default: the smallest sample, capped at 50,000 pooled cells.",
)
@weight_key_option()
@celltype_key_option(
    "Optional obs column of cell types (e.g. bulk_labels) whose majority label near each "
    "reference point is stored in obs, to name reference points in later analyses."
)
@click.option(
    "--stratify",
    is_flag=True,
    help="Stratify the reference by --celltype-key (kmeans, barycenter): k-means within every "
    "cell type, points in proportion to its cells but at least 4, --size in all, so that a small "
    "population keeps points of its own. Off by default: the pooled k-means classified better "
    "on the state-shift benchmark.",
)
@max_iter_option(
    "Iterations of the barycenter fixed point (--method barycenter only); raise it if a "
    "warning says it did not converge (uns['lot_reference']['converged'] is then False).",
    default=20,
)
@on_nonconvergence_option
@output_option("Output reference .h5ad.")
def reference_cmd(
    cells,
    sample_key,
    use_rep,
    vars_,
    method,
    size,
    cells_per_sample,
    weight_key,
    celltype_key,
    stratify,
    max_iter,
    on_nonconvergence,
    output,
) -> None:
    """Build a LOT reference measure from the cells of many samples.

    Example: otbio reference cells.h5ad --sample-key donor --use-rep X_pca --method kmeans
    --size 512 -o ref.h5ad
    """
    from otbio.io import write_h5ad
    from otbio.lot import reference

    check_output_file(output)
    adatas, names = _read_all(cells)
    ref = reference(
        adatas,
        sample_key=sample_key,
        use_rep=use_rep,
        vars=_split(vars_),
        method=method,
        size=size,
        cells_per_sample=cells_per_sample,
        weight_key=weight_key,
        celltype_key=celltype_key,
        stratify=stratify,
        seed=settings.seed,
        max_iter=max_iter,
        jobs=settings.n_jobs,
        names=names,
    )
    handle_convergence(
        bool(ref.uns["lot_reference"]["converged"]),
        f"the barycenter reference (--max-iter {max_iter})",
        on_nonconvergence,
        advice="raise --max-iter",
    )
    write_h5ad(ref, output)
    p = ref.uns["lot_reference"]
    _say(
        f"reference {p['reference_id']}: {ref.n_obs} point{'' if ref.n_obs == 1 else 's'} "
        f"in {ref.n_vars} dimensions "
        f"from {p['n_samples']} samples"
        + (f", stratified by {celltype_key}" if p["params"].get("stratify") else "")
        + f" -> {output}",
    )


@cli.command("embed")
@deprecated_aliases({"--color": "--color-key"})
@click.argument("cells", nargs=-1, required=True)
@sample_key_option
@click.option(
    "--reference",
    "reference_path",
    required=True,
    help="Reference .h5ad from `otbio reference`; embed every cohort and shard against the same file.",
)
@use_rep_option("obsm key of the cell coordinates. Default: the one the reference was made from.")
@vars_option
@weight_key_option()
@click.option(
    "--solver",
    type=click.Choice(["exact", "sinkhorn"]),
    default="exact",
    show_default=True,
    help="exact: optimal plan by a sparse network simplex with column generation (the LOT "
    "of the papers; equal to ot.emd, 4x faster at 5,000 cells; samples run in parallel "
    "with --jobs). "
    "sinkhorn: entropic OT, smoother but blurred maps (15-20% from exact at --epsilon "
    "0.005-0.01 on the bundled cohort) and not faster on a CPU; use it for smooth maps or "
    "with --device cuda.",
)
@epsilon_option(
    "Entropic regularisation for --solver sinkhorn, relative to the mean cost (see "
    "--relative-epsilon). Smaller is closer to exact but needs more iterations."
)
@relative_epsilon_option(
    "Multiply --epsilon by each sample's mean (mean) or largest (max) squared distance "
    "to the reference, so one value suits data of any scale; none takes it as absolute."
)
@tol_option("Sinkhorn stops when the L1 marginal error falls below it; raise it for speed.")
@max_iter_option(
    "Sinkhorn iteration limit per sample (epsilon-scaling levels included); raise it if "
    "samples do not converge (obs['lot_converged'] False: the marginal error stayed above --tol)."
)
@epsilon_scaling_option(
    "When --epsilon is not easy (tried first for 10 iterations), Sinkhorn restarts at "
    "the mean cost and multiplies epsilon by this factor down to --epsilon; 0 turns it off."
)
@click.option(
    "--samples",
    multiple=True,
    help="Embed only these sample ids (comma-separated or repeated), to shard a cohort; "
    "join the shards with `otbio concat`.",
)
@click.option(
    "--raw-map",
    is_flag=True,
    help="Write the map T(z) itself (pyLOT convention) instead of (T(z) - z) * sqrt(r).",
)
@plot_option("Also write a PCA figure of the samples' embeddings (PNG/PDF/SVG by file name).")
@color_key_option(
    "obs column that colours the --plot figure (e.g. condition). Default: the first "
    "sample-level column."
)
@on_nonconvergence_option
@output_option("Output embedding .h5ad (one row per sample).")
def embed_cmd(
    cells,
    sample_key,
    reference_path,
    use_rep,
    vars_,
    weight_key,
    solver,
    epsilon,
    relative_epsilon,
    tol,
    max_iter,
    epsilon_scaling,
    samples,
    raw_map,
    plot_path,
    color_key,
    on_nonconvergence,
    output,
) -> None:
    """Embed samples of cells into LOT space against a reference (one row per sample).

    Example: otbio embed cells.h5ad --sample-key donor --reference ref.h5ad -o emb.h5ad
    """
    from otbio.io import read_h5ad, save_figure, write_h5ad
    from otbio.lot import embed

    check_output_file(output)
    if solver == "sinkhorn":
        check_epsilon(epsilon)
        if not tol > 0:
            msg = f"--tol must be positive, got {tol}"
            raise InputError(msg)
    if samples and _split(samples) is None:
        msg = f"--samples {' '.join(repr(v) for v in samples)} names no sample; give sample ids"
        raise InputError(msg)
    ref = read_h5ad(reference_path)
    adatas, names = _read_all(cells)
    emb = embed(
        adatas,
        ref,
        sample_key=sample_key,
        use_rep=use_rep,
        vars=_split(vars_),
        weight_key=weight_key,
        samples=_split(samples),
        solver=solver,
        epsilon=epsilon,
        relative_epsilon=None if relative_epsilon == "none" else relative_epsilon,
        tol=tol,
        max_iter=max_iter,
        epsilon_scaling=epsilon_scaling or None,
        raw_map=raw_map,
        jobs=settings.n_jobs,
        device=settings.device,
        names=names,
        progress=not settings.quiet,
    )
    n_bad = int((~emb.obs["lot_converged"]).sum())
    handle_convergence(n_bad == 0, f"{n_bad} of {emb.n_obs} samples", on_nonconvergence)
    fig = None
    if plot_path is not None:
        fig = _embedding_plot(emb, color_key)
    write_h5ad(emb, output)
    if fig is not None:
        save_figure(fig, plot_path)
    _say(f"embedded {emb.n_obs} samples ({emb.n_vars} columns, {solver}) -> {output}")


def _embedding_plot(emb, color):
    from otbio.lot import embedding_arrays
    from otbio.plot._lot import embedding_pca, lot_embedding_figure

    skip = {"n_cells", "lot_converged", "lot_n_iter", "lot_cost"}
    if color is not None and color not in emb.obs:
        raise not_found("obs column", color, "the embedding", emb.obs.columns, "--color-key")
    if color is None:
        cands = [c for c in emb.obs.columns if c not in skip]
        color = cands[0] if cands else None
    v, _, _ = embedding_arrays(emb)
    coords, ratio = embedding_pca(v)
    labels = None if color is None else emb.obs[color].astype(str).to_numpy()
    return lot_embedding_figure(
        coords, labels=labels, names=list(emb.obs_names), ratio=ratio, color_by=color or ""
    )


@cli.command("concat")
@click.argument("embeddings", nargs=-1, required=True)
@output_option("Output embedding .h5ad with every shard's rows.")
def concat_cmd(embeddings, output) -> None:
    """Join embedding shards made against the same reference (refuses mixed references).

    Example: otbio concat emb_*.h5ad -o emb.h5ad
    """
    from otbio.io import write_h5ad
    from otbio.lot import concat

    check_output_file(output)
    embs, names = _read_all(embeddings)
    out = concat(embs, names=names)
    write_h5ad(out, output)
    _say(f"joined {len(embs)} shards, {out.n_obs} samples -> {output}")


@cli.command("barycenter")
@deprecated_aliases({"--weights": "--weight-key"})
@click.argument("embedding")
@groupby_option(
    "obs column of the embedding that defines the groups (e.g. condition).", required=True
)
@weight_key_option(
    "Optional obs column of the embedding with non-negative sample weights within each "
    "group; equal weights without it."
)
@click.option(
    "--n-cells",
    type=click.IntRange(min=1),
    default=None,
    help="Resample each barycenter to this many cells (seeded) instead of writing the "
    "weighted reference support.",
)
@click.option(
    "--exact",
    is_flag=True,
    help="Also compute the exact free-support Wasserstein barycenter of each group (needs "
    "--cells; slow for big groups) to see how close the LOT barycenter is.",
)
@exact_cells_option
@max_iter_option(
    "Iterations of the exact barycenter fixed point; raise it for tighter results.", default=20
)
@output_option("Output .h5ad of barycenter cells with obs['group'].")
def barycenter_cmd(embedding, groupby, weight_key, n_cells, exact, cells, max_iter, output) -> None:
    """LOT barycenters of groups of samples (mean embedding), mapped back to cells.

    Example: otbio barycenter emb.h5ad --groupby condition -o bary.h5ad
    """
    from otbio.io import read_h5ad, write_h5ad
    from otbio.lot import barycenter

    check_output_file(output)
    emb = read_h5ad(embedding)
    cell_ads, names = _read_all(cells) if cells else (None, None)
    out = barycenter(
        emb,
        groupby=groupby,
        weight_key=weight_key,
        n_cells=n_cells,
        exact=exact,
        cells=cell_ads,
        seed=settings.seed,
        max_iter=max_iter,
        jobs=settings.n_jobs,
        names=names,
    )
    write_h5ad(out, output)
    groups = out.uns["lot_barycenter"]["groups"]
    _say(f"barycenters of {len(groups)} groups ({', '.join(groups)}) -> {output}")


@cli.command("distances")
@click.argument("embedding")
@click.option(
    "--exact",
    is_flag=True,
    help="Add exact W2 between every pair of samples (needs --cells; quadratic in the number "
    "of samples) to show the LOT approximation error.",
)
@exact_cells_option
@output_option("Output table (.tsv, or .csv by name), one row per pair.")
def distances_cmd(embedding, exact, cells, output) -> None:
    """Pairwise LOT distances between samples (optionally with exact W2).

    Example: otbio distances emb.h5ad -o dist.tsv
    """
    from otbio.io import read_h5ad, write_table
    from otbio.lot import distances

    check_output_file(output)
    emb = read_h5ad(embedding)
    cell_ads, names = _read_all(cells) if cells else (None, None)
    df = distances(
        emb,
        exact=exact,
        cells=cell_ads,
        jobs=settings.n_jobs,
        names=names,
        progress=not settings.quiet,
    )
    write_table(df, output)
    _say(f"{len(df)} pairs of {emb.n_obs} samples -> {output}")
