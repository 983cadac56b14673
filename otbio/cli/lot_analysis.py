"""LOT analysis commands: ``otbio classify`` and ``otbio generate``."""

from __future__ import annotations

from pathlib import Path

import click

from otbio._errors import InputError
from otbio._settings import settings
from otbio.cli import cli
from otbio.cli._util import (
    celltype_key_option,
    check_output_file,
    deprecated_aliases,
    groupby_option,
    output_option,
)


def _read(path: str):
    from otbio.io import read_h5ad

    return read_h5ad(path)


def _out_dir(path: str) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        msg = f"-o {path} exists and is not a directory; give a directory for the outputs"
        raise InputError(msg)
    return p


def _model_alias(value: str | None) -> str:
    """Old ``classify --model``: a classifier name, or (with --predict) a model file."""
    from otbio.lot._classify import MODELS

    return "--classifier" if value in MODELS else "--load-model"


@cli.command("classify")
@deprecated_aliases(
    {
        "--label": "--groupby",
        "--model": _model_alias,
        "--folds": "--n-splits",
        "--repeats": "--n-repeats",
        "--top": "--n-top",
    }
)
@click.argument("embedding", required=False)
@groupby_option(
    "Sample-level obs column to predict (e.g. condition); it must be constant within each sample."
)
@click.option(
    "--classifier",
    type=click.Choice(["centroid", "logistic-l2", "logistic-l1", "svm", "lda"]),
    default="centroid",
    show_default=True,
    help="The linear classifier: centroid (nearest shrunken centroids: keeps the few LOT "
    "features that move, e.g. one cell type's reference points), logistic-l1 (sparse weights), "
    "logistic-l2, svm (linear SVM) or lda (shrinkage LDA).",
)
@click.option(
    "--C",
    "C",
    type=float,
    default=None,
    help="Inverse regularisation strength (logistic, svm), between 1e-6 and 1e6. Default: "
    "chosen by nested cross-validation (inner 3-fold CV on each training fold) from 0.25-4.",
)
@click.option(
    "--n-features",
    type=click.IntRange(min=1),
    default=None,
    help="LOT features kept by --classifier centroid. Default: chosen by nested cross-validation "
    "from 5-500.",
)
@click.option(
    "--scale",
    type=click.Choice(["mass", "standard", "none"]),
    default="mass",
    show_default=True,
    help="Scaling of the LOT features before fitting: mass (one global factor: keeps the "
    "sqrt(reference weight) tangent-space metric, so big populations count by their mass), "
    "standard (each feature to unit sd) or none. Weights are reported in the embedding's units "
    "either way.",
)
@click.option(
    "--n-permutations",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Permutation test of the CV balanced accuracy: labels permuted, the same folds (first "
    "repeat), regularisation chosen again; p-value in metrics.tsv and the summary. 0 skips it; "
    "the smallest p-value is 1/(n+1).",
)
@click.option(
    "--n-splits",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Folds of the stratified sample-level cross-validation; every class needs at least "
    "this many samples. Lower it for small cohorts.",
)
@click.option(
    "--n-repeats",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Repeats of the K-fold split (reshuffled, seeded by --seed). More repeats give steadier "
    "metrics at a linear cost in time.",
)
@click.option(
    "--cells",
    default=None,
    help="The cells .h5ad the embedding was made from. Needed with --celltype-key for the "
    "cell-type composition baseline and to name reference points by the cells they transport to.",
)
@celltype_key_option(
    "obs column of cell types in --cells (e.g. bulk_labels), for the composition baseline "
    "and the cell-type names of the reference points."
)
@click.option(
    "--n-top",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Top features (and genes) listed per reference point in reference_points.tsv.",
)
@click.option(
    "--save-model",
    default=None,
    help="Also write the model fitted on all samples with its reference (joblib) to this file, "
    "to score new samples later with --predict.",
)
@click.option(
    "--predict",
    default=None,
    help="Score the samples of this embedding with the model file given by --load-model "
    "instead of training; they must be embedded against the model's reference.",
)
@click.option(
    "--load-model",
    default=None,
    help="With --predict: the model file written by --save-model (joblib; load only files you "
    "trust).",
)
@output_option(
    "Output directory (created). Training writes metrics.tsv, folds.tsv, confusion.tsv, "
    "cv_predictions.tsv, reference_points.tsv, features.tsv, weights.npy and classify.png; "
    "--predict writes predictions.tsv (score:<class>: unitless decision value, > 0 favours "
    "the class; probability:<class> where the model gives one).",
    metavar="DIR",
)
def classify_cmd(
    embedding,
    groupby,
    classifier,
    C,
    n_features,
    scale,
    n_permutations,
    n_splits,
    n_repeats,
    cells,
    celltype_key,
    n_top,
    save_model,
    predict,
    load_model,
    output,
) -> None:
    """Classify samples from their LOT embedding and show which cells and features matter.

    Example: otbio classify emb.h5ad --groupby condition --cells cells.h5ad
    --celltype-key bulk_labels --save-model m.joblib -o classify/

    Scoring new samples: otbio classify --predict new_emb.h5ad --load-model m.joblib -o pred/
    """
    from otbio._interruptible import interruptible
    from otbio.io import write_npy, write_table
    from otbio.lot._classify import classify
    from otbio.lot._classify import load_model as load_fn
    from otbio.lot._classify import predict as predict_fn
    from otbio.lot._classify import save_model as save_fn

    out = _out_dir(output)
    if predict is not None:
        if embedding is not None:
            msg = "give either EMBEDDING (to train) or --predict EMB (to score), not both"
            raise InputError(msg)
        if load_model is None:
            msg = "--predict needs --load-model MODEL.joblib (a file written by --save-model)"
            raise InputError(msg)
        bundle = load_fn(load_model)
        emb = _read(predict)
        df = predict_fn(emb, bundle, name=predict)
        lab = groupby or bundle["label"]
        msg_acc = ""
        if lab in emb.obs:
            acc = float((df["predicted"].to_numpy() == emb.obs[lab].astype(str).to_numpy()).mean())
            df["label"] = emb.obs[lab].astype(str).to_numpy()
            msg_acc = f"; accuracy against '{lab}' {acc:.3f}"
        write_table(df, out / "predictions.tsv")
        click.echo(f"scored {len(df)} samples{msg_acc} -> {out / 'predictions.tsv'}", err=True)
        return
    if embedding is None:
        msg = (
            "give the EMBEDDING .h5ad to train on (or --predict EMB --load-model M.joblib to score)"
        )
        raise InputError(msg)
    if load_model is not None:
        msg = "--load-model is for scoring with --predict; training fits a new --classifier"
        raise InputError(msg)
    if groupby is None:
        msg = "pass --groupby (the sample-level obs column to predict)"
        raise InputError(msg)
    emb = _read(embedding)
    cell_ad = _read(cells) if cells is not None else None
    res = interruptible(  # the fits run in native code: SIGTERM / SIGINT still end them
        classify,
        emb,
        groupby=groupby,
        classifier=classifier,
        C=C,
        n_features=n_features,
        scale=scale,
        n_splits=n_splits,
        n_repeats=n_repeats,
        n_permutations=n_permutations,
        seed=settings.seed,
        cells=cell_ad,
        celltype_key=celltype_key,
        n_top=n_top,
        jobs=settings.n_jobs,
        names=[Path(cells).name.removesuffix(".h5ad")] if cells else None,
        progress=not settings.quiet,
    )
    fig = _figure(res)
    # everything computed: write
    write_table(res.metrics, out / "metrics.tsv")
    write_table(res.folds, out / "folds.tsv")
    write_table(res.confusion, out / "confusion.tsv", index=True)
    write_table(res.cv_predictions, out / "cv_predictions.tsv")
    write_table(res.points, out / "reference_points.tsv")
    write_table(res.features, out / "features.tsv")
    write_npy(res.weights, out / "weights.npy")
    from otbio.io import save_figure

    save_figure(fig, out / "classify.png")
    if save_model:
        save_fn(res, save_model)
    click.echo(summary_line(res, out), err=True)


def summary_line(res, out) -> str:
    """The one-line summary: accuracy with its interval and p-value, baselines, choices."""
    m = res.metrics.set_index("features")
    info = res.info
    lot = m.loc["lot"]
    acc = (
        f"lot {lot['balanced_accuracy']:.3f} [{lot['balanced_accuracy_ci_low']:.3f}-"
        f"{lot['balanced_accuracy_ci_high']:.3f} over repeats]"
    )
    if info["n_permutations"] > 0:
        acc += f" p={info['p_value']:.3g} ({info['n_permutations']} permutations)"
    base = ", ".join(f"{f} {m.loc[f, 'balanced_accuracy']:.3f}" for f in m.index if f != "lot")
    pname = info["param_name"]
    val = info[pname]
    choice = f"{pname}={val:g}" + (" by nested CV" if info["param_mode"] == "nested-cv" else "")
    if info["model"] == "lda":
        choice = "shrinkage by Ledoit-Wolf"
    top = ""
    if "celltype" in res.points and len(res.points):
        # read-back: the cell type the 5 heaviest reference points transport to
        head = res.points.head(5)
        votes = head.groupby(head["celltype"].astype(str))["weight_share"].sum()
        top = f"; top reference points: {votes.idxmax()} ({votes.max():.0%} of the weight)"
    return (
        f"{info['model']} ({choice}, {info['scale']} scaling): CV balanced accuracy {acc}"
        + (f", {base}" if base else "")
        + f" ({info['n_splits']}-fold x {info['n_repeats']}){top} -> {out}/"
    )


def _figure(res):
    import numpy as np

    from otbio.plot._lot_analysis import classifier_figure

    w = res.weights[0] if res.weights.shape[0] == 1 else np.sqrt((res.weights**2).sum(0))
    feats = res.features
    kind = "gene" if (feats["kind"] == "gene").any() else "dim"
    f = feats[feats["kind"] == kind]
    labels = None
    if "celltype" in res.points:
        cls = res.classes[-1]
        col = f"celltype:{cls}" if f"celltype:{cls}" in res.points else "celltype"
        labels = np.empty(len(res.points), dtype=object)
        labels[res.points["ref_point"].to_numpy()] = res.points[col].to_numpy()
    title = f"LOT {res.info['model']} on '{res.info['label']}'" + (
        f" (arrows towards '{res.classes[1]}')" if len(res.classes) == 2 else ""
    )
    return classifier_figure(
        res.info["reference"],
        res.info["reference_weights"],
        w,
        f["feature"].tolist(),
        f["importance"].to_numpy(),
        point_labels=labels,
        title=title,
        feature_kind="PCA-loading gene" if kind == "gene" else "feature",
        norm=_norm_by_point(res),
        towards=res.classes[1] if len(res.classes) == 2 else None,
    )


def _norm_by_point(res):
    """The points table's weight_norm, indexed by reference point (one scale for both)."""
    import numpy as np

    pts = res.points
    out = np.zeros(len(pts))
    out[pts["ref_point"].to_numpy()] = pts["weight_norm"].to_numpy()
    return out


def _parse_weights(values) -> list[dict[str, float]] | None:
    if not values:
        return None
    out = []
    for spec in values:
        d: dict[str, float] = {}
        for part in str(spec).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                msg = f"--weights expects SAMPLE=WEIGHT,SAMPLE=WEIGHT, got '{part.strip()}'"
                raise InputError(msg)
            s, val = part.rsplit("=", 1)
            try:
                d[s.strip()] = d.get(s.strip(), 0.0) + float(val)
            except ValueError:
                msg = f"--weights: '{val}' is not a number"
                raise InputError(msg) from None
        out.append(d)
    return out


@cli.command("generate")
@deprecated_aliases({"--cells": "--n-cells", "--n": "--n-samples", "--check": "--save-check"})
@click.argument("embedding")
@groupby_option(
    "Sample-level obs column of the groups (e.g. condition); synthetic samples mix samples "
    "of one group (or interpolate between two with --between)."
)
@click.option(
    "--n-samples",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Synthetic samples per group (Dirichlet mode).",
)
@click.option(
    "--alpha",
    type=float,
    default=1.0,
    show_default=True,
    help="Dirichlet concentration of the mixing weights. Large values give samples close to the "
    "group barycenter; small values (< 1) give samples close to single real samples.",
)
@click.option(
    "--groups",
    default=None,
    help="Comma-separated groups to generate from (default: every group of --groupby).",
)
@click.option(
    "--between",
    nargs=2,
    default=None,
    help="Two groups A B: generate --steps samples on the straight path from A's LOT barycenter "
    "to B's.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Points on the --between path, both ends included.",
)
@click.option(
    "--weights",
    multiple=True,
    help="Explicit mixing weights 'donor01=0.3,donor02=0.7' (non-negative, summing to one); "
    "repeat the option for several synthetic samples. Replaces the Dirichlet mode.",
)
@click.option(
    "--n-cells",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Cells drawn per synthetic sample (with replacement by the reference mass); 0 keeps the "
    "k reference points with their masses in obs['weight'].",
)
@click.option(
    "--to-genes",
    is_flag=True,
    help="Write X in gene space through the PCA loadings of the reference (X_pca @ PCs.T, "
    "centred; marked as reconstructed); the PCA coordinates stay in obsm.",
)
@click.option(
    "--save-check",
    default=None,
    help="Also write a TSV with each synthetic sample's LOT distance to the nearest real sample "
    "and to its group barycenter, after embedding its cells again.",
)
@output_option("Output .h5ad of the synthetic cells.")
def generate_cmd(
    embedding,
    groupby,
    n_samples,
    alpha,
    groups,
    between,
    steps,
    weights,
    n_cells,
    to_genes,
    save_check,
    output,
) -> None:
    """Generate synthetic samples as mixtures of real ones in LOT space, as cells.

    Example: otbio generate emb.h5ad --groupby condition --n-samples 10 --n-cells 2000
    -o synth.h5ad --save-check synth_check.tsv
    """
    from otbio.io import write_h5ad, write_table
    from otbio.lot._generate import check_synthetic, generate

    check_output_file(output)
    emb = _read(embedding)
    synth = generate(
        emb,
        groupby=groupby,
        n_samples=n_samples,
        alpha=alpha,
        groups=[g.strip() for g in groups.split(",") if g.strip()] if groups else None,
        between=tuple(between) if between else None,
        steps=steps,
        weights=_parse_weights(weights),
        n_cells=n_cells,
        to_genes=to_genes,
        seed=settings.seed,
    )
    table = (
        check_synthetic(emb, synth, reembed=n_cells > 0, jobs=settings.n_jobs)
        if save_check
        else None
    )
    write_h5ad(synth, output)
    n_syn = len(synth.uns["lot_generate"]["synthetic"])
    msg = f"{n_syn} synthetic sample{'' if n_syn == 1 else 's'}, {synth.n_obs} cells -> {output}"
    if to_genes:
        msg += f" ({synth.n_vars} genes reconstructed from PCA loadings)"
    if table is not None:
        write_table(table, save_check)
        col = "reembedded_inside" if "reembedded_inside" in table else "inside"
        msg += f"; {int(table[col].sum())}/{len(table)} inside their group's spread -> {save_check}"
    click.echo(msg, err=True)
