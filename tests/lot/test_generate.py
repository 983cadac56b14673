"""`otbio generate` on the real pbmc cohort: synthetic samples re-embedded from their cells
lie within their group's spread; paths end at the group barycenters; bad weights fail."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import otbio.lot as L
from otbio.cli import cli
from otbio.io import read_h5ad, write_h5ad
from otbio.lot._generate import check_synthetic, generate


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def synth(emb):
    return generate(emb, groupby="condition", n_samples=3, n_cells=2000, seed=0)


def test_reembedded_synthetic_samples_lie_within_their_group(synth, emb, ref):
    assert synth.n_obs == 2 * 3 * 2000
    assert set(synth.obs["source_group"]) == {"control", "shifted"}
    # embed the synthetic cells again with the embedding API, against the same reference
    re = L.embed(synth, ref, sample_key="donor", progress=False)
    v, _, _ = L.embedding_arrays(emb)
    v_re, _, _ = L.embedding_arrays(re)
    grp = emb.obs["condition"].astype(str).to_numpy()
    src = synth.obs.groupby("synthetic_sample", observed=True)["source_group"].first()
    for i, name in enumerate(re.obs_names):
        g = str(src[name])
        real = v[grp == g]
        bary = real.mean(0)
        median = np.median(np.linalg.norm(real - bary, axis=1))
        assert np.linalg.norm(v_re[i] - bary) < median, (name, g)
    # the check table says the same
    table = check_synthetic(emb, synth)
    assert table["reembedded_inside"].all() and table["inside"].all()
    assert (table["lot_to_nearest"] > 0).all()
    w = np.asarray(synth.uns["lot_generate"]["weights"])
    np.testing.assert_allclose(w.sum(1), 1.0)
    # Dirichlet weights only on the samples of the source group
    src_rows = np.asarray(synth.uns["lot_generate"]["source_group"])
    assert ((w > 0) == (src_rows[:, None] == grp[None, :])).all()


def test_between_path_ends_at_the_group_barycenters(emb):
    path = generate(emb, groupby="condition", between=("control", "shifted"), steps=3, n_cells=0)
    bary = L.barycenter(emb, groupby="condition")
    x = path.obsm["X_pca"]
    names = path.obs["synthetic_sample"].astype(str).to_numpy()
    first, last = (
        path.uns["lot_generate"]["synthetic"][0],
        path.uns["lot_generate"]["synthetic"][-1],
    )
    for name, g in ((first, "control"), (last, "shifted")):
        np.testing.assert_allclose(x[names == name], np.asarray(bary.X)[bary.obs["group"] == g])
    np.testing.assert_allclose(path.uns["lot_generate"]["t"], [0.0, 0.5, 1.0])


def test_explicit_weights_and_genes(emb):
    ids = list(emb.obs_names[:2])
    out = generate(emb, weights=[{ids[0]: 0.25, ids[1]: 0.75}], n_cells=0, to_genes=True)
    v, z, r = L.embedding_arrays(emb)
    pts, _ = L.to_cloud(0.25 * v[0] + 0.75 * v[1], z, r)
    np.testing.assert_allclose(out.obsm["X_pca"], pts)
    np.testing.assert_allclose(out.X, pts @ np.asarray(emb.uns["lot"]["loadings"]).T)
    assert out.var["reconstructed"].all() and out.uns["lot_generate"]["reconstructed"]
    assert out.n_vars == len(emb.uns["lot"]["genes"])


def test_cli_generate_and_check(emb, tmp_path):
    write_h5ad(emb, tmp_path / "emb.h5ad")
    out, chk = tmp_path / "synth.h5ad", tmp_path / "check.tsv"
    args = ["generate", tmp_path / "emb.h5ad", "--groupby", "condition", "--n-samples", 2]
    r = run([*args, "--n-cells", 500, "--save-check", chk, "-o", out])
    assert r.exit_code == 0, r.output
    s = read_h5ad(out)
    assert s.n_obs == 2 * 2 * 500
    assert {"synthetic_sample", "source_group", "donor", "condition"} <= set(s.obs)
    assert chk.read_text().startswith("synthetic_sample\tsource_group\tnearest_real")
    # same seed, same output
    out2 = tmp_path / "synth2.h5ad"
    assert run([*args, "--n-cells", 500, "-o", out2]).exit_code == 0
    np.testing.assert_array_equal(read_h5ad(out2).obsm["X_pca"], s.obsm["X_pca"])


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--weights", "donor01=0.5,donor02=0.4"], "not 1"),
        (["--weights", "donor01=1.5,donor02=-0.5"], ">= 0"),
        (["--weights", "nobody=1"], "not in the embedding"),
        (["--groupby", "condition", "--between", "control", "nope"], "not found"),
        (["--groupby", "missing"], "not found"),
    ],
)
def test_bad_input_one_line(emb, tmp_path, extra, match):
    write_h5ad(emb, tmp_path / "emb.h5ad")
    out, chk = tmp_path / "synth.h5ad", tmp_path / "check.tsv"
    r = run(["generate", tmp_path / "emb.h5ad", *extra, "--save-check", chk, "-o", out])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and match in lines[0], r.stderr
    assert not out.exists() and not chk.exists()
