"""`otbio classify` on generated state-shift cohorts (real PBMCs, one cell type moved inside
its own state space, composition unchanged): accuracy over a pyLOT-style peer on the same
folds, the read-back's cell type, and the permutation p-value for a real and a null shift."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc

import otbio.lot as L
from otbio.lot._classify import _bacc

SHIFTED = "CD14+ Monocyte"
N_SPLITS, N_REPEATS = 4, 2


@pytest.fixture(scope="module")
def src():
    return sc.datasets.pbmc68k_reduced()


def lot_cohort(src, shift, seed):
    a = L.state_shift_cohort(
        n_samples=20, n_cells=100, shifted_type=SHIFTED, shift=shift, seed=seed, source=src
    )
    ref = L.reference(a, sample_key="donor", use_rep="X_pca", size=32, seed=0)
    emb = L.embed(a, ref, sample_key="donor", jobs=2, progress=False)
    return a, emb


def pylot_style(a, emb, seed):
    """The plain peer: KMeans reference (same size), POT ot.emd, map T(z), scaled logistic
    regression; balanced accuracy of the pooled out-of-fold predictions, same folds."""
    import ot
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    donor = a.obs["donor"].astype(str).to_numpy()
    x = np.asarray(a.obsm["X_pca"], dtype=np.float64)
    pts = [x[donor == s] for s in emb.obs_names]
    pooled = np.concatenate(pts)
    km = KMeans(n_clusters=32, n_init=1, random_state=0).fit(pooled)
    r = np.bincount(km.labels_, minlength=32) / pooled.shape[0]
    z = km.cluster_centers_
    feats = np.stack(
        [
            (ot.emd(r, np.full(len(p), 1 / len(p)), ot.dist(z, p)) @ p / r[:, None]).ravel()
            for p in pts
        ]
    )
    y = emb.obs["condition"].astype(str).to_numpy()
    cv = RepeatedStratifiedKFold(n_splits=N_SPLITS, n_repeats=N_REPEATS, random_state=seed)
    oof = np.empty((N_REPEATS, y.size), dtype=object)
    for f, (tr, te) in enumerate(cv.split(np.zeros(y.size), y)):
        m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(feats[tr], y[tr])
        oof[f // N_SPLITS, te] = m.predict(feats[te])
    return float(np.mean([_bacc(y, o) for o in oof]))


def run_classify(a, emb, n_permutations):
    return L.classify(
        emb,
        groupby="condition",
        n_splits=N_SPLITS,
        n_repeats=N_REPEATS,
        n_permutations=n_permutations,
        seed=0,
        cells=a,
        celltype_key="bulk_labels",
        jobs=2,
    )


def test_cohort_changes_state_not_composition(src):
    a = L.state_shift_cohort(n_samples=6, n_cells=200, shift=2.0, seed=3, source=src)
    obs = a.obs
    moved = obs["shifted"].to_numpy()
    # only the shifted type's cells of the shifted donors moved, by the recorded vector
    assert set(obs.loc[moved, "bulk_labels"].astype(str)) == {SHIFTED}
    assert set(obs.loc[moved, "condition"].astype(str)) == {"shifted"}
    assert (
        obs.loc[(obs["condition"] == "shifted") & (obs["bulk_labels"] == SHIFTED), "shifted"]
    ).all()
    delta = np.asarray(a.uns["cohort"]["shift_pca"])
    x = np.asarray(a.obsm["X_pca"], dtype=np.float64)
    orig = np.asarray(src.obsm["X_pca"], dtype=np.float64)[obs["cell_index"].to_numpy()]
    np.testing.assert_allclose(x - orig, moved[:, None] * delta[None, :], atol=1e-5)
    # the direction is the type's own first principal axis, 2 sd long
    xt = np.asarray(src.obsm["X_pca"], dtype=np.float64)[src.obs["bulk_labels"] == SHIFTED]
    sd = (xt - xt.mean(0)) @ np.asarray(a.uns["cohort"]["direction_vector"])
    np.testing.assert_allclose(np.linalg.norm(delta), 2.0 * sd.std(ddof=1), rtol=1e-6)
    assert sd.var() >= 0.99 * np.linalg.eigvalsh(np.cov(xt.T)).max()


def test_state_shift_beats_pylot_and_reads_back_the_type(src):
    a, emb = lot_cohort(src, shift=1.5, seed=0)
    res = run_classify(a, emb, n_permutations=39)
    m = res.metrics.set_index("features")
    lot = float(m.loc["lot", "balanced_accuracy"])
    peer = pylot_style(a, emb, seed=0)
    assert lot >= peer + 0.05, (lot, peer)
    assert lot >= 0.8
    # composition carries no signal here
    assert m.loc["composition", "balanced_accuracy"] < lot
    # permutation test: a real shift is significant (smallest possible p is 1/40)
    assert m.loc["lot", "p_value"] < 0.05, m.loc["lot", "p_value"]
    assert res.info["permutation_null"].shape == (39,)
    lo, hi = m.loc["lot", ["balanced_accuracy_ci_low", "balanced_accuracy_ci_high"]]
    assert lo <= lot <= hi
    # read-back: the heaviest reference points transport to the shifted cell type
    top = res.points.head(5)
    votes = top.groupby(top["celltype"].astype(str))["weight_share"].sum()
    assert votes.idxmax() == SHIFTED, top[["ref_point", "weight_share", "celltype"]]
    # and their weights point along the shift (the moved direction), not across it
    u = np.asarray(a.uns["cohort"]["direction_vector"])
    k, d = np.asarray(emb.uns["lot"]["reference"]).shape
    w = res.weights[0][top["ref_point"].to_numpy()[0]]
    assert abs(w @ u) / np.linalg.norm(w) > 0.5


def test_null_cohort_is_not_significant(src):
    a, emb = lot_cohort(src, shift=0.0, seed=0)
    res = run_classify(a, emb, n_permutations=39)
    m = res.metrics.set_index("features")
    assert m.loc["lot", "p_value"] > 0.05, m.loc["lot", "p_value"]
    assert m.loc["lot", "balanced_accuracy"] < 0.75


def test_stratified_reference_gives_every_type_points(src):
    a = L.state_shift_cohort(n_samples=8, n_cells=150, shift=1.0, seed=1, source=src)
    kw = dict(sample_key="donor", use_rep="X_pca", size=48, seed=0)
    ref = L.reference(a, **kw, celltype_key="bulk_labels", stratify=True)
    p = ref.uns["lot_reference"]
    assert p["params"]["stratify"] and p["params"]["celltype_key"] == "bulk_labels"
    assert ref.n_obs == 48
    np.testing.assert_allclose(ref.obs["weight"].sum(), 1.0)
    # every type is named by >= min_points support points (k-means inside each type) ...
    counts = ref.obs["bulk_labels"].astype(str).value_counts()
    types = sorted(set(a.obs["bulk_labels"].astype(str)))
    assert all(counts.get(t, 0) >= p["params"]["min_points"] for t in types), counts
    # ... where a plain k-means reference of the same size leaves small types short
    plain = L.reference(a, **kw)
    plain_counts = (
        L.reference(a, **kw, celltype_key="bulk_labels")
        .obs["bulk_labels"]
        .astype(str)
        .value_counts()
    )
    assert not plain.uns["lot_reference"]["params"]["stratify"]
    assert min(plain_counts.get(t, 0) for t in types) < p["params"]["min_points"], plain_counts
