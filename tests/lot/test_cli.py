"""The LOT commands end to end on the pbmc cohort, and their one-line input errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from otbio.cli import cli

DONORS = ["donor01", "donor02", "donor03", "donor04", "donor05", "donor06"]


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_input_error(r, out, match=None):
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    if match:
        assert match in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))


@pytest.fixture(scope="module")
def small(tmp_path_factory, cohort):
    """Six donors of the cohort, a reference and an embedding made with the CLI."""
    d = tmp_path_factory.mktemp("lotcli")
    cells = d / "cells.h5ad"
    sub = cohort[cohort.obs["donor"].isin(DONORS)].copy()
    sub.obs["donor"] = sub.obs["donor"].cat.remove_unused_categories()
    sub.write_h5ad(cells)
    ref = d / "ref.h5ad"
    r = run(
        [
            "reference",
            cells,
            "--sample-key",
            "donor",
            "--use-rep",
            "X_pca",
            "--method",
            "kmeans",
            "--size",
            48,
            "--celltype-key",
            "bulk_labels",
            "-o",
            ref,
        ]
    )
    assert r.exit_code == 0, r.output
    emb = d / "emb.h5ad"
    r = run(
        [
            "--jobs",
            2,
            "embed",
            cells,
            "--sample-key",
            "donor",
            "--reference",
            ref,
            "-o",
            emb,
            "--plot",
            d / "emb.png",
            "--color-key",
            "condition",
        ]
    )
    assert r.exit_code == 0, r.output
    return {"dir": d, "cells": cells, "ref": ref, "emb": emb, "sub": sub, "progress": r.stderr}


def test_outputs_open_in_scanpy(small):
    import scanpy as sc

    ref = sc.read_h5ad(small["ref"])
    assert ref.X.shape == (48, 50) and "bulk_labels" in ref.obs
    emb = sc.read_h5ad(small["emb"])
    assert emb.shape == (6, 48 * 50)
    assert list(emb.obs_names) == DONORS
    assert emb.uns["lot"]["reference_id"] == ref.uns["lot_reference"]["reference_id"]
    labels = emb.uns["lot"]["reference_labels"]["bulk_labels"]
    assert list(labels) == list(ref.obs["bulk_labels"].astype(str))
    assert (small["dir"] / "emb.png").stat().st_size > 1000
    assert "embedding (exact)" in small["progress"]


def test_sharded_embed_concat_equals_one_embed(small):
    d = small["dir"]
    s1, s2, joined = d / "s1.h5ad", d / "s2.h5ad", d / "joined.h5ad"
    base = ["embed", small["cells"], "--sample-key", "donor", "--reference", small["ref"]]
    assert (
        run([*base, "--samples", "donor01,donor02", "--samples", "donor03", "-o", s1]).exit_code
        == 0
    )
    assert run(["--quiet", *base, "--samples", "donor04,donor05,donor06", "-o", s2]).exit_code == 0
    r = run(["concat", s1, s2, "-o", joined])
    assert r.exit_code == 0, r.output
    a, b = ad.read_h5ad(joined), ad.read_h5ad(small["emb"])
    assert list(a.obs_names) == list(b.obs_names)
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_frame_equal(a.obs, b.obs)


def test_barycenter_and_distances(small):
    d = small["dir"]
    bary, dist = d / "bary.h5ad", d / "dist.tsv"
    r = run(["barycenter", small["emb"], "--groupby", "condition", "--n-cells", 100, "-o", bary])
    assert r.exit_code == 0, r.output
    b = ad.read_h5ad(bary)
    assert b.n_obs == 200 and list(b.obs["group"].cat.categories) == ["control", "shifted"]
    r = run(["distances", small["emb"], "--exact", "--cells", small["cells"], "-o", dist])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(dist, sep="\t")
    assert list(df.columns) == ["sample_a", "sample_b", "lot", "exact_w2"] and len(df) == 15
    assert (df["lot"] > 0).all() and (df["lot"] <= df["exact_w2"] * 1.05).all()


def test_same_seed_same_output(small):
    d = small["dir"]
    outs = []
    for i, seed in enumerate([7, 7, 8]):
        out = d / f"ref_seed{i}.h5ad"
        r = run(
            [
                "--seed",
                seed,
                "reference",
                small["cells"],
                "--sample-key",
                "donor",
                "--use-rep",
                "X_pca",
                "--method",
                "sample",
                "--size",
                40,
                "-o",
                out,
            ]
        )
        assert r.exit_code == 0, r.output
        outs.append(ad.read_h5ad(out).X)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("method", ["barycenter", "gaussian"])
def test_other_reference_methods(small, method):
    out = small["dir"] / f"ref_{method}.h5ad"
    r = run(
        [
            "reference",
            small["cells"],
            "--sample-key",
            "donor",
            "--use-rep",
            "X_pca",
            "--method",
            method,
            "--size",
            32,
            "--max-iter",
            3,
            "-o",
            out,
        ]
    )
    assert r.exit_code == 0, r.output
    ref = ad.read_h5ad(out)
    assert ref.X.shape == (32, 50) and ref.uns["lot_reference"]["params"]["method"] == method


def _bad_cells(small, name, edit):
    a = small["sub"].copy()
    edit(a)
    path = small["dir"] / name
    a.write_h5ad(path)
    return path


def test_input_errors(small):
    d = small["dir"]
    out = d / "never.h5ad"
    cells, ref = small["cells"], small["ref"]
    emb = ["embed", "--reference", ref, "-o", out]

    # missing sample key
    assert_input_error(run([*emb, cells, "--sample-key", "patient"]), out, "'patient' not found")

    # a sample with no cells (an empty category)
    def add_empty(a):
        a.obs["donor"] = a.obs["donor"].cat.add_categories(["donor99"])

    p = _bad_cells(small, "empty.h5ad", add_empty)
    assert_input_error(run([*emb, p, "--sample-key", "donor"]), out, "no cells")

    # a sample whose weights sum to zero
    def zero_weight(a):
        a.obs["w"] = np.where(a.obs["donor"] == "donor02", 0.0, 1.0)

    p = _bad_cells(small, "zero.h5ad", zero_weight)
    assert_input_error(
        run([*emb, p, "--sample-key", "donor", "--weight-key", "w"]), out, "sum to zero"
    )

    # NaN in the representation
    def nan(a):
        a.obsm["X_pca"][5, 3] = np.nan

    p = _bad_cells(small, "nan.h5ad", nan)
    assert_input_error(run([*emb, p, "--sample-key", "donor"]), out, "NaN")

    # a --use-rep that does not exist, in reference and in embed
    assert_input_error(
        run(["reference", cells, "--sample-key", "donor", "--use-rep", "X_foo", "-o", out]),
        out,
        "'X_foo' not found",
    )
    assert_input_error(
        run([*emb, cells, "--sample-key", "donor", "--use-rep", "X_foo"]), out, "X_foo"
    )
    # no coordinates at all
    assert_input_error(
        run(["reference", cells, "--sample-key", "donor", "-o", out]), out, "--use-rep"
    )

    # another representation (and dimension) than the reference's
    assert_input_error(
        run([*emb, cells, "--sample-key", "donor", "--use-rep", "X_umap"]),
        out,
        "the reference was made from --use-rep X_pca",
    )

    # an unknown sample id in --samples
    assert_input_error(
        run([*emb, cells, "--sample-key", "donor", "--samples", "donor77"]), out, "donor77"
    )

    # a missing input file and a file that is not a reference
    assert_input_error(run([*emb, d / "nope.h5ad", "--sample-key", "donor"]), out, "not found")
    assert_input_error(
        run(["embed", cells, "--sample-key", "donor", "--reference", cells, "-o", out]),
        out,
        "otbio reference",
    )


def test_concat_refuses_different_references(small):
    d = small["dir"]
    out = d / "never_cat.h5ad"
    ref2 = d / "ref_other.h5ad"
    assert (
        run(
            [
                "--seed",
                1,
                "reference",
                small["cells"],
                "--sample-key",
                "donor",
                "--use-rep",
                "X_pca",
                "--size",
                48,
                "-o",
                ref2,
            ]
        ).exit_code
        == 0
    )
    other = d / "emb_other.h5ad"
    r = run(
        [
            "embed",
            small["cells"],
            "--sample-key",
            "donor",
            "--reference",
            ref2,
            "--samples",
            "donor06",
            "-o",
            other,
        ]
    )
    assert r.exit_code == 0, r.output
    first = d / "emb_first.h5ad"
    assert (
        run(
            [
                "embed",
                small["cells"],
                "--sample-key",
                "donor",
                "--reference",
                small["ref"],
                "--samples",
                "donor01",
                "-o",
                first,
            ]
        ).exit_code
        == 0
    )
    assert_input_error(run(["concat", first, other, "-o", out]), out, "another reference")
    # barycenter and distances: missing group column, --exact without cells
    assert_input_error(
        run(["barycenter", first, "--groupby", "nope", "-o", out]), out, "'nope' not found"
    )
    out_tsv = d / "never_dist.tsv"
    assert_input_error(run(["distances", first, "--exact", "-o", out_tsv]), out_tsv, "--cells")
