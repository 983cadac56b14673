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

from otbio._docs import doc_params
from otbio._errors import InputError, not_found
from otbio.lot._format import collect_embedded, embedding_entry, reference_id
from otbio.lot._ops import embedding_arrays
from otbio.lot._readback import ReadBack, read_back, transport_labels

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
Model = Literal["centroid", "logistic-l2", "logistic-l1", "svm", "lda"]
MODELS: tuple[str, ...] = ("centroid", "logistic-l2", "logistic-l1", "svm", "lda")
MODEL_FORMAT = "otbio-lot-classifier/1"
Scale = Literal["standard", "mass", "none"]
SCALES: tuple[str, ...] = ("standard", "mass", "none")
#: inverse regularisation strengths tried by the nested CV (features scaled first)
C_GRID: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
#: the C accepted: liblinear's solver does not end for C near the float limit (1e308)
C_RANGE: tuple[float, float] = (1e-6, 1e6)
#: features kept by the shrunken centroids, tried by the nested CV (capped at the features)
N_FEATURES_GRID: tuple[int, ...] = (5, 10, 20, 50, 100, 200, 500)


def param_name(model: str) -> str:
    """The regularisation parameter the nested CV tunes: ``n_features`` or ``C``."""
    return "n_features" if model == "centroid" else "C"


def param_grid(model: str, n_features: int) -> list[float]:
    """The values of :func:`param_name` tried by the nested CV."""
    if model == "centroid":
        g = [float(m) for m in N_FEATURES_GRID if m < n_features]
        return g + [float(n_features)] if len(g) < len(N_FEATURES_GRID) else g
    return list(C_GRID)


