"""``otbio align`` end to end on the bundled structures, and its one-line input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from otbio.cli import cli


def run(args):
    return CliRunner().invoke(cli, ["--quiet", "align", *[str(a) for a in args]])


def assert_input_error(r, outs, match=None):
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    if match:
        assert match in lines[0], lines[0]
    for out in outs:
        assert not out.exists(), out
        assert not list(out.parent.glob(f".{out.name}*"))


def test_motif_against_targets_writes_everything(data, tmp_path):
    o = {
        k: tmp_path / n
        for k, n in [
            ("p", "pairs.tsv"),
            ("s", "scores.tsv"),
            ("n", "plan.npy"),
            ("f", "plan.png"),
            ("x", "sup.pdb"),
        ]
    }
    r = run(
        [
            f"{data}/adk_open.pdb::122-159",
            data / "1hvr.pdb",
            data / "adk_closed.pdb",
            "-o",
            o["p"],
            "--save-scores",
            o["s"],
            "--save-plan",
            o["n"],
            "--plot",
            o["f"],
            "--save-superposed",
            o["x"],
        ]
    )
    assert r.exit_code == 0, r.output
    scores = pd.read_csv(o["s"], sep="\t")
    assert list(scores["target"]) == ["adk_closed.pdb", "1hvr.pdb"]
    assert scores["score"].iloc[0] > 0.5 and scores["score"].iloc[1] < 0.1
    assert {"score", "pairs", "rmsd", "tm_score", "coverage"} <= set(scores.columns)
    pairs = pd.read_csv(o["p"], sep="\t", keep_default_na=False)
    top = pairs[pairs["target"] == "adk_closed.pdb"]
    assert len(top) == 38 and (top["query_resnum"] == top["target_resnum"]).all()
    assert (top["query_resname"] == top["target_resname"]).all()
    assert np.load(o["n"]).shape == (38, 214)
    assert o["f"].stat().st_size > 1000
    sup = o["x"].read_text()
    assert sup.count("ATOM") > 1000


def test_stdout_table_and_targets_dir(data, tmp_path):
    lst = tmp_path / "targets.txt"
    lst.write_text(f"# two chains\n{data}/chains/1ahsA.pdb.gz\n{data}/chains/2a2lA.pdb.gz:A\n")
    r = run([f"{data}/chains/1ahsA.pdb.gz:A:140-175", "--targets", lst])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("rank\tquery\ttarget") and len(lines) == 3
    assert "1ahsA.pdb.gz" in lines[1]


def test_embeddings_from_npy(data, tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(214, 320))
    np.save(tmp_path / "adk_closed.npy", emb)
    np.save(tmp_path / "lid.npy", emb[121:159] + rng.normal(0, 0.1, (38, 320)))
    out = tmp_path / "pairs.tsv"
    r = run(
        [
            f"{data}/adk_open.pdb::122-159",
            data / "adk_closed.pdb",
            "--features",
            tmp_path / "lid.npy",
            "--target-features",
            tmp_path,
            "--plasma-pf",
            "--refine",
            0,
            "-o",
            out,
        ]
    )
    assert r.exit_code == 0, r.output
    pairs = pd.read_csv(out, sep="\t")
    assert len(pairs) >= 30 and (pairs["query_resnum"] == pairs["target_resnum"]).mean() > 0.95


@pytest.mark.parametrize(
    ("query", "target", "extra", "match"),
    [
        ("missing.pdb", "adk_closed.pdb", [], "file not found"),
        ("adk_open.pdb", "missing.pdb", [], "file not found"),
        ("notpdb", "adk_closed.pdb", [], "cannot read"),
        ("adk_open.pdb:B", "adk_closed.pdb", [], "chain 'B' not found"),
        ("adk_open.pdb::900-950", "adk_closed.pdb", [], "matches no protein residue"),
        ("water.pdb", "adk_closed.pdb", [], "no protein residues"),
        ("chains/wrong_hydrogens.pdb.gz", "adk_closed.pdb", [], "only 2 protein"),
        (
            "adk_open.pdb::122-159",
            "adk_closed.pdb",
            ["--features", "short.npy", "--target-features", "t.npy"],
            "rows",
        ),
        ("adk_open.pdb::122-159", "adk_closed.pdb", ["--threshold", "2"], "threshold"),
        ("adk_open.pdb::122-159", "1hvr.pdb", ["--threshold", "0.999"], "superpose"),
    ],
)
def test_input_errors(data, tmp_path, query, target, extra, match):
    (tmp_path / "notpdb").write_text("hello\n")
    (tmp_path / "water.pdb").write_text(
        "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00           O\nEND\n"
    )
    np.save(tmp_path / "short.npy", np.zeros((37, 8)))
    np.save(tmp_path / "t.npy", np.zeros((214, 8)))

    def where(name):
        return tmp_path / name if (tmp_path / name).exists() else f"{data}/{name}"

    extra = [where(e) if e.endswith(".npy") else e for e in extra]
    outs = [
        tmp_path / "pairs.tsv",
        tmp_path / "scores.tsv",
        tmp_path / "plan.png",
        tmp_path / "sup.pdb",
    ]
    r = run(
        [
            where(query),
            where(target),
            *extra,
            "-o",
            outs[0],
            "--save-scores",
            outs[1],
            "--plot",
            outs[2],
            "--save-superposed",
            outs[3],
        ]
    )
    assert_input_error(r, outs, match)


def test_no_target(data):
    r = run([data / "adk_open.pdb"])
    assert r.exit_code == 2 and "no target" in r.stderr


def test_search_directory_skips_unusable_files(data, tmp_path):
    out = tmp_path / "scores.tsv"
    r = run(
        [
            f"{data}/chains/2a2lA.pdb.gz:A:60-80,100-115",
            "--targets",
            data / "chains",
            "--save-scores",
            out,
        ]
    )
    assert r.exit_code == 0, r.output
    assert "skipping target" in r.stderr or "wrong_hydrogens" not in r.stderr
    table = pd.read_csv(out, sep="\t")
    assert len(table) == 25 and table["target"].iloc[0] == "2a2lA.pdb.gz"
    assert list(table["rank"]) == list(range(1, 26))
