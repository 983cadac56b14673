"""LOT classification of a change of cell state: otbio classify vs pyLOT-style LOT, composition
and pseudobulk, on cohorts whose conditions differ inside one cell type only.

Cohorts (``otbio.lot.state_shift_cohort``): donors draw real PBMCs of
``scanpy.datasets.pbmc68k_reduced`` with a donor-specific cell-type mix (one Dirichlet law for
both conditions, so composition carries no signal); in the ``shifted`` donors every cell of one
type is translated by ``shift`` within-type standard deviations along that type's first
principal axis (a change of state, e.g. activation). Sweeps: shift strength x shifted type x
seed at ``--n-donors`` donors of ``--n-cells`` cells, then cells per donor and donors at one
shift (``--size-shift``).

Methods, all scored on the same repeated stratified folds (``--n-splits`` x ``--n-repeats``,
seeded), balanced accuracy of the pooled out-of-fold predictions, mean over repeats:
- ``otbio``: ``otbio.lot.reference`` (k-means, ``--ref-size`` points) + ``embed`` (exact) +
  ``classify`` with its defaults (nearest shrunken centroids on LOT features in their
  tangent-space (mass) scaling, features kept chosen by nested CV).
- Alternatives measured to choose the defaults, on the same folds: ``otbio_l2_C1`` (the
  previous default: logistic-l2, C=1, unscaled LOT features, same embedding), ``otbio_l1``
  (logistic-l1, standardised features, nested C), ``otbio_standard`` (the default classifier
  on standardised features instead of the mass scaling), ``otbio_stratified`` (the default
  classifier on a reference stratified by cell type, ``reference(celltype_key=..., stratify=True)``).
- ``pylot``: a plain pyLOT-style pipeline: sklearn KMeans reference of the same size on the
  pooled cells, POT ``ot.emd`` per donor, the map T(z) flattened, StandardScaler +
  LogisticRegression (C=1).
- ``composition``: cell-type shares; ``pseudobulk``: mean PCA coordinates of each donor (mean
  expression of the 765 genes projected on the PCs; a linear image of it), both with
  StandardScaler + LogisticRegression, and ``pseudobulk_centroid`` with otbio's classifier.
  ``best_baseline`` is the best of pylot, composition and both pseudobulks on each cohort.

Read-back: the cell type of the 5 reference points with the largest weights (``classify``'s
reference_points.tsv: cell type of the cells each point transports to; votes weighted by
weight share);
``readback_ok`` when it is the shifted type.

Run: ``python benchmarks/lot_classify.py`` (about 10 minutes on 2 shared cores); ``--append`` writes
the tables to their section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
warnings.filterwarnings("ignore")


def baselines_cv(feats, y, splits, n_splits, n_repeats, seed):
    """StandardScaler + LogisticRegression (C=1) on each feature set, on the given folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from otbio.lot._classify import _bacc

    out = {}
    for name, x in feats.items():
        oof = np.empty((n_repeats, y.size), dtype=object)
        for f, (tr, te) in enumerate(splits):
            m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
            m.fit(x[tr], y[tr])
            oof[f // n_splits, te] = m.predict(x[te])
        out[name] = float(np.mean([_bacc(y, oof[r]) for r in range(n_repeats)]))
    return out


def readback_type(points: pd.DataFrame, n: int = 5) -> str:
    """The cell type of the top ``n`` reference points, votes weighted by weight share."""
    top = points.head(n)
    if not len(top):
        return ""
    votes = top.groupby(top["celltype"].astype(str))["weight_share"].sum()
    return str(votes.idxmax())


def pylot_features(points, k, seed):
    """pyLOT-style: KMeans reference on pooled cells, POT exact OT, raw map T(z)."""
    import ot
    from sklearn.cluster import KMeans

    pooled = np.concatenate(points)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(pooled)
    z = km.cluster_centers_
    r = np.bincount(km.labels_, minlength=k) / pooled.shape[0]
    keep = r > 0
    z, r = z[keep], r[keep] / r[keep].sum()
    out = []
    for x in points:
        w = np.full(x.shape[0], 1.0 / x.shape[0])
        plan = ot.emd(r, w, ot.dist(z, x))
        out.append((plan @ x / r[:, None]).ravel())
    return np.stack(out)


def one_cohort(src, *, shift, celltype, n_donors, n_cells, seed, args):
    import otbio.lot as L
    from otbio.lot._classify import cross_validate
    from otbio.lot._ops import embedding_arrays

    a = L.state_shift_cohort(
        n_samples=n_donors,
        n_cells=n_cells,
        shifted_type=celltype,
        shift=shift,
        seed=seed,
        source=src,
    )
    t0 = time.perf_counter()
    ref = L.reference(a, sample_key="donor", use_rep="X_pca", size=args.ref_size, seed=seed)
    emb = L.embed(a, ref, sample_key="donor", jobs=args.jobs, progress=False)
    res = L.classify(
        emb,
        groupby="condition",
        n_splits=args.n_splits,
        n_repeats=args.n_repeats,
        seed=seed,
        cells=a,
        celltype_key="bulk_labels",
        n_permutations=args.n_permutations,
        jobs=args.jobs,
    )
    t_otbio = time.perf_counter() - t0
    m = res.metrics.set_index("features")
    readback = readback_type(res.points)
    ids = [str(i) for i in emb.obs_names]
    y = emb.obs["condition"].astype(str).to_numpy()
    from sklearn.model_selection import RepeatedStratifiedKFold

    splits = list(
        RepeatedStratifiedKFold(
            n_splits=args.n_splits, n_repeats=args.n_repeats, random_state=seed
        ).split(np.zeros(y.size), y)
    )
    v, _, _ = embedding_arrays(emb)
    variants = {}
    if not args.no_variants:
        for name, model, scale, C in (
            ("otbio_l2_C1", "logistic-l2", "none", 1.0),
            ("otbio_l1", "logistic-l1", "standard", None),
            ("otbio_standard", "centroid", "standard", None),
        ):
            cvo = cross_validate(
                {"lot": (v, scale)},
                y,
                model=model,
                C=C,
                n_splits=args.n_splits,
                n_repeats=args.n_repeats,
                seed=seed,
            )
            variants[name] = float(cvo.repeats["balanced_accuracy"].mean())
        # the default classifier on a reference stratified by cell type
        ref_s = L.reference(
            a,
            sample_key="donor",
            use_rep="X_pca",
            size=args.ref_size,
            seed=seed,
            celltype_key="bulk_labels",
            stratify=True,
        )
        emb_s = L.embed(a, ref_s, sample_key="donor", jobs=args.jobs, progress=False)
        v_s, _, _ = embedding_arrays(emb_s)
        cvo = cross_validate(
            {"lot": (v_s, "mass")},
            y,
            n_splits=args.n_splits,
            n_repeats=args.n_repeats,
            seed=seed,
        )
        variants["otbio_stratified"] = float(cvo.repeats["balanced_accuracy"].mean())
    donor = a.obs["donor"].astype(str).to_numpy()
    x = np.asarray(a.obsm["X_pca"], dtype=np.float64)
    pts = [x[donor == i] for i in ids]
    lab = a.obs["bulk_labels"].astype(str).to_numpy()
    types = sorted(set(lab))
    comp = np.array([[np.mean(lab[donor == i] == t) for t in types] for i in ids])
    mean = np.array([p.mean(0) for p in pts])
    t0 = time.perf_counter()
    vp = pylot_features(pts, args.ref_size, seed)
    base = baselines_cv(
        {"pylot": vp, "composition": comp, "pseudobulk": mean},
        y,
        splits,
        args.n_splits,
        args.n_repeats,
        seed,
    )
    t_pylot = time.perf_counter() - t0
    row = {
        "shift": shift,
        "celltype": celltype,
        "n_donors": n_donors,
        "n_cells": n_cells,
        "seed": seed,
        "otbio": float(m.loc["lot", "balanced_accuracy"]),
        "otbio_ci_low": float(m.loc["lot", "balanced_accuracy_ci_low"]),
        "otbio_ci_high": float(m.loc["lot", "balanced_accuracy_ci_high"]),
        "otbio_p": float(m.loc["lot", "p_value"]),
        **variants,
        **base,
        "pseudobulk_centroid": float(m.loc["mean_rep", "balanced_accuracy"]),
        "readback": readback,
        "readback_ok": readback == celltype,
        "t_otbio": t_otbio,
        "t_pylot": t_pylot,
    }
    row["best_baseline"] = max(
        row["pylot"], row["composition"], row["pseudobulk"], row["pseudobulk_centroid"]
    )
    row["margin"] = row["otbio"] - row["best_baseline"]
    row["margin_pylot"] = row["otbio"] - row["pylot"]
    return row


def summarise(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    cols = [
        c
        for c in (
            "otbio",
            "otbio_standard",
            "otbio_stratified",
            "otbio_l1",
            "otbio_l2_C1",
            "pylot",
            "pseudobulk",
            "pseudobulk_centroid",
            "composition",
            "best_baseline",
            "margin",
            "margin_pylot",
        )
        if c in df
    ]
    g = df.groupby(by, sort=True)
    med = g[cols].median()
    worst = g[["margin", "margin_pylot"]].min().add_suffix("_worst")
    rb = g["readback_ok"].mean().rename("readback_ok")
    n = g.size().rename("cohorts")
    return pd.concat([n, med, worst, rb], axis=1).reset_index()


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            val = r[c]
            cells.append(f"{val:.3f}" if isinstance(val, float) else str(val))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shifts", default="0,1,2,3")
    ap.add_argument("--celltypes", default="CD14+ Monocyte,CD19+ B,CD4+/CD25 T Reg")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n-donors", type=int, default=24)
    ap.add_argument("--n-cells", type=int, default=120)
    ap.add_argument("--size-shift", type=float, default=1.0, help="shift of the size sweep")
    ap.add_argument("--size-celltypes", default="CD14+ Monocyte", help="types of the size sweep")
    ap.add_argument(
        "--sizes",
        default="100x16,500x24,2000x24,120x60",
        help="cells x donors of the size sweep (empty: none)",
    )
    ap.add_argument("--ref-size", type=int, default=64)
    ap.add_argument("--n-splits", type=int, default=5)
    ap.add_argument("--n-repeats", type=int, default=3)
    ap.add_argument("--n-permutations", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-variants", action="store_true", help="skip the otbio variants")
    ap.add_argument("--save", default=None, help="write every cohort's row to this TSV")
    ap.add_argument("--append", action="store_true", help="rewrite its section of RESULTS.md")
    ap.add_argument(
        "--from-tsv", default=None, help="summarise the rows saved by a previous --save run"
    )
    args = ap.parse_args()

    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    t_start = time.perf_counter()
    rows = []
    shifts = [float(s) for s in args.shifts.split(",") if s.strip()]
    types = [t.strip() for t in args.celltypes.split(",") if t.strip()]
    for shift in shifts if not args.from_tsv else []:
        for ct in types:
            for seed in range(args.seeds):
                rows.append(
                    one_cohort(
                        src,
                        shift=shift,
                        celltype=ct,
                        n_donors=args.n_donors,
                        n_cells=args.n_cells,
                        seed=seed,
                        args=args,
                    )
                )
                r = rows[-1]
                print(
                    f"shift {shift:g} {ct} seed {seed}: otbio {r['otbio']:.3f} pylot "
                    f"{r['pylot']:.3f} pseudobulk {r['pseudobulk']:.3f} composition "
                    f"{r['composition']:.3f} read-back {r['readback']}",
                    file=sys.stderr,
                    flush=True,
                )
    sweep = pd.DataFrame(rows)
    size_rows = []
    for spec in [s for s in args.sizes.split(",") if s.strip()] if not args.from_tsv else []:
        n_cells, n_donors = (int(t) for t in spec.split("x"))
        for ct in [t.strip() for t in args.size_celltypes.split(",") if t.strip()]:
            for seed in range(args.seeds):
                size_rows.append(
                    one_cohort(
                        src,
                        shift=args.size_shift,
                        celltype=ct,
                        n_donors=n_donors,
                        n_cells=n_cells,
                        seed=seed,
                        args=args,
                    )
                )
                r = size_rows[-1]
                print(
                    f"{n_cells} cells x {n_donors} donors {ct} seed {seed}: otbio "
                    f"{r['otbio']:.3f} pylot {r['pylot']:.3f} pseudobulk {r['pseudobulk']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
    sizes = pd.DataFrame(size_rows)
    wall = time.perf_counter() - t_start
    if args.from_tsv:  # re-summarise the rows a previous run saved (--save)
        saved = pd.read_csv(args.from_tsv, sep="\t")
        if "part" not in saved:
            main = (saved["n_cells"] == args.n_cells) & (saved["n_donors"] == args.n_donors)
            saved["part"] = np.where(main, "shift", "size")
        sweep = saved[saved["part"] == "shift"].reset_index(drop=True)
        sizes = saved[saved["part"] == "size"].reset_index(drop=True)
        wall = float("nan")
    else:
        sweep["part"] = "shift"
        if len(sizes):
            sizes["part"] = "size"
    if args.save and not args.from_tsv:
        pd.concat([sweep, sizes]).to_csv(args.save, sep="\t", index=False)
    t1 = summarise(sweep, ["shift"])
    t2 = summarise(sweep, ["celltype"])
    t3 = summarise(sizes, ["n_cells", "n_donors"]) if len(sizes) else None
    near = sweep[(sweep["pylot"] >= 0.7) & (sweep["pylot"] <= 0.9)]
    good = pd.concat([sweep, sizes])
    good = good[good["otbio"] >= 0.8]
    notes = [
        f"cohorts where pyLOT-style is in [0.7, 0.9]: {len(near)}; otbio minus best baseline "
        f"median {near['margin'].median():+.3f}, worst {near['margin'].min():+.3f}; minus "
        f"pyLOT-style median {near['margin_pylot'].median():+.3f}, worst "
        f"{near['margin_pylot'].min():+.3f}"
        if len(near)
        else "no cohort with pyLOT-style in [0.7, 0.9]",
        f"read-back names the shifted type in {good['readback_ok'].mean():.0%} of the "
        f"{len(good)} cohorts where otbio reaches 0.8",
        f"median time per cohort: otbio (reference + embed + classify) "
        f"{pd.concat([sweep, sizes])['t_otbio'].median():.1f} s, pyLOT-style "
        f"{pd.concat([sweep, sizes])['t_pylot'].median():.1f} s"
        + (f"; whole run {wall:.0f} s" if np.isfinite(wall) else ""),
    ]
    text = [
        "By shift strength (median over cell types and seeds; worst = minimum margin):",
        "",
        to_markdown(t1),
        "",
        "By shifted cell type:",
        "",
        to_markdown(t2),
    ]
    if t3 is not None:
        text += [
            "",
            f"By cells per donor x donors (shift {args.size_shift:g}):",
            "",
            to_markdown(t3),
        ]
    text += [""] + [f"- {n}" for n in notes]
    body = "\n".join(text)
    print(body)
    if args.append:
        cmd = "python benchmarks/lot_classify.py " + " ".join(sys.argv[1:])
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        head = (
            f"\n## LOT classification of a change of cell state ({time.strftime('%Y-%m-%d')})\n\n"
            f"Command: `{cmd.strip()}`  \nMachine: {cpus} CPUs visible, Python "
            f"{platform.python_version()}, shared with other sessions (load average at the "
            f"end {load:.1f}). Balanced accuracy, {args.n_splits}-fold x {args.n_repeats} "
            f"repeats, the same folds for every method; {args.n_donors} donors x "
            f"{args.n_cells} cells unless stated; reference size {args.ref_size}.\n\n"
        )
        from _results import write_section

        write_section("lot_classify", head + body)


if __name__ == "__main__":
    main()