def make_model(
    name: str,
    *,
    C: float = 1.0,
    n_features: int | None = None,
    seed: int = 0,
    n_classes: int = 2,
) -> Any:
    """A fresh linear classifier (all expose ``coef_`` and ``decision_function``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if name == "centroid":
        return ShrunkenCentroid(n_features)

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


class _Linear:
    """Decision and prediction from ``coef_``, ``intercept_`` and ``classes_`` (binary: one column)."""

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        s = np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_
        return s[:, 0] if s.shape[1] == 1 else s

    def predict(self, x: np.ndarray) -> np.ndarray:
        s = self.decision_function(x)
        if s.ndim == 1:
            return self.classes_[(s > 0).astype(int)]
        return self.classes_[s.argmax(1)]


class ShrunkenCentroid(_Linear):
    """Nearest shrunken centroids (PAM; Tibshirani, Hastie, Narasimhan and Chu, PNAS 2002).

    Class centroids are standardised by the pooled within-class sd plus its median
    (:math:`s_j + s_0`) and soft-thresholded towards the overall mean by the amount that
    keeps ``n_features`` features (None: all); a sample goes to the nearest shrunken
    centroid in that metric, with the class priors. The rule is linear: ``coef_`` (zero
    outside the kept features) and ``intercept_`` give the discriminant (for two classes one
    row, towards ``classes_[1]``). Among thousands of LOT features of which few move (one
    cell type's reference points), the threshold keeps those, and fitting costs one pass.
    """

    def __init__(self, n_features: int | None = None) -> None:
        self.n_features = n_features

    def fit(self, x: np.ndarray, y: np.ndarray) -> ShrunkenCentroid:
        x = np.asarray(x, dtype=np.float64)
        classes, yi = np.unique(y, return_inverse=True)
        n, p = x.shape
        nk = np.bincount(yi, minlength=classes.size).astype(np.float64)
        mean = x.mean(0)
        mc = np.stack([x[yi == c].mean(0) for c in range(classes.size)])
        s = np.sqrt(((x - mc[yi]) ** 2).sum(0) / max(n - classes.size, 1))
        se = s + max(float(np.median(s)), 1e-12)
        mk = np.sqrt(np.maximum(1.0 / nk - 1.0 / n, 1e-12))
        dk = (mc - mean) / (mk[:, None] * se)
        self.classes_ = classes
        self._stats = (mean, se, mk, dk, np.log(nk / n))
        self._score = np.sort(np.abs(dk).max(0))[::-1]
        return self.set_n_features(self.n_features)

    def set_n_features(self, n_features: int | None) -> ShrunkenCentroid:
        """Re-threshold a fitted model to keep ``n_features`` features (no refit)."""
        mean, se, mk, dk, logp = self._stats
        p = dk.shape[1]
        self.n_features = n_features
        keep = p if n_features is None else int(n_features)
        delta = 0.0 if keep >= p else float(self._score[keep])
        shrunk = np.sign(dk) * np.maximum(np.abs(dk) - delta, 0.0)
        cent = mean + mk[:, None] * se * shrunk
        wk = 2.0 * cent / se**2
        bk = -((cent**2) / se**2).sum(1) + 2.0 * logp
        self.centroids_ = cent
        if self.classes_.size == 2:
            self.coef_ = (wk[1] - wk[0])[None, :]
            self.intercept_ = np.array([bk[1] - bk[0]])
        else:
            self.coef_, self.intercept_ = wk, bk
        return self


class SpanLDA(_Linear):
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


class Scaled:
    """A linear model fitted on scaled features, exposing weights in the input units.

    ``scale``: ``standard`` (every feature centred and divided by its sd on the training
    samples), ``mass`` (centred and divided by one global RMS, so that the LOT vector's
    :math:`\\sqrt{r_k}` weighting, the tangent-space metric, is kept) or ``none``.
    ``coef_`` is in the input units (``decision = x @ coef_.T + intercept_``);
    ``coef_scaled_`` is the fitted coefficient on the scaled features (comparable across
    features: the read-back ranks reference points by it).
    """

    def __init__(self, base: Any, scale: str = "standard") -> None:
        self.base = base
        self.scale = scale

    def fit(self, x: np.ndarray, y: np.ndarray) -> Scaled:
        x = np.asarray(x, dtype=np.float64)
        if self.scale == "none":
            self.mean_ = np.zeros(x.shape[1])
            self.scale_ = np.ones(x.shape[1])
        else:
            self.mean_ = x.mean(0)
            if self.scale == "standard":
                sd = x.std(0)
                sd[sd <= 1e-12] = 1.0
            else:
                rms = float(np.sqrt(((x - self.mean_) ** 2).mean()))
                sd = np.full(x.shape[1], rms if rms > 1e-300 else 1.0)
            self.scale_ = sd
        self.base.fit(self._t(x), y)
        self.classes_ = self.base.classes_
        self.coef_scaled_ = np.atleast_2d(np.asarray(self.base.coef_, dtype=np.float64))
        self.coef_ = self.coef_scaled_ / self.scale_[None, :]
        b = np.atleast_1d(np.asarray(self.base.intercept_, dtype=np.float64))
        self.intercept_ = b - self.coef_ @ self.mean_
        return self

    def _t(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.base.decision_function(self._t(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.base.predict(self._t(x))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, where the fitted model gives them (AttributeError if not)."""
        if not hasattr(self.base, "predict_proba"):
            msg = f"{type(self.base).__name__} gives no class probabilities"
            raise AttributeError(msg)
        return self.base.predict_proba(self._t(x))


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
    u = embedding_entry(emb)["params"]
    sample_key = u.get("sample_key") or None
    adatas = list(cells) if isinstance(cells, (list, tuple)) else [cells]
    names = list(names) if names is not None else [f"cells {i}" for i in range(len(adatas))]
    ids = [str(i) for i in emb.obs_names]
    s = collect_embedded(adatas, u, samples=ids, names=names)
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
                cols = adatas[a].obs.columns
                raise not_found("obs column", celltype_key, "the cells", cols, "celltype_key")
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


def _bacc(y: np.ndarray, p: np.ndarray) -> float:
    """Balanced accuracy: mean recall over the classes present in ``y`` (as sklearn's)."""
    y = np.asarray(y).astype(str)
    p = np.asarray(p).astype(str)
    return float(np.mean([(p[y == c] == c).mean() for c in np.unique(y)]))


def _acc(y: np.ndarray, p: np.ndarray) -> float:
    return float((np.asarray(y).astype(str) == np.asarray(p).astype(str)).mean())


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


def _fit(
    name: str, x: np.ndarray, y: np.ndarray, *, C: float, seed: int, scale: str = "none"
) -> Any:
    """Fit model ``name`` on scaled features; ``C`` is the value of :func:`param_name`."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    kw = {"n_features": int(C)} if name == "centroid" else {"C": C}
    m = Scaled(make_model(name, seed=seed, n_classes=np.unique(y).size, **kw), scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(x, y)
    return m


def select_C(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    scale: str,
    grid: Sequence[float] | None = None,
    seed: int = 0,
    n_inner: int = 3,
) -> float:
    """The regularisation value (C, or features kept for ``centroid``) of ``grid`` (default
    :func:`param_grid`) with the best inner stratified-CV balanced accuracy on (x, y).

    Called on the training samples of each outer fold only (nested CV: the test fold never
    chooses it). Ties go to the value closest to the grid's middle (log scale); ``lda``
    has nothing to tune (returns 1).
    """
    from sklearn.model_selection import StratifiedKFold

    if name == "lda":
        return 1.0
    grid = list(grid) if grid is not None else param_grid(name, x.shape[1])
    mid = float(np.exp(np.mean(np.log(grid))))
    _, counts = np.unique(y, return_counts=True)
    k = int(min(n_inner, counts.min()))
    if len(grid) == 1 or k < 2:
        return float(min(grid, key=lambda c: abs(np.log(c / mid))))
    score = np.zeros(len(grid))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in skf.split(np.zeros(y.size), y):
        if name == "centroid":  # one fit, re-thresholded along the grid
            m = _fit(name, x[tr], y[tr], C=grid[0], seed=seed, scale=scale)
            xte = m._t(x[te])
            for j, C in enumerate(grid):
                score[j] += _bacc(y[te], m.base.set_n_features(int(C)).predict(xte))
            continue
        for j, C in enumerate(grid):
            m = _fit(name, x[tr], y[tr], C=C, seed=seed, scale=scale)
            score[j] += _bacc(y[te], m.predict(x[te]))
    best = score.max()
    cands = [c for c, sc in zip(grid, score) if sc >= best - 1e-12]
    return float(min(cands, key=lambda c: abs(np.log(c / mid))))


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


@dataclass
class CVOutput:
    """What :func:`cross_validate` returns."""

    folds: pd.DataFrame  # one row per (repeat, fold, feature set)
    repeats: pd.DataFrame  # one row per (repeat, feature set): pooled out-of-fold metrics
    pred: np.ndarray  # (n_repeats, n_samples) out-of-fold predictions of the first set
    p_value: float  # permutation p-value of the first set (nan without permutations)
    null: np.ndarray  # permuted statistics (n_permutations,)
    statistic: float  # the observed statistic the null is compared to


def _cv_pass(
    x: np.ndarray,
    scale: str,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    model: str,
    C: float | None,
    C_grid: Sequence[float] | None,
    seed: int,
) -> tuple[np.ndarray, list[tuple[float, Any, np.ndarray]]]:
    """Out-of-fold predictions (one row per split) with C chosen inside each training fold."""
    pred = np.empty((len(splits), y.size), dtype=object)
    fits = []
    for f, (train, test) in enumerate(splits):
        c = (
            C
            if C is not None
            else select_C(model, x[train], y[train], scale=scale, grid=C_grid, seed=seed)
        )
        m = _fit(model, x[train], y[train], C=c, seed=seed, scale=scale)
        pred[f, test] = m.predict(x[test])
        fits.append((c, m, test))
    return pred, fits


def cross_validate(
    features: dict[str, tuple[np.ndarray, str]],
    y: np.ndarray,
    *,
    model: str = "logistic-l1",
    C: float | None = None,
    C_grid: Sequence[float] | None = None,
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
    n_permutations: int = 0,
    permutation_repeats: int | None = 1,
    progress: bool = False,
) -> CVOutput:
    """Repeated stratified K-fold at sample level, the same folds for every feature set.

    ``features`` maps a name to ``(X (n_samples, p), scale)`` (see :class:`Scaled`).
    ``C=None`` chooses C from ``C_grid`` by an inner stratified 3-fold CV on the training
    samples of every outer fold (nested CV). Metrics per repeat are those of the pooled
    out-of-fold predictions (every sample predicted once); ROC-AUC is per fold.

    Permutation test (first feature set only, ``n_permutations > 0``): the sample labels are
    permuted (seeded) and the whole procedure, C selection included, is run again on the same
    folds (those of the first ``permutation_repeats`` repeats, None: all); the statistic is
    the mean balanced accuracy over those repeats and
    :math:`p = (1 + \\#\\{\\text{null} \\ge \\text{observed}\\}) / (1 + n)`.
    """
    import pandas as pd
    from sklearn.model_selection import RepeatedStratifiedKFold

    classes = np.unique(y)
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    splits = list(cv.split(np.zeros(y.size), y))
    first = next(iter(features))
    rows, reps, first_pred = [], [], None
    for name, (x, scale) in features.items():
        pred, fits = _cv_pass(x, scale, y, splits, model=model, C=C, C_grid=C_grid, seed=seed)
        oof = np.empty((n_repeats, y.size), dtype=object)
        for f, (c, m, test) in enumerate(fits):
            rep, fold = divmod(f, n_splits)
            p = pred[f, test]
            oof[rep, test] = p
            rows.append(
                {
                    "repeat": rep,
                    "fold": fold,
                    "features": name,
                    param_name(model): c,
                    "accuracy": _acc(y[test], p),
                    "balanced_accuracy": _bacc(y[test], p),
                    "roc_auc": _auc(y[test], _scores(m, x[test]), classes),
                }
            )
        for rep in range(n_repeats):
            reps.append(
                {
                    "repeat": rep,
                    "features": name,
                    "accuracy": _acc(y, oof[rep].astype(str)),
                    "balanced_accuracy": _bacc(y, oof[rep].astype(str)),
                }
            )
        if name == first:
            first_pred = oof
    repeats = pd.DataFrame(reps)
    p_value, null, stat = float("nan"), np.zeros(0), float("nan")
    if n_permutations > 0:
        x, scale = features[first]
        n_r = n_repeats if permutation_repeats is None else min(permutation_repeats, n_repeats)
        sub = splits[: n_r * n_splits]
        stat = float(repeats[repeats["features"] == first]["balanced_accuracy"].iloc[:n_r].mean())
        rng = np.random.default_rng([seed, 7])
        null = np.empty(n_permutations)
        for b in range(n_permutations):
            yp = y[rng.permutation(y.size)]
            pred, _ = _cv_pass(x, scale, yp, sub, model=model, C=C, C_grid=C_grid, seed=seed)
            vals = []
            for rep in range(n_r):
                oof = np.empty(y.size, dtype=object)
                for f in range(rep * n_splits, (rep + 1) * n_splits):
                    te = sub[f][1]
                    oof[te] = pred[f, te]
                vals.append(_bacc(yp, oof.astype(str)))
            null[b] = float(np.mean(vals))
            if progress and (b + 1) % max(1, n_permutations // 10) == 0:
                log.info("permutation test: %d / %d", b + 1, n_permutations)
        p_value = float((1 + int((null >= stat - 1e-12).sum())) / (1 + n_permutations))
    return CVOutput(pd.DataFrame(rows), repeats, first_pred, p_value, null, stat)


_CLASSIFY_PARAMETERS = """Parameters
    ----------
    emb
        An embedding from :func:`otbio.lot.embed` (one row per sample).
    groupby
        Sample-level obs column to predict (constant within each sample).
    classifier
        ``centroid`` (default: nearest shrunken centroids, :class:`ShrunkenCentroid`: keeps
        the few LOT features that move, e.g. one cell type's reference points),
        ``logistic-l1`` (sparse weights), ``logistic-l2``, ``svm`` (linear SVM) or ``lda``
        (shrinkage LDA).
    C, n_features
        The regularisation: inverse strength ``C`` (logistic, svm) or the features kept
        ``n_features`` (centroid). None (default): chosen from :func:`param_grid` by nested
        CV (an inner 3-fold CV on the training samples of each outer fold; the test fold
        never chooses it); the classifier fitted on all samples uses the value that an inner CV
        on all samples chooses.
    scale
        How LOT features are scaled before fitting (:class:`Scaled`): ``mass`` (default: one
        global factor, so the LOT vector keeps its :math:`\\sqrt{r_k}` weighting, the
        tangent-space metric in which :math:`\\|v_i - v_j\\|` approximates W2; it won on
        benchmarks/lot_classify.py), ``standard`` (each feature to unit sd on the training
        samples) or ``none``. Baselines are standardised.
        Weights are reported in the embedding's units either way.
    n_splits, n_repeats, seed
        Repeated stratified K-fold over samples (never over cells), seeded.
    n_permutations, permutation_repeats
        Permutation test of the LOT CV balanced accuracy: labels permuted, same folds (of the
        first ``permutation_repeats`` repeats), C re-selected each time; 0 skips it.
    cells, celltype_key
        The cells the embedding was made from and an obs column of cell types: add the
        cell-type composition baseline and name every reference point by the cell types it
        transports to (exact plans recomputed with ``ot.emd``)."""

_CLASSIFY_RETURNS = """Returns
    -------
    :class:`ClassifyResult` with ``metrics`` (one row per feature set: ``lot``,
    ``mean_rep`` (the mean cell of each sample in the representation, i.e. mean expression
    projected on the PCs, a pseudobulk; exact from the embedding), ``composition``
    (cell-type shares, with cells): accuracy and balanced accuracy of the pooled out-of-fold
    predictions, mean and sd over repeats with a 95% interval over repeats
    (``balanced_accuracy_ci_low/high``: 2.5 and 97.5 percentiles, the spread due to the
    split), ROC-AUC (mean over folds; binary, or macro one-vs-rest), ``C`` or ``n_features``
    (median chosen over folds), ``scale``, ``p_value`` and ``n_permutations`` (LOT row)); ``folds``
    (per fold, with the C or n_features chosen); ``confusion`` (LOT, summed over repeats: every sample
    counted once per repeat); ``cv_predictions`` (per sample); ``points`` (reference points
    ranked by the norm of their scaled weights: position, top features/genes, cell types);
    ``features`` (per dimension and, with PCA loadings, per gene: how far it moves between the
    classes at the reference points the classifier uses, i.e. the norm of the class difference of
    :math:`T(z_k) - z_k` on the features with non-zero weight; ``top_features``/``top_genes``
    of a point give the same difference, signed towards ``classes[1]`` for two classes);
    ``weights`` (n_rows, k, d) in the embedding's units, n_rows = 1 for two classes
    (towards ``classes[1]``); ``model`` fitted on all samples."""


@dataclass(frozen=True)
class ModelSpec:
    """The checked model options of :func:`classify`."""

    name: str  # one of MODELS
    param: str  # the tuned parameter, :func:`param_name`: "C" or "n_features"
    fixed: float | None  # its given value, None: chosen by nested CV
    scale: str  # one of SCALES, for the LOT features
    seed: int


@dataclass(frozen=True)
class CVPlan:
    """The cross-validation options of :func:`classify` (see :func:`cross_validate`)."""

    n_splits: int
    n_repeats: int
    n_permutations: int
    permutation_repeats: int | None
    progress: bool


@dataclass
class ClassifyData:
    """The samples :func:`classify` works on, in the embedding's row order."""

    v: np.ndarray  # (n_samples, k*d) LOT vectors
    z: np.ndarray  # (k, d) reference support
    r: np.ndarray  # (k,) reference weights
    entry: dict  # the embedding's uns['lot'] entry
    y: np.ndarray  # (n_samples,) labels as str
    classes: np.ndarray  # the sorted distinct labels
    ids: list[str]  # sample ids
    cells: CellsBySample | None  # their cells, when given


def model_spec(
    classifier: str,
    *,
    C: float | None,
    n_features: int | None,
    scale: str,
    n_splits: int,
    n_permutations: int,
    seed: int,
) -> ModelSpec:
    """Check the model options (InputError naming the fix) and return a :class:`ModelSpec`."""
    if C is not None and not (C_RANGE[0] <= C <= C_RANGE[1]):
        msg = (
            f"C must lie between {C_RANGE[0]:g} and {C_RANGE[1]:g} (the features are scaled "
            f"first; beyond that the fit is unregularised or all zero), got {C}"
        )
        raise InputError(msg)
    if n_features is not None and n_features < 1:
        msg = f"n_features must be >= 1, got {n_features}"
        raise InputError(msg)
    pname = param_name(classifier)
    fixed = (None if n_features is None else float(n_features)) if pname == "n_features" else C
    if n_splits < 2:
        msg = f"n_splits must be >= 2, got {n_splits}"
        raise InputError(msg)
    if n_permutations < 0:
        msg = f"n_permutations must be >= 0, got {n_permutations}"
        raise InputError(msg)
    if scale not in SCALES:
        msg = f"unknown scale '{scale}'; choose one of {', '.join(SCALES)}"
        raise InputError(msg)
    make_model(classifier)  # name check before any work
    return ModelSpec(classifier, pname, fixed, scale, seed)


def classify_inputs(
    emb: AnnData,
    groupby: str,
    spec_options: dict,
    cells: AnnData | Sequence[AnnData] | None,
    celltype_key: str | None,
    names: Sequence[str] | None,
) -> tuple[ClassifyData, ModelSpec]:
    """Read the embedding, check the model options ``spec_options`` (the keywords of
    :func:`model_spec`), and collect the cells of every sample (:func:`sample_cells`) and the
    labels ``emb.obs[groupby]`` (:func:`sample_labels`). Returns the :class:`ClassifyData` and
    the :class:`ModelSpec`."""
    v, z, r = embedding_arrays(emb)
    u = embedding_entry(emb)
    spec = model_spec(**spec_options)
    n_splits = spec_options["n_splits"]
    cs = None
    if cells is not None:
        cs = sample_cells(emb, cells, celltype_key=celltype_key, groupby=groupby, names=names)
    elif celltype_key is not None:
        log.warning(
            "--celltype-key needs the cells (--cells CELLS.h5ad): no composition baseline "
            "and no cell-type names for the reference points"
        )
    y = sample_labels(emb, groupby, n_splits=n_splits)
    ids = [str(i) for i in emb.obs_names]
    return ClassifyData(v, z, r, u, y, np.unique(y), ids, cs), spec


def feature_sets(
    data: ClassifyData, scale: str
) -> tuple[dict[str, tuple[np.ndarray, str]], list[str]]:
    """The feature sets cross-validated side by side, each ``(X (n_samples, p), scale)``:
    ``lot`` (the LOT vectors), ``mean_rep`` (the mean cell of each sample, exact from the
    embedding) and, with cell types, ``composition`` (cell-type shares). Returns them and the
    sorted cell types (empty without)."""
    v, z, r = data.v, data.z, data.r
    k, d = z.shape
    mean_rep = (r @ z)[None, :] + (v.reshape(-1, k, d) * np.sqrt(r)[None, :, None]).sum(1)
    feats: dict[str, tuple[np.ndarray, str]] = {
        "lot": (v, scale),
        "mean_rep": (mean_rep, "standard"),
    }
    types: list[str] = []
    cs = data.cells
    if cs is not None and cs.celltypes is not None:
        types = sorted({t for ts in cs.celltypes for t in ts})
        comp = np.zeros((len(data.ids), len(types)))
        for i, (ts, w) in enumerate(zip(cs.celltypes, cs.weights)):
            for j, t in enumerate(types):
                comp[i, j] = w[ts == t].sum()
        feats["composition"] = (comp, "standard")
    return feats, types


def _log_plan(data: ClassifyData, spec: ModelSpec, feats: dict, plan: CVPlan) -> None:
    """Log (info) what :func:`classify` is about to run."""
    log.info(
        "%s on %d samples x %d LOT features (%s scaling), %s %s; %d x %d-fold CV (seed %d); "
        "%d permutations; baselines: %s",
        spec.name,
        len(data.ids),
        data.v.shape[1],
        spec.scale,
        spec.param,
        "by nested CV" if spec.fixed is None else f"{spec.fixed:g}",
        plan.n_repeats,
        plan.n_splits,
        spec.seed,
        plan.n_permutations,
        ", ".join(list(feats)[1:]),
    )


def metrics_table(
    out: CVOutput, feats: dict, spec: ModelSpec, plan: CVPlan, n_samples: int
) -> pd.DataFrame:
    """One row per feature set from the cross-validation ``out``: accuracy and balanced
    accuracy over repeats (mean, sd, 95% interval), ROC-AUC over folds, the median C or
    n_features chosen, the scale and (LOT row) the permutation p-value."""
    import pandas as pd

    folds = out.folds
    rep = out.repeats.groupby("features", sort=False)[["accuracy", "balanced_accuracy"]]
    auc = folds.groupby("features", sort=False)["roc_auc"]
    mean, sd = rep.mean(), rep.std(ddof=1).fillna(0.0)
    q = out.repeats.groupby("features", sort=False)["balanced_accuracy"]
    order_f = list(mean.index)
    c_med = folds.groupby("features", sort=False)[spec.param].median()
    return pd.DataFrame(
        {
            "features": order_f,
            "model": spec.name,
            "accuracy": mean["accuracy"].to_numpy(),
            "accuracy_sd": sd["accuracy"].to_numpy(),
            "balanced_accuracy": mean["balanced_accuracy"].to_numpy(),
            "balanced_accuracy_sd": sd["balanced_accuracy"].to_numpy(),
            "balanced_accuracy_ci_low": q.quantile(0.025).loc[order_f].to_numpy(),
            "balanced_accuracy_ci_high": q.quantile(0.975).loc[order_f].to_numpy(),
            "roc_auc": auc.mean().loc[order_f].to_numpy(),
            "roc_auc_sd": auc.std(ddof=1).fillna(0.0).loc[order_f].to_numpy(),
            spec.param: c_med.loc[order_f].to_numpy(),
            "scale": [feats[f][1] for f in order_f],
            "p_value": [out.p_value if f == "lot" else np.nan for f in order_f],
            "n_permutations": [plan.n_permutations if f == "lot" else 0 for f in order_f],
            "n_samples": n_samples,
            "n_folds": plan.n_splits,
            "n_repeats": plan.n_repeats,
        }
    )


def run_cv(
    feats: dict[str, tuple[np.ndarray, str]], y: np.ndarray, spec: ModelSpec, plan: CVPlan
) -> CVOutput:
    """Cross-validate every feature set on the same folds (:func:`cross_validate`), with C
    (or n_features) chosen by nested CV unless given. Returns its :class:`CVOutput`."""
    return cross_validate(
        feats,
        y,
        model=spec.name,
        C=spec.fixed,
        n_splits=plan.n_splits,
        n_repeats=plan.n_repeats,
        seed=spec.seed,
        n_permutations=plan.n_permutations,
        permutation_repeats=plan.permutation_repeats,
        progress=plan.progress,
    )


def prediction_tables(
    pred: np.ndarray, data: ClassifyData, n_repeats: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From the out-of-fold LOT predictions ``pred`` (n_repeats, n_samples): the confusion
    matrix summed over repeats and the per-sample table (share predicted as each class,
    share correct)."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    y, classes = data.y, data.classes
    cm = confusion_matrix(np.tile(y, n_repeats), pred.ravel().astype(str), labels=classes)
    confusion = pd.DataFrame(
        cm, index=[f"true:{c}" for c in classes], columns=[f"pred:{c}" for c in classes]
    )
    confusion.index.name = "label"
    cv_pred = pd.DataFrame({"sample": data.ids, "label": y})
    for c in classes:
        cv_pred[f"share_pred:{c}"] = (pred == c).mean(0)
    cv_pred["correct_share"] = (pred == y[None, :]).mean(0)
    return confusion, cv_pred


def fit_all(data: ClassifyData, spec: ModelSpec) -> tuple[float, Scaled]:
    """The classifier fitted on all samples: C (or n_features) as given, or chosen by an inner
    CV on all samples (:func:`select_C`). Returns the value and the fitted :class:`Scaled`."""
    v, y = data.v, data.y
    c_all = (
        spec.fixed
        if spec.fixed is not None
        else select_C(spec.name, v, y, scale=spec.scale, seed=spec.seed)
    )
    return c_all, _fit(spec.name, v, y, C=c_all, seed=spec.seed, scale=spec.scale)


def run_info(
    groupby: str,
    spec: ModelSpec,
    plan: CVPlan,
    c_all: float,
    out: CVOutput,
    data: ClassifyData,
    back: ReadBack,
    celltype_key: str | None,
    types: list[str],
) -> dict:
    """``ClassifyResult.info``: the options, the parameter used, the permutation test and the
    reference the model belongs to."""
    pname, fixed = spec.param, spec.fixed
    return {
        "label": groupby,
        "model": spec.name,
        "C": float(c_all) if pname == "C" else float("nan"),
        "n_features": int(c_all) if pname == "n_features" else 0,
        "param_name": pname,
        "param_mode": "nested-cv" if fixed is None else "given",
        "param_grid": param_grid(spec.name, data.v.shape[1]) if fixed is None else [float(fixed)],
        "scale": spec.scale,
        "n_permutations": int(plan.n_permutations),
        "permutation_repeats": int(plan.permutation_repeats or plan.n_repeats),
        "p_value": out.p_value,
        "permutation_null": out.null,
        "n_splits": int(plan.n_splits),
        "n_repeats": int(plan.n_repeats),
        "seed": int(spec.seed),
        "reference_id": reference_id(data.z, data.r),
        "reference": data.z,
        "reference_weights": data.r,
        "dims": back.dims,
        "celltype_key": celltype_key or "",
        "types": types,
        "transport_shares": back.shares,
    }


@doc_params(parameters=_CLASSIFY_PARAMETERS, returns=_CLASSIFY_RETURNS)
def classify(
    emb: AnnData,
    *,
    groupby: str,
    classifier: Model = "centroid",
    C: float | None = None,
    n_features: int | None = None,
    scale: Scale = "mass",
    n_splits: int = 5,
    n_repeats: int = 10,
    n_permutations: int = 100,
    permutation_repeats: int | None = 1,
    seed: int = 0,
    cells: AnnData | Sequence[AnnData] | None = None,
    celltype_key: str | None = None,
    n_top: int = 5,
    jobs: int = 1,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> ClassifyResult:
    """Cross-validate a linear classifier on LOT vectors and read its weights back.

    {parameters}

    {returns}
    """
    spec_options = dict(classifier=classifier, C=C, n_features=n_features, scale=scale)
    spec_options.update(n_splits=n_splits, n_permutations=n_permutations, seed=seed)
    data, spec = classify_inputs(emb, groupby, spec_options, cells, celltype_key, names)
    plan = CVPlan(n_splits, n_repeats, n_permutations, permutation_repeats, progress)
    feats, types = feature_sets(data, scale)
    _log_plan(data, spec, feats, plan)
    out = run_cv(feats, data.y, spec, plan)
    metrics = metrics_table(out, feats, spec, plan, len(data.ids))
    confusion, cv_pred = prediction_tables(out.pred, data, n_repeats)
    c_all, fitted = fit_all(data, spec)
    back = read_back(fitted, data, types, n_top=n_top, jobs=jobs)
    info = run_info(groupby, spec, plan, c_all, out, data, back, celltype_key, types)
    tables = (metrics, out.folds, confusion, cv_pred, back.points, back.features)
    return ClassifyResult(*tables, back.weights, fitted, [str(c) for c in data.classes], info)


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

    Returns a DataFrame with ``sample``, ``predicted`` and ``score:<class>``: the decision
    function, unitless (a signed distance to the decision boundary in the model's scaled
    features; > 0 favours the class; one column ``score:<classes[1]>`` for two classes); it
    ranks samples of one model and is not comparable across models. Models that give class
    probabilities (the logistic ones) add ``probability:<class>`` in [0, 1].
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
    if hasattr(m, "predict_proba"):
        try:
            proba = np.asarray(m.predict_proba(v), dtype=np.float64)
        except (AttributeError, NotImplementedError):  # e.g. an SVM without probabilities
            proba = None
        if proba is not None and proba.shape[1] == len(classes):
            for j, c in enumerate(classes):
                out[f"probability:{c}"] = proba[:, j]
    return out
