"""LOT embedding on the real pbmc cohort: agreement with POT, W2, translations, barycenters."""

from __future__ import annotations

import numpy as np
import ot
import pytest
from scipy.stats import spearmanr

import otbio.lot as L
from otbio import InputError

SHIFTED = "CD14+ Monocyte"


def _clouds(cohort):
    s = L._format.collect_samples([cohort], sample_key="donor", use_rep="X_pca")
    return s


def test_cohort_file_equals_rebuild(cohort):
    fresh = L.pbmc_cohort()
    assert cohort.n_obs == fresh.n_obs and 7000 < cohort.n_obs < 8500
    assert list(cohort.obs_names) == list(fresh.obs_names)
    for col in ["donor", "condition", "bulk_labels", "cell_index"]:
        assert (
            cohort.obs[col].astype(str).to_numpy() == fresh.obs[col].astype(str).to_numpy()
        ).all()
    np.testing.assert_array_equal(cohort.obsm["X_pca"], fresh.obsm["X_pca"])
    np.testing.assert_array_equal(cohort.obsm["X_umap"], fresh.obsm["X_umap"])
    np.testing.assert_array_equal(cohort.varm["PCs"], fresh.varm["PCs"])
    assert list(cohort.var_names) == list(fresh.var_names)
    # the design: 24 donors, half shifted, with a raised share of the shifted cell type
    per = cohort.obs.groupby("donor", observed=True)
    assert per.ngroups == 24
    share = per["bulk_labels"].apply(lambda s: (s == SHIFTED).mean())
    cond = per["condition"].first().astype(str)
    assert (cond == "shifted").sum() == 12
    assert share[cond == "shifted"].min() > share[cond == "control"].max()


def test_reference_format(ref, cohort):
    p = ref.uns["lot_reference"]
    assert ref.X.shape == (128, 50)
    np.testing.assert_allclose(ref.obs["weight"].sum(), 1.0)
    assert (ref.obs["weight"] > 0).all()
    assert p["reference_id"] == L.reference_id(ref.X, ref.obs["weight"].to_numpy())
    assert p["params"]["method"] == "kmeans" and p["params"]["use_rep"] == "X_pca"
    assert p["n_samples"] == 24
    # only the genes with finite PCA loadings (309 of 765; the others are outside the PCA)
    ok = np.isfinite(np.asarray(cohort.varm["PCs"])).all(1)
    assert p["loadings"].shape == (int(ok.sum()), 50) and np.isfinite(p["loadings"]).all()
    assert list(p["genes"]) == list(cohort.var_names[ok])
    assert list(ref.var_names)[:2] == ["X_pca_1", "X_pca_2"]


def test_exact_equals_pot(emb, ref, cohort):
    """Exact mode equals ot.emd + barycentric projection, to 1e-8."""
    s = _clouds(cohort)
    z = np.asarray(ref.X, dtype=np.float64)
    r = ref.obs["weight"].to_numpy()
    r = r / r.sum()
    for i in [0, 1, 7, 23]:
        x, w = s.points[i], s.weights[i]
        plan = ot.emd(r, w, ot.dist(z, x))
        t = plan @ x / r[:, None]
        v = ((t - z) * np.sqrt(r)[:, None]).ravel()
        row = list(emb.obs_names).index(s.ids[i])
        np.testing.assert_allclose(emb.X[row], v, rtol=0, atol=1e-8)
    assert emb.obs["lot_converged"].all()
    assert emb.X.shape == (24, 128 * 50)
    assert list(emb.obs.columns[:2]) == ["condition", "n_cells"]
    u = emb.uns["lot"]
    assert u["reference_id"] == ref.uns["lot_reference"]["reference_id"]
    assert u["params"]["solver"] == "exact" and u["reference"].shape == (128, 50)
    assert list(u["convergence"]["sample"]) == list(emb.obs_names)


def test_exact_equals_pot_on_large_samples(ref, cohort):
    """Samples of ~4,000 cells (the two conditions pooled): 128 x 4,000 cost entries take
    the sparse column-generation solver, still equal to ot.emd + projection to 1e-8."""
    import otbio.ot as O

    emb2 = L.embed(cohort, ref, sample_key="condition", jobs=2, progress=False)
    s = L._format.collect_samples([cohort], sample_key="condition", use_rep="X_pca")
    z = np.asarray(ref.X, dtype=np.float64)
    r = ref.obs["weight"].to_numpy()
    r = r / r.sum()
    for i, name in enumerate(s.ids):
        x, w = s.points[i], s.weights[i]
        assert O.emd(z, x, r, w).method == "sparse"
        plan = ot.emd(r, w, ot.dist(z, x))
        v = (((plan @ x) / r[:, None] - z) * np.sqrt(r)[:, None]).ravel()
        row = list(emb2.obs_names).index(name)
        np.testing.assert_allclose(emb2.X[row], v, rtol=0, atol=1e-8)
    assert emb2.obs["lot_converged"].all()


