"""Linear classifiers on LOT embeddings, cross-validated at sample level and read back.

A linear score on LOT vectors :math:`s(v) = \\langle w, v \\rangle + b` with
:math:`v_k = (T(z_k) - z_k)\\sqrt{r_k}` decomposes over the reference points:
:math:`s(v) = b + \\sum_k \\sqrt{r_k}\\, \\langle w_k, T(z_k) - z_k \\rangle`, so the weight
block :math:`w_k \\in \\mathbb{R}^d` says how moving reference point :math:`z_k` in cell space
changes the score: its norm shows **where** in cell space the classes differ, its components
**which** features (markers, PCs, or genes through the PCA loadings) move.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from otbio._errors import InputError
from otbio.lot._format import EMB_KEY, collect_samples, reference_id
from otbio.lot._ops import embedding_arrays

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

__all__ = [
    "MODELS",
    "ClassifyResult",
    "classify",
    "load_model",
    "predict",
    "sample_labels",
    "save_model",
    "transport_labels",
]

log = logging.getLogger("otbio")
Model = Literal["logistic-l2", "logistic-l1", "svm", "lda"]
MODELS: tuple[str, ...] = ("logistic-l2", "logistic-l1", "svm", "lda")
MODEL_FORMAT = "otbio-lot-classifier/1"


def make_model(name: str, *, C: float = 1.0, seed: int = 0, n_classes: int = 2) -> Any:
    """A fresh scikit-learn linear classifier (all expose ``coef_`` and ``decision_function``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    # liblinear is fast on few samples x many features but binary only; multinomial otherwise
    if name in ("logistic-l2", "logistic-l1"):
        l1 = 1.0 if name == "logistic-l1" else 0.0
        m = LogisticRegression(C=C, l1_ratio=l1, solver="liblinear", random_state=seed)
        return m if n_classes <= 2 else OneVsRest(m)
    if name == "svm":
        return LinearSVC(C=C, max_iter=20000, random_state=seed)
    if name == "lda":
        return SpanLDA()
    msg = f"unknown model '{name}'; choose one of {', '.join(MODELS)}"
    raise InputError(msg)


class OneVsRest:
    """One binary classifier per class (class vs rest); ``coef_`` is (n_classes, p)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def fit(self, x: np.ndarray, y: np.ndarray) -> OneVsRest:
        from sklearn.base import clone

        self.classes_ = np.unique(y)
        self.estimators_ = [clone(self.base).fit(x, y == c) for c in self.classes_]
        self.coef_ = np.vstack([m.coef_.reshape(1, -1) for m in self.estimators_])
        self.intercept_ = np.array([float(np.ravel(m.intercept_)[0]) for m in self.estimators_])
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(1)]


class SpanLDA:
    """Shrinkage LDA (Ledoit-Wolf) in the span of the training samples.

    With k*d features and tens of samples a full (p, p) covariance is neither needed nor
    affordable: the samples are projected on their principal axes (at most n - 1), LDA with
    ``shrinkage='auto'`` is fitted there, and ``coef_`` is mapped back to the features.
    """

    def fit(self, x: np.ndarray, y: np.ndarray) -> SpanLDA:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(0)
        # principal axes of the samples through the small Gram matrix (n x n)
        evals, evecs = np.linalg.eigh((x - mean) @ (x - mean).T)
        keep = evals > 1e-12 * max(float(evals.max()), 1e-300)
        sv = np.sqrt(evals[keep])
        comps = (evecs[:, keep].T @ (x - mean)) / sv[:, None]  # (m, p), orthonormal rows
        self.lda_ = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        self.lda_.fit((x - mean) @ comps.T, y)
        self.classes_ = self.lda_.classes_
        self.coef_ = self.lda_.coef_ @ comps
        self.intercept_ = self.lda_.intercept_ - self.coef_ @ mean
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        s = np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_
        return s[:, 0] if s.shape[1] == 1 else s

    def predict(self, x: np.ndarray) -> np.ndarray:
        s = self.decision_function(x)
        if s.ndim == 1:
            return self.classes_[(s > 0).astype(int)]
        return self.classes_[s.argmax(1)]


@dataclass
class CellsBySample:
    """The cells of the embedded samples, in the embedding's row order."""

    points: list[np.ndarray]
    weights: list[np.ndarray]
    celltypes: list[np.ndarray] | None


def sample_cells(
    emb: AnnData,
    cells: AnnData | Sequence[AnnData],
    *,
    celltype_key: str | None = None,
    groupby: str | None = None,
    names: Sequence[str] | None = None,
) -> CellsBySample:
    """Cells of every sample of ``emb`` (same representation and weights as the embedding).

    Checks that ``groupby`` (when found in the cells) is constant within every sample.
    """
    u = emb.uns[EMB_KEY]
    sample_key = u.get("sample_key") or None
    adatas = list(cells) if isinstance(cells, (list, tuple)) else [cells]
    names = list(names) if names is not None else [f"cells {i}" for i in range(len(adatas))]
    ids = [str(i) for i in emb.obs_names]
    s = collect_samples(
        adatas,
        sample_key=sample_key,
        use_rep=u.get("use_rep") or None,
        vars=list(u.get("vars", [])) or None,
        weight_key=u.get("weight_key") or None,
        samples=ids,
        names=names,
    )
    rows_of: dict[str, tuple[int, np.ndarray]] = {}
    for a, (ad_, name) in enumerate(zip(adatas, names)):
        if sample_key is None:
            rows_of[str(name)] = (a, np.arange(ad_.n_obs))
            continue
        col = ad_.obs[sample_key].astype(str).to_numpy()
        for sid in dict.fromkeys(col):
            rows_of[sid] = (a, np.flatnonzero(col == sid))  # same order as collect_samples
    if groupby is not None:
        for sid in ids:
            a, rows = rows_of[sid]
            if groupby in adatas[a].obs:
                vals = adatas[a].obs[groupby].iloc[rows].astype(str).unique()
                if len(vals) > 1:
                    msg = (
                        f"groupby '{groupby}' varies within sample '{sid}' ({', '.join(vals[:3])}); "
                        "classify needs one value per sample: groupby must be a sample-level column"
                    )
                    raise InputError(msg)
    types = None
    if celltype_key is not None:
        types = []
        for sid in ids:
            a, rows = rows_of[sid]
            if celltype_key not in adatas[a].obs:
                msg = f"obs column '{celltype_key}' not found in the cells (celltype_key)"
                raise InputError(msg)
            types.append(adatas[a].obs[celltype_key].iloc[rows].astype(str).to_numpy())
    return CellsBySample(s.points, s.weights, types)


def sample_labels(emb: AnnData, groupby: str, *, n_splits: int | None = None) -> np.ndarray:
    """The sample-level labels ``emb.obs[groupby]`` as str, checked for classification."""
    if groupby not in emb.obs:
        msg = (
            f"groupby '{groupby}' is not a sample-level obs column of the embedding (it is missing, "
            "or it varies within a sample and so was not kept); groupby must be a column "
            "that is constant within each sample"
        )
        raise InputError(msg)
    col = emb.obs[groupby]
    if col.isna().any():
        msg = f"groupby '{groupby}' is missing for some samples; drop them or fill the column"
        raise InputError(msg)
    y = col.astype(str).to_numpy()
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        msg = f"groupby '{groupby}' has only one class ({classes[0]}); classify needs two or more"
        raise InputError(msg)
    if n_splits is not None and counts.min() < n_splits:
        c = classes[counts.argmin()]
        msg = (
            f"class '{c}' of '{groupby}' has {counts.min()} samples, fewer than n_splits "
            f"= {n_splits}; lower n_splits or add samples"
        )
        raise InputError(msg)
    return y


def transport_labels(
    z: np.ndarray,
    r: np.ndarray,
    cells: CellsBySample,
    types: Sequence[str],
    *,
    jobs: int = 1,
) -> np.ndarray:
    """Share of each cell type in the cells that each reference point transports to.

    Recomputes the exact plan (``ot.emd``) from the reference to every sample and returns
    ``S`` of shape (n_samples, k, n_types) with
    :math:`S_{ikt} = \\frac{1}{r_k} \\sum_{j: \\text{type}(x_j) = t} P^{(i)}_{kj}`.
    """
    import otbio.ot as O

    types = list(types)
    index = {t: i for i, t in enumerate(types)}

    def one(i: int) -> np.ndarray:
        lab = cells.celltypes[i]  # type: ignore[index]
        onehot = np.zeros((lab.size, len(types)))
        onehot[np.arange(lab.size), [index[t] for t in lab]] = 1.0
        out = O.emd(z, cells.points[i], r, cells.weights[i])
        mass = out.plan_dot(onehot)
        return mass / np.maximum(mass.sum(1, keepdims=True), 1e-300)

    return np.stack(O.map_batch(one, list(range(len(cells.points))), jobs=jobs, threads=True))


def _scores(model: Any, x: np.ndarray) -> np.ndarray:
    s = np.asarray(model.decision_function(x), dtype=np.float64)
    return s[:, None] if s.ndim == 1 else s


def _auc(y: np.ndarray, s: np.ndarray, classes: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if classes.size == 2:
        return float(roc_auc_score(y == classes[1], s[:, 0]))
    aucs = [
        roc_auc_score(y == c, s[:, i]) for i, c in enumerate(classes) if 0 < (y == c).sum() < y.size
    ]
    return float(np.mean(aucs)) if aucs else float("nan")


def _fit(name: str, x: np.ndarray, y: np.ndarray, *, C: float, seed: int) -> Any:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    m = make_model(name, C=C, seed=seed, n_classes=np.unique(y).size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(x, y)
    return m


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = train.mean(0)
    sd = train.std(0)
    sd[sd <= 1e-12] = 1.0
    return (train - mu) / sd, (test - mu) / sd


@dataclass
class ClassifyResult:
    """Everything :func:`classify` computes; see the Returns section there."""

    metrics: pd.DataFrame
    folds: pd.DataFrame
    confusion: pd.DataFrame
    cv_predictions: pd.DataFrame
    points: pd.DataFrame
    features: pd.DataFrame
    weights: np.ndarray
    model: Any
    classes: list[str]
    info: dict = field(default_factory=dict)


def cross_validate(
    features: dict[str, tuple[np.ndarray, bool]],
    y: np.ndarray,
    *,
    model: str = "logistic-l2",
    C: float = 1.0,
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Repeated stratified K-fold at sample level, the same folds for every feature set.

    ``features`` maps a name to ``(X (n_samples, p), standardise)``. Returns the per-fold
    table (repeat, fold, features, accuracy, balanced_accuracy, roc_auc) and the out-of-fold
    predictions of the first feature set, shape (n_repeats, n_samples).
    """
    import pandas as pd
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    classes = np.unique(y)
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    first = next(iter(features))
    pred = np.empty((n_repeats, y.size), dtype=object)
    rows = []
    for f, (train, test) in enumerate(cv.split(np.zeros(y.size), y)):
        rep, fold = divmod(f, n_splits)
        for name, (x, scale) in features.items():
            xtr, xte = _standardise(x[train], x[test]) if scale else (x[train], x[test])
            m = _fit(model, xtr, y[train], C=C, seed=seed)
            p = m.predict(xte)
            if name == first:
                pred[rep, test] = p
            rows.append(
                {
                    "repeat": rep,
                    "fold": fold,
                    "features": name,
                    "accuracy": accuracy_score(y[test], p),
                    "balanced_accuracy": balanced_accuracy_score(y[test], p),
                    "roc_auc": _auc(y[test], _scores(m, xte), classes),
                }
            )
    return pd.DataFrame(rows), pred


def _fmt(names: Sequence[str], values: np.ndarray, n: int) -> str:
    order = np.argsort(-np.abs(values))[:n]
    return ",".join(f"{names[j]}:{values[j]:+.3g}" for j in order)


def classify(
    emb: AnnData,
    *,
    groupby: str,
    classifier: Model = "logistic-l2",
    C: float = 1.0,
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
    cells: AnnData | Sequence[AnnData] | None = None,
    celltype_key: str | None = None,
    n_top: int = 5,
    jobs: int = 1,
    names: Sequence[str] | None = None,
) -> ClassifyResult:
    """Cross-validate a linear classifier on LOT vectors and read its weights back.

    Parameters
    ----------
    emb
        An embedding from :func:`otbio.lot.embed` (one row per sample).
    groupby
        Sample-level obs column to predict (constant within each sample).
    classifier
        ``logistic-l2``, ``logistic-l1`` (sparse weights), ``svm`` (linear SVM) or ``lda``
        (shrinkage LDA). LOT vectors are used unscaled, so the weights are in cell-space
        units; the baselines are standardised.
    C
        Inverse regularisation strength (logistic, svm).
    n_splits, n_repeats, seed
        Repeated stratified K-fold over samples (never over cells), seeded.
    cells, celltype_key
        The cells the embedding was made from and an obs column of cell types: add the
        cell-type composition baseline and name every reference point by the cell types it
        transports to (exact plans recomputed with ``ot.emd``).

    Returns
    -------
    :class:`ClassifyResult` with ``metrics`` (one row per feature set: ``lot``,
    ``mean_rep`` (the mean cell of each sample in the representation, i.e. mean expression
    projected on the PCs; exact from the embedding), ``composition`` (cell-type shares, with
    cells): mean and sd over folds of accuracy, balanced accuracy, ROC-AUC (binary, or macro
    one-vs-rest)); ``folds`` (per fold); ``confusion`` (LOT, summed over repeats: every
    sample counted once per repeat); ``cv_predictions`` (per sample); ``points`` (reference
    points ranked by weight norm: position, top features/genes, cell types); ``features``
    (per dimension and, with PCA loadings, per gene: norm of the weights); ``weights``
    (n_rows, k, d) with n_rows = 1 for two classes (towards ``classes[1]``); ``model``
    fitted on all samples.
    """
    import pandas as pd

    v, z, r = embedding_arrays(emb)
    u = emb.uns[EMB_KEY]
    k, d = z.shape
    if not (C > 0 and np.isfinite(C)):
        msg = f"C must be positive, got {C}"
        raise InputError(msg)
    if n_splits < 2:
        msg = f"n_splits must be >= 2, got {n_splits}"
        raise InputError(msg)
    make_model(classifier)  # name check before any work
    cs = None
    if cells is not None:
        cs = sample_cells(emb, cells, celltype_key=celltype_key, groupby=groupby, names=names)
    elif celltype_key is not None:
        log.warning(
            "--celltype-key needs the cells (--cells CELLS.h5ad): no composition baseline "
            "and no cell-type names for the reference points"
        )
    y = sample_labels(emb, groupby, n_splits=n_splits)
    classes = np.unique(y)
    ids = [str(i) for i in emb.obs_names]

    # feature sets: LOT (unscaled), mean cell (exact from the embedding), composition
    mean_rep = (r @ z)[None, :] + (v.reshape(-1, k, d) * np.sqrt(r)[None, :, None]).sum(1)
    feats: dict[str, tuple[np.ndarray, bool]] = {"lot": (v, False), "mean_rep": (mean_rep, True)}
    types: list[str] = []
    if cs is not None and cs.celltypes is not None:
        types = sorted({t for ts in cs.celltypes for t in ts})
        comp = np.zeros((len(ids), len(types)))
        for i, (ts, w) in enumerate(zip(cs.celltypes, cs.weights)):
            for j, t in enumerate(types):
                comp[i, j] = w[ts == t].sum()
        feats["composition"] = (comp, True)
    log.info(
        "%s on %d samples x %d LOT features; %d x %d-fold CV (seed %d); baselines: %s",
        classifier,
        len(ids),
        v.shape[1],
        n_repeats,
        n_splits,
        seed,
        ", ".join(list(feats)[1:]),
    )
    folds, pred = cross_validate(
        feats, y, model=classifier, C=C, n_splits=n_splits, n_repeats=n_repeats, seed=seed
    )
    agg = folds.groupby("features", sort=False)[["accuracy", "balanced_accuracy", "roc_auc"]]
    mean, sd = agg.mean(), agg.std(ddof=1).fillna(0.0)
    metrics = pd.DataFrame(
        {
            "features": list(mean.index),
            "model": classifier,
            "accuracy": mean["accuracy"].to_numpy(),
            "accuracy_sd": sd["accuracy"].to_numpy(),
            "balanced_accuracy": mean["balanced_accuracy"].to_numpy(),
            "balanced_accuracy_sd": sd["balanced_accuracy"].to_numpy(),
            "roc_auc": mean["roc_auc"].to_numpy(),
            "roc_auc_sd": sd["roc_auc"].to_numpy(),
            "n_samples": len(ids),
            "n_folds": n_splits,
            "n_repeats": n_repeats,
        }
    )
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(np.tile(y, n_repeats), pred.ravel().astype(str), labels=classes)
    confusion = pd.DataFrame(
        cm, index=[f"true:{c}" for c in classes], columns=[f"pred:{c}" for c in classes]
    )
    confusion.index.name = "label"
    cv_pred = pd.DataFrame({"sample": ids, "label": y})
    for c in classes:
        cv_pred[f"share_pred:{c}"] = (pred == c).mean(0)
    cv_pred["correct_share"] = (pred == y[None, :]).mean(0)

    # interpretation from the model fitted on all samples
    fitted = _fit(classifier, v, y, C=C, seed=seed)
    w = np.asarray(fitted.coef_, dtype=np.float64).reshape(-1, k, d)
    norm = np.sqrt((w**2).sum(axis=(0, 2)))
    dims = list(u.get("dims", [])) or [f"dim{j}" for j in range(d)]
    loadings = np.asarray(u["loadings"], dtype=np.float64) if "loadings" in u else None
    genes = [str(g) for g in u["genes"]] if loadings is not None else None
    order = np.argsort(-norm, kind="stable")
    pts = pd.DataFrame(
        {
            "rank": np.arange(1, k + 1),
            "ref_point": order,
            "weight_norm": norm[order],
            "weight_share": (norm[order] ** 2) / max(float((norm**2).sum()), 1e-300),
            "ref_weight": r[order],
        }
    )

    def per_point(vals: np.ndarray) -> np.ndarray:  # (rows, k, p) -> signed (2 classes) or norm
        return vals[0] if vals.shape[0] == 1 else np.sqrt((vals**2).sum(0))

    wk = per_point(w)  # (k, d)
    pts["top_features"] = [_fmt(dims, wk[i], n_top) for i in order]
    gene_w = None
    if loadings is not None and loadings.shape[1] == d:
        gene_w = np.einsum("gd,ckd->ckg", loadings, w)  # (rows, k, n_genes)
        gk = per_point(gene_w)
        pts["top_genes"] = [_fmt(genes, gk[i], n_top) for i in order]  # type: ignore[arg-type]
    share = None
    if types:
        share = transport_labels(z, r, cs, types, jobs=jobs)  # type: ignore[arg-type]
        pooled = share.mean(0)
        pts["celltype"] = np.asarray(types, dtype=object)[pooled.argmax(1)][order]
        pts["celltype_share"] = pooled.max(1)[order]
        by_class = np.stack([share[y == c].mean(0) for c in classes])  # (c, k, t)
        for ci, c in enumerate(classes):
            pts[f"celltype:{c}"] = np.asarray(types, dtype=object)[by_class[ci].argmax(1)][order]
        spread = by_class.max(0) - by_class.min(0)  # (k, t)
        pts["celltype_change"] = np.asarray(types, dtype=object)[spread.argmax(1)][order]
        pts["change_share"] = spread.max(1)[order]
    for j, name in enumerate(dims):
        pts[f"z:{name}"] = z[order, j]

    fdim = np.sqrt((w**2).sum(axis=(0, 1)))
    frames = [pd.DataFrame({"kind": "dim", "feature": dims, "importance": fdim})]
    if gene_w is not None:
        frames.append(
            pd.DataFrame(
                {
                    "kind": "gene",
                    "feature": genes,
                    "importance": np.sqrt((gene_w**2).sum(axis=(0, 1))),
                }
            )
        )
    features = pd.concat(frames, ignore_index=True)
    features = features.sort_values(["kind", "importance"], ascending=[True, False], kind="stable")
    features["rank"] = features.groupby("kind").cumcount() + 1
    features = features.reset_index(drop=True)

    info = {
        "label": groupby,
        "model": classifier,
        "C": float(C),
        "n_splits": int(n_splits),
        "n_repeats": int(n_repeats),
        "seed": int(seed),
        "reference_id": reference_id(z, r),
        "reference": z,
        "reference_weights": r,
        "dims": dims,
        "celltype_key": celltype_key or "",
        "types": types,
        "transport_shares": share,
    }
    return ClassifyResult(
        metrics,
        folds,
        confusion,
        cv_pred,
        pts,
        features,
        w,
        fitted,
        [str(c) for c in classes],
        info,
    )


def model_bundle(res: ClassifyResult) -> dict:
    """What :func:`save_model` writes: the fitted model and the reference it belongs to."""
    from otbio import __version__

    keys = ("label", "model", "C", "reference_id", "reference", "reference_weights", "dims")
    return {
        "format": MODEL_FORMAT,
        "estimator": res.model,
        "classes": list(res.classes),
        "otbio_version": __version__,
        **{kk: res.info[kk] for kk in keys},
    }


def save_model(res: ClassifyResult, path: str) -> None:
    """Write the fitted model with its reference (joblib), atomically."""
    import joblib

    from otbio.io import atomic_path

    with atomic_path(path) as tmp:
        joblib.dump(model_bundle(res), tmp)


def load_model(path: str) -> dict:
    """Read a model written by :func:`save_model` (joblib = pickle: only load trusted files)."""
    import joblib

    from otbio.io import _need_file

    p = _need_file(path)
    try:
        bundle = joblib.load(p)
    except Exception as exc:
        msg = f"cannot read {p} as an otbio model: {type(exc).__name__}: {exc}".splitlines()[0]
        raise InputError(msg) from exc
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        msg = f"{p} is not an otbio classify model; write one with `otbio classify --save-model`"
        raise InputError(msg)
    return bundle


def predict(emb: AnnData, bundle: dict, *, name: str = "the embedding") -> pd.DataFrame:
    """Score new samples embedded against the model's reference (refuses any other).

    Returns a DataFrame with ``sample``, ``predicted`` and ``score:<class>`` (decision
    function; one column ``score:<classes[1]>`` for two classes).
    """
    import pandas as pd

    v, z, r = embedding_arrays(emb, name=name)
    rid = reference_id(z, r)
    if rid != bundle["reference_id"]:
        msg = (
            f"{name} was embedded against reference {rid}, the model was fitted on reference "
            f"{bundle['reference_id']}; embed the new samples with the model's reference "
            "(otbio embed --reference REF.h5ad)"
        )
        raise InputError(msg)
    m = bundle["estimator"]
    s = _scores(m, v)
    out = pd.DataFrame(
        {"sample": [str(i) for i in emb.obs_names], "predicted": m.predict(v).astype(str)}
    )
    classes = bundle["classes"]
    cols = [classes[1]] if s.shape[1] == 1 else classes
    for j, c in enumerate(cols):
        out[f"score:{c}"] = s[:, j]
    return out
