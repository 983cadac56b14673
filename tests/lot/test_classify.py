"""`otbio classify` on the real pbmc cohort: CV accuracy, weights read back in cell space,
saved models that refuse another reference, and one-line input errors."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import otbio.lot as L
from otbio.cli import cli
from otbio.io import write_h5ad
from otbio.lot._classify import classify, load_model, predict

SHIFTED = "CD14+ Monocyte"  # the cell type whose share differs between the conditions


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_input_error(r, *paths, match=None):
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    if match:
        assert match in lines[0], lines[0]
    for p in paths:
        assert not p.exists(), p


@pytest.fixture(scope="module")
def res(emb, cohort):
    return classify(
        emb,
        groupby="condition",
        n_splits=5,
        n_repeats=2,
        n_permutations=19,
        seed=0,
        cells=cohort,
        celltype_key="bulk_labels",
        jobs=2,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, emb):
    d = tmp_path_factory.mktemp("classify")
    write_h5ad(emb, d / "emb.h5ad")
    return d


def test_cv_separates_the_conditions(res):
    m = res.metrics.set_index("features")
    assert list(m.index) == ["lot", "mean_rep", "composition"]
    assert m.loc["lot", "balanced_accuracy"] >= 0.9
    assert m.loc["lot", "roc_auc"] >= 0.9
    # 2 repeats x 5 folds for each feature set, on the same folds
    assert len(res.folds) == 3 * 10
    assert (res.folds.groupby("features").size() == 10).all()
    # every sample is predicted once per repeat
    assert res.confusion.to_numpy().sum() == 2 * 24
    # the choices are recorded: regularisation by nested CV per fold, scaling, permutations
    assert res.info["param_mode"] == "nested-cv" and res.info["scale"] == "mass"
    assert res.folds["n_features"].notna().all()
    assert set(res.folds["n_features"]) <= set(res.info["param_grid"]) | {128 * 50}
    assert m.loc["lot", "p_value"] == pytest.approx(1 / 20)  # the smallest possible
    assert np.isnan(m.loc["mean_rep", "p_value"])


def test_top_reference_points_transport_to_the_shifted_type(res):
    pts = res.points
    top = pts.head(10)
    n_top = int((top["celltype:shifted"] == SHIFTED).sum())
    assert n_top >= 8, top[["ref_point", "weight_norm", "celltype:shifted"]]
    # the same count over 10 reference points drawn at random is lower: the ranking matters
    rng = np.random.default_rng(0)
    rand = pts.iloc[rng.choice(len(pts), size=10, replace=False)]
    assert int((rand["celltype:shifted"] == SHIFTED).sum()) < n_top
    # the cell type whose share changes most between conditions, for the top points
    assert int((top["celltype_change"] == SHIFTED).sum()) >= 7


def test_wrong_read_back_fails_the_check(res, emb):
    """Reading the weight vector as (d, k) instead of (k, d) loses the monocyte points."""
    share = res.info["transport_shares"]  # (samples, k, types)
    types = np.asarray(res.info["types"], dtype=object)
    shifted = emb.obs["condition"].astype(str).to_numpy() == "shifted"
    maj = types[share[shifted].mean(0).argmax(1)]  # celltype:shifted per reference point
    k, d = np.asarray(emb.uns["lot"]["reference"]).shape
    w = res.model.coef_.ravel()
    right = np.argsort(-np.linalg.norm(w.reshape(k, d), axis=1))[:10]
    wrong = np.argsort(-np.linalg.norm(w.reshape(d, k).T, axis=1))[:10]
    assert int((maj[right] == SHIFTED).sum()) >= 8
    assert int((maj[wrong] == SHIFTED).sum()) < 8


def test_weights_are_read_back_per_reference_point(res, emb):
    k, d = np.asarray(emb.uns["lot"]["reference"]).shape
    w = res.weights
    assert w.shape == (1, k, d)
    np.testing.assert_allclose(w.ravel(), res.model.coef_.ravel())
    # the decision function on raw LOT vectors is linear with these weights
    v, _, _ = L.embedding_arrays(emb)
    np.testing.assert_allclose(
        res.model.decision_function(v), v @ w.ravel() + res.model.intercept_[0], atol=1e-8
    )
    # points are ranked by the weights on the scaled features (comparable across features)
    norms = np.linalg.norm(res.model.coef_scaled_.reshape(k, d), axis=1)
    np.testing.assert_allclose(res.points["weight_norm"], np.sort(norms)[::-1])
    np.testing.assert_allclose(norms[res.points["ref_point"]], res.points["weight_norm"])
    # positions are the reference support of each ranked point
    z = np.asarray(emb.uns["lot"]["reference"])
    np.testing.assert_allclose(res.points["z:X_pca_1"], z[res.points["ref_point"], 0])
    # genes through the PCA loadings: the monocyte markers lead
    genes = res.features[res.features["kind"] == "gene"]["feature"].head(15).tolist()
    assert {"LST1", "FCER1G", "TYROBP"} <= set(genes), genes


def test_mean_baseline_is_the_sample_mean(emb, cohort):
    """The mean-representation baseline read from the embedding equals the cells' mean."""
    v, z, r = L.embedding_arrays(emb)
    k, d = z.shape
    mean_rep = r @ z + (v.reshape(-1, k, d) * np.sqrt(r)[None, :, None]).sum(1)
    donor = cohort.obs["donor"].astype(str).to_numpy()
    for i, sid in enumerate(emb.obs_names[:3]):
        x = np.asarray(cohort.obsm["X_pca"][donor == sid], dtype=np.float64)
        np.testing.assert_allclose(mean_rep[i], x.mean(0), atol=1e-5)