def test_lot_distance_tracks_exact_w2(emb, cohort):
    """Spearman correlation of LOT distances with exact W2 between samples >= 0.95."""
    s = _clouds(cohort)
    order = [list(s.ids).index(i) for i in emb.obs_names]
    clouds = [(s.points[i], s.weights[i]) for i in order]
    w2 = L.exact_w2_matrix(clouds, jobs=2)
    lot = L.distance_matrix(L.embedding_arrays(emb)[0])
    iu = np.triu_indices(len(clouds), 1)
    rho = spearmanr(lot[iu], w2[iu]).statistic
    assert rho >= 0.95, rho
    # the LOT distance approximates W2 from below here (projection shrinks the sample)
    assert np.median(lot[iu] / w2[iu]) > 0.7


def test_translation_gives_translated_embedding(ref, cohort):
    s = _clouds(cohort)
    z = np.asarray(ref.X, dtype=np.float64)
    r = ref.obs["weight"].to_numpy() / ref.obs["weight"].sum()
    x, w = s.points[3], s.weights[3]
    shift = np.linspace(-2.0, 3.0, x.shape[1])
    t, _ = L.embed_arrays(z, r, [x, x + shift], [w, w], progress=False)
    v0, v1 = (L.lot_vector(ti, z, r) for ti in t)
    expected = v0 + (np.sqrt(r)[:, None] * shift[None, :]).ravel()
    np.testing.assert_allclose(v1, expected, rtol=0, atol=1e-9)
    lot = np.linalg.norm(v1 - v0)
    np.testing.assert_allclose(lot, np.linalg.norm(shift), rtol=1e-10)
    # and back to a point cloud: z + v / sqrt(r) is the projected sample
    pts, mass = L.to_cloud(v1, z, r)
    np.testing.assert_allclose(pts, t[1], atol=1e-9)
    np.testing.assert_allclose(mass, r)


def test_group_barycenter_has_more_shifted_type(emb, cohort):
    from scipy.spatial import cKDTree

    bary = L.barycenter(emb, groupby="condition")
    assert set(bary.obs["group"].astype(str)) == {"control", "shifted"}
    assert bary.X.shape[1] == 50 and "X_pca" in bary.obsm
    tree = cKDTree(cohort.obsm["X_pca"])
    labels = cohort.obs["bulk_labels"].astype(str).to_numpy()
    share = {}
    for g in ["control", "shifted"]:
        sel = (bary.obs["group"] == g).to_numpy()
        np.testing.assert_allclose(bary.obs["weight"][sel].sum(), 1.0)
        _, near = tree.query(bary.X[sel])
        share[g] = float(bary.obs["weight"][sel].to_numpy()[labels[near] == SHIFTED].sum())
    assert share["shifted"] > share["control"] + 0.1, share
    assert 0.3 < share["shifted"] < 0.5 and 0.1 < share["control"] < 0.25


def test_barycenter_resample_and_exact(emb, cohort):
    sub = emb[emb.obs_names.isin(["donor01", "donor02", "donor03", "donor04"])].copy()
    out = L.barycenter(
        sub, groupby="condition", n_cells=50, exact=True, cells=cohort, max_iter=5, seed=1
    )
    assert out.n_obs == 2 * 2 * 50
    assert set(out.obs["method"].astype(str)) == {"lot", "exact"}
    gap = out.uns["lot_barycenter"]["w2_lot_to_exact"]
    spread = np.sqrt(emb.obs["lot_cost"].median())  # W2 from the reference to a sample
    assert gap.shape == (2,) and (gap > 0).all() and (gap < 0.5 * spread).all(), (gap, spread)
    again = L.barycenter(
        sub, groupby="condition", n_cells=50, exact=True, cells=cohort, max_iter=5, seed=1
    )
    np.testing.assert_array_equal(out.X, again.X)
    with pytest.raises(InputError, match="pass `cells`"):
        L.barycenter(sub, groupby="condition", exact=True)


