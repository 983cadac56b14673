"""The AnnData contract of the LOT tools: parameters under uns[key]['params'], results beside
them, and files written before the contract (test_data/lot_legacy/, made by otbio 0.1.0
with the parameters flat in uns[key]) still read, with the same numbers."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner

import otbio.lot as L
from otbio._contract import clean_params, with_params
from otbio.cli import cli
from otbio.lot._format import embedding_entry

DONORS = ["donor01", "donor02", "donor03", "donor04"]
# the calls that made test_data/lot_legacy/ (see test_data/README.md)
REF_KW = dict(sample_key="donor", use_rep="X_pca", size=16, seed=0, celltype_key="bulk_labels")
GEN_KW = dict(groupby="condition", n_samples=2, n_cells=30, seed=0)


@pytest.fixture(scope="module")
def legacy(test_data):
    d = test_data / "lot_legacy"
    return {n: ad.read_h5ad(d / f"{n}.h5ad") for n in ("reference", "embedding", "synthetic")}


@pytest.fixture(scope="module")
def sub(cohort):
    return cohort[cohort.obs["donor"].isin(DONORS)].copy()


@pytest.fixture(scope="module")
def new(sub):
    ref = L.reference(sub, **REF_KW)
    emb = L.embed(sub, ref, sample_key="donor")
    return {"reference": ref, "embedding": emb, "synthetic": L.generate(emb, **GEN_KW)}


def _roundtrip(a, tmp_path, name):
    a.write_h5ad(tmp_path / f"{name}.h5ad")
    return ad.read_h5ad(tmp_path / f"{name}.h5ad")


def _check_params(entry, expect, flat_absent):
    """params present, plain Python (JSON), holding ``expect``; no parameter left flat."""
    p = entry["params"]
    json.dumps(p)
    assert clean_params(p) == p
    for k, v in expect.items():
        assert p[k] == v, (k, p.get(k), v)
    assert not set(flat_absent) & set(entry), set(flat_absent) & set(entry)


def test_writers_put_their_parameters_under_params(new, sub, tmp_path):
    ref, emb, syn = new["reference"], new["embedding"], new["synthetic"]
    _check_params(
        ref.uns["lot_reference"],
        {"method": "kmeans", "size": 16, "use_rep": "X_pca", "sample_key": "donor", "seed": 0,
         "celltype_key": "bulk_labels", "stratify": False},
        ["method", "size", "use_rep", "sample_key", "seed", "stratified_by"],
    )  # fmt: skip
    assert ref.uns["lot_reference"]["n_samples"] == 4
    flat_emb = ["use_rep", "vars", "sample_key", "solver", "epsilon", "tol", "raw_map"]
    _check_params(
        emb.uns["lot"],
        {"solver": "exact", "use_rep": "X_pca", "sample_key": "donor", "raw_map": False},
        flat_emb,
    )
    assert "epsilon" not in emb.uns["lot"]["params"]  # exact: no entropic parameters
    assert emb.uns["lot"]["reference_params"] == ref.uns["lot_reference"]["params"]
    sk = L.embed(sub, ref, sample_key="donor", samples=DONORS[:2], solver="sinkhorn",
                 epsilon=0.02, raw_map=True)  # fmt: skip
    _check_params(
        sk.uns["lot"],
        {"solver": "sinkhorn", "epsilon": 0.02, "relative_epsilon": "mean", "raw_map": True},
        flat_emb,
    )
    bary = L.barycenter(emb, groupby="condition", n_cells=50, seed=3)
    _check_params(
        bary.uns["lot_barycenter"],
        {"groupby": "condition", "n_cells": 50, "seed": 3, "exact": False},
        ["groupby", "n_cells", "exact", "weights"],
    )
    _check_params(
        syn.uns["lot_generate"],
        {"groupby": "condition", "n_samples": 2, "n_cells": 30, "alpha": 1.0, "seed": 0},
        ["alpha", "seed", "n_cells", "groupby", "use_rep"],
    )
    assert syn.uns["lot_generate"]["rep_key"] == "X_pca" and "X_pca" in syn.obsm
    path = L.generate(emb, groupby="condition", between=("control", "shifted"), steps=3)
    p = path.uns["lot_generate"]["params"]
    assert p["between"] == ["control", "shifted"] and p["steps"] == 3 and "alpha" not in p
    # what is written reads back the same
    for a, key in ((ref, "lot_reference"), (emb, "lot"), (bary, "lot_barycenter"),
                   (syn, "lot_generate")):  # fmt: skip
        back = _roundtrip(a, tmp_path, key).uns[key]["params"]
        assert clean_params(back) == a.uns[key]["params"], key


def test_cohort_params(cohort):
    """The cohort builders record their arguments under params; the bundled file (flat,
    written earlier) reads back with the same arguments as a rebuild."""
    fresh = L.pbmc_cohort(n_samples=2)
    p = fresh.uns["cohort"]["params"]
    assert p["n_samples"] == 2 and p["shifted_type"] == "CD14+ Monocyte" and p["seed"] == 0
    json.dumps(p)
    old = with_params(cohort.uns["cohort"], ["n_samples", "min_cells", "max_cells",
                                             "shifted_type", "shifted_share", "seed"])  # fmt: skip
    assert clean_params(old["params"]) == {**p, "n_samples": 24}


def test_legacy_reference_and_embedding_read_with_the_same_numbers(legacy, new, sub):
    lref, lemb = legacy["reference"], legacy["embedding"]
    ref, emb = new["reference"], new["embedding"]
    # the files hold the old layout (else this test proves nothing)
    assert "params" not in lref.uns["lot_reference"] and "params" not in lemb.uns["lot"]
    assert lemb.uns["lot"]["solver"] == "exact" and lemb.uns["lot"]["epsilon"] == 0.0
    np.testing.assert_array_equal(ref.X, lref.X)  # same reference, same writer numbers
    e = embedding_entry(lemb)
    assert e["params"] == embedding_entry(emb)["params"]
    rp = e["reference_params"]
    assert rp["method"] == "kmeans" and rp["use_rep"] == "X_pca" and rp["size"] == 16
    # embedding against an old reference: use_rep comes from its flat parameters
    again = L.embed(sub, lref, sample_key="donor")
    np.testing.assert_allclose(again.X, lemb.X, atol=1e-10)
    assert again.uns["lot"]["params"]["use_rep"] == "X_pca"
    # every reader of embeddings
    for fn in (L.embedding_arrays,):
        for a, b in zip(fn(lemb), fn(emb)):
            np.testing.assert_allclose(a, b, atol=1e-10)
    b_old = L.barycenter(lemb, groupby="condition")
    b_new = L.barycenter(emb, groupby="condition")
    np.testing.assert_allclose(b_old.X, b_new.X, atol=1e-10)
    assert "X_pca" in b_old.obsm
    d_old = L.distances(lemb, exact=True, cells=sub)
    d_new = L.distances(emb, exact=True, cells=sub)
    np.testing.assert_allclose(d_old[["lot", "exact_w2"]], d_new[["lot", "exact_w2"]], atol=1e-8)


def test_legacy_synthetic_and_concat(legacy, new, cohort):
    lemb, lsyn = legacy["embedding"], legacy["synthetic"]
    emb, syn = new["embedding"], new["synthetic"]
    assert "params" not in lsyn.uns["lot_generate"]
    np.testing.assert_allclose(L.generate(lemb, **GEN_KW).X, lsyn.X, atol=1e-10)
    np.testing.assert_allclose(syn.X, lsyn.X, atol=1e-10)
    c_old = L.check_synthetic(lemb, lsyn)
    c_new = L.check_synthetic(emb, syn)
    cols = ["lot_to_nearest", "lot_to_barycenter", "reembed_error"]
    np.testing.assert_allclose(c_old[cols], c_new[cols], atol=1e-8)
    # a shard written earlier joins a new shard embedded against the same reference file
    more = L.embed(cohort, legacy["reference"], sample_key="donor", samples=["donor05"])
    joined = L.concat([lemb, more])
    assert list(joined.obs_names) == [*DONORS, "donor05"]
    u = joined.uns["lot"]
    assert "solver" not in u and u["params"]["solver"] == "exact"
    assert list(u["convergence"]["sample"]) == list(joined.obs_names)
    sk = L.embed(cohort, legacy["reference"], sample_key="donor", samples=["donor06"],
                 solver="sinkhorn")  # fmt: skip
    with pytest.raises(ValueError, match="solver='sinkhorn'"):
        L.concat([lemb, sk])


def test_cli_reads_legacy_embedding(test_data, tmp_path):
    out = tmp_path / "b.h5ad"
    emb = str(test_data / "lot_legacy" / "embedding.h5ad")
    r = CliRunner().invoke(cli, ["barycenter", emb, "--groupby", "condition", "-o", str(out)])
    assert r.exit_code == 0, r.output
    b = ad.read_h5ad(out)
    assert b.uns["lot_barycenter"]["params"]["groupby"] == "condition"
    assert list(b.uns["lot_barycenter"]["groups"]) == ["control", "shifted"]