@pytest.mark.parametrize("model", ["svm", "lda", "logistic-l1", "logistic-l2"])
def test_other_models(emb, model):
    r = classify(
        emb,
        groupby="condition",
        classifier=model,
        C=1.0,
        n_splits=3,
        n_repeats=1,
        n_permutations=0,
        seed=1,
    )
    assert r.info["param_mode"] == "given"
    assert r.metrics.set_index("features").loc["lot", "balanced_accuracy"] >= 0.9
    assert r.weights.shape[1:] == np.asarray(emb.uns["lot"]["reference"]).shape


def test_multiclass_ovr(emb):
    e = emb.copy()
    e.obs["group3"] = pd.Categorical(
        np.where(e.obs["condition"] == "control", (np.arange(e.n_obs) // 2) % 2, 2).astype(str)
    )
    r = classify(e, groupby="group3", n_splits=3, n_repeats=1, n_permutations=0, seed=0)
    assert r.classes == ["0", "1", "2"]
    assert r.weights.shape[0] == 3
    assert r.confusion.shape == (3, 3)
    assert np.isfinite(r.metrics["roc_auc"]).all()


def test_cli_writes_tables_figure_and_model(files, cohort_path, tmp_path):
    out = tmp_path / "cls"
    model = tmp_path / "m.joblib"
    r = run(
        [
            "classify",
            files / "emb.h5ad",
            "--groupby",
            "condition",
            "--cells",
            cohort_path,
            "--celltype-key",
            "bulk_labels",
            "--n-repeats",
            1,
            "--n-permutations",
            9,
            "--save-model",
            model,
            "-o",
            out,
        ]
    )
    assert r.exit_code == 0, r.output
    # the summary line: interval over repeats, p-value, what was chosen
    assert "p=0.1 (9 permutations)" in r.stderr and "by nested CV" in r.stderr, r.stderr
    assert "top reference points: CD14+ Monocyte" in r.stderr, r.stderr
    for name in (
        "metrics.tsv",
        "folds.tsv",
        "confusion.tsv",
        "cv_predictions.tsv",
        "reference_points.tsv",
        "features.tsv",
        "weights.npy",
        "classify.png",
    ):
        assert (out / name).stat().st_size > 0, name
    m = pd.read_csv(out / "metrics.tsv", sep="\t").set_index("features")
    assert m.loc["lot", "balanced_accuracy"] >= 0.9
    bundle = load_model(model)
    assert bundle["reference_id"] == L.reference_id(*L.embedding_arrays(joblib_emb(files))[1:])
    pred = tmp_path / "pred"
    r = run(["classify", "--predict", files / "emb.h5ad", "--load-model", model, "-o", pred])
    assert r.exit_code == 0, r.output
    p = pd.read_csv(pred / "predictions.tsv", sep="\t")
    assert (p["predicted"] == p["label"]).mean() == 1.0


def joblib_emb(files):
    from otbio.io import read_h5ad

    return read_h5ad(files / "emb.h5ad")


def test_predict_refuses_another_reference(res, cohort, tmp_path):
    other_ref = L.reference(cohort, sample_key="donor", use_rep="X_pca", size=32, seed=3)
    other = L.embed(
        cohort, other_ref, sample_key="donor", samples=["donor01", "donor02"], progress=False
    )
    from otbio.lot._classify import model_bundle

    with pytest.raises(ValueError, match="another|reference"):
        predict(other, model_bundle(res))
    model = tmp_path / "m.joblib"
    joblib.dump(model_bundle(res), model)
    write_h5ad(other, tmp_path / "other.h5ad")
    out = tmp_path / "pred"
    r = run(["classify", "--predict", tmp_path / "other.h5ad", "--load-model", model, "-o", out])
    assert_input_error(r, out, match="reference")


def test_label_varying_within_a_sample(files, cohort_path, tmp_path):
    out = tmp_path / "cls"
    r = run(
        [
            "classify",
            files / "emb.h5ad",
            "--groupby",
            "bulk_labels",
            "--cells",
            cohort_path,
            "-o",
            out,
        ]
    )
    assert_input_error(r, out, match="varies within sample")
    r = run(["classify", files / "emb.h5ad", "--groupby", "bulk_labels", "-o", out])
    assert_input_error(r, out, match="constant within each sample")


def test_class_with_fewer_samples_than_folds(files, tmp_path):
    out = tmp_path / "cls"
    model = tmp_path / "m.joblib"
    r = run(
        [
            "classify",
            files / "emb.h5ad",
            "--groupby",
            "condition",
            "--n-splits",
            13,
            "--save-model",
            model,
            "-o",
            out,
        ]
    )
    assert_input_error(r, out, model, match="fewer than --n-splits = 13")


def test_bad_model_file(files, tmp_path):
    bad = tmp_path / "m.joblib"
    bad.write_text("not a model")
    out = tmp_path / "pred"
    r = run(["classify", "--predict", files / "emb.h5ad", "--load-model", bad, "-o", out])
    assert_input_error(r, out)


def test_predict_gives_probabilities_where_the_model_has_them(emb):
    """A logistic model adds probability:<class> columns that agree with the prediction."""
    from otbio.lot._classify import model_bundle

    fit = classify(emb, groupby="condition", classifier="logistic-l2", n_splits=3, n_repeats=1,
                   n_permutations=0, seed=0)  # fmt: skip
    p = predict(emb, model_bundle(fit))
    cols = [f"probability:{c}" for c in fit.classes]
    assert set(cols) <= set(p.columns)
    np.testing.assert_allclose(p[cols].sum(1), 1.0, rtol=1e-9)
    best = np.asarray(fit.classes)[p[cols].to_numpy().argmax(1)]
    assert (best == p["predicted"].to_numpy()).all()
    # the sign of the decision value says the same as the probabilities
    score = p[f"score:{fit.classes[1]}"].to_numpy()
    assert ((score > 0) == (p[cols[1]].to_numpy() > 0.5)).all()