def test_raw_map_roundtrip(ref, cohort, emb):
    raw = L.embed(
        cohort, ref, sample_key="donor", samples=["donor05"], raw_map=True, progress=False
    )
    v, z, r = L.embedding_arrays(raw)
    np.testing.assert_allclose(v[0], emb[["donor05"]].X[0], atol=1e-12)
    pts, _ = L.to_cloud(raw.X[0], z, r, raw_map=True)
    np.testing.assert_allclose(pts, raw.X[0].reshape(z.shape))


def test_sinkhorn_mode_approaches_exact(ref, cohort, emb):
    sub = ["donor01", "donor02"]
    exact = emb[sub].X
    errs = []
    for eps in [0.05, 0.01]:
        e = L.embed(
            cohort,
            ref,
            sample_key="donor",
            samples=sub,
            solver="sinkhorn",
            epsilon=eps,
            tol=1e-4,
            progress=False,
        )
        assert e.obs["lot_converged"].all()
        assert e.uns["lot"]["params"]["solver"] == "sinkhorn"
        assert (e.uns["lot"]["epsilon_abs"] > 0).all()
        errs.append(np.linalg.norm(e.X - exact) / np.linalg.norm(exact))
    assert errs[1] < errs[0] < 0.6, errs


def test_concat_equals_one_embed(emb, cohort, ref):
    a = L.embed(cohort, ref, sample_key="donor", samples=["donor03", "donor01"], progress=False)
    b = L.embed(cohort, ref, sample_key="donor", samples=["donor10"], progress=False)
    joined = L.concat([a, b])
    assert list(joined.obs_names) == ["donor03", "donor01", "donor10"]
    np.testing.assert_array_equal(joined.X, emb[["donor03", "donor01", "donor10"]].X)
    assert list(joined.uns["lot"]["convergence"]["sample"]) == list(joined.obs_names)
    with pytest.raises(InputError, match="more than one shard"):
        L.concat([a, a])


def test_one_file_per_sample(cohort, ref, emb):
    parts = [cohort[cohort.obs["donor"] == d].copy() for d in ["donor02", "donor07"]]
    for p in parts:
        del p.obs["donor"]
    e = L.embed(parts, ref, sample_key=None, names=["donor02", "donor07"], progress=False)
    np.testing.assert_allclose(e.X, emb[["donor02", "donor07"]].X, atol=1e-12)


def test_vars_and_weights_equal_duplicated_cells(cohort):
    """Cell weights act like duplicated cells; --vars picks columns of X."""
    import anndata as ad
    import pandas as pd

    sub = cohort[cohort.obs["donor"].isin(["donor01", "donor02"])]
    x = np.asarray(sub.obsm["X_pca"][:, :6], dtype=np.float64)
    obs = pd.DataFrame({"donor": sub.obs["donor"].astype(str).to_numpy()}, index=sub.obs_names)
    dup = np.arange(0, x.shape[0], 3)  # every third cell counted twice
    w = np.ones(x.shape[0])
    w[dup] = 2.0
    a = ad.AnnData(X=x, obs=obs.assign(w=w), var=pd.DataFrame(index=[f"g{j}" for j in range(6)]))
    b = ad.AnnData(
        X=np.vstack([x, x[dup]]),
        obs=pd.concat([obs, obs.iloc[dup].set_axis([f"d{i}" for i in dup])]),
        var=a.var.copy(),
    )
    ref = L.reference(b, sample_key="donor", vars=["g0", "g2", "g5"], size=20, seed=3)
    assert list(ref.var_names) == ["g0", "g2", "g5"]
    ea = L.embed(a, ref, sample_key="donor", weight_key="w", progress=False)
    eb = L.embed(b, ref, sample_key="donor", progress=False)
    assert ea.X.shape == (2, 20 * 3) and ea.uns["lot"]["params"]["vars"] == ["g0", "g2", "g5"]
    np.testing.assert_allclose(ea.X, eb.X, atol=1e-10)


@pytest.mark.parametrize("solver", ["exact", "sinkhorn"])
def test_zero_weight_reference_point_stays_put(solver):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 3))
    r = np.array([0.2, 0.2, 0.0, 0.2, 0.2, 0.2])
    x = rng.normal(size=(40, 3)) + 1.0
    t, fits = L.embed_arrays(z, r, [x], solver=solver, epsilon=0.05, progress=False)
    assert np.isfinite(t).all() and fits[0].converged
    np.testing.assert_array_equal(t[0, 2], z[2])
    v = L.lot_vector(t[0], z, r)
    pts, _ = L.to_cloud(v, z, r)
    np.testing.assert_allclose(pts[r > 0], t[0][r > 0])
