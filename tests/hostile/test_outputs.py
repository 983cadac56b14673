"""Hostile outputs (issue 26, items 1, 2, 13 and 14): an output never replaces an input however
the input is spelled, every writer fails cleanly on a full disk, and outputs that cannot be
written are refused before any work.

Work happens in a temporary directory holding copies of the real test data; ``files(d)``
(names and hashes of everything in it, hidden files included) must be the same before and
after a refused or failed command: inputs unchanged, no output, no temporary.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner
from test_hostile import files, refused  # one check: exit, one Error line naming a fix

from otbio.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "test_data"
PDB_A = DATA / "protein" / "adk_open.pdb"
PDB_B = DATA / "protein" / "adk_closed.pdb"
SLICE1 = DATA / "spatial" / "breast_st_slice1.h5ad"
SLICE2 = DATA / "spatial" / "breast_st_slice2.h5ad"


def run(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


@pytest.fixture
def prot(tmp_path):
    """Two real structures, a link to one, a --targets list file, a feature folder."""
    shutil.copy(PDB_A, tmp_path / "q.pdb")
    shutil.copy(PDB_B, tmp_path / "t.pdb")
    os.symlink(tmp_path / "q.pdb", tmp_path / "link.pdb")
    (tmp_path / "list.txt").write_text("# targets\nt.pdb:A\n")
    (tmp_path / "db").mkdir()
    shutil.copy(PDB_B, tmp_path / "db" / "t2.pdb")
    (tmp_path / "feat").mkdir()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "q.npy", rng.normal(size=(214, 8)).astype(np.float32))
    np.save(tmp_path / "feat" / "t.npy", rng.normal(size=(214, 8)).astype(np.float32))
    return tmp_path


# 1. an output named like an input however the input is spelled: refused -------------------

_SAME = [
    (["q.pdb::122-159", "t.pdb", "--save-superposed", "q.pdb"], "q.pdb::122-159"),
    (["q.pdb::122-159", "t.pdb@1", "--save-superposed", "t.pdb"], "t.pdb@1"),
    (["q.pdb::122-159", "t.pdb::", "--save-superposed", "t.pdb"], "t.pdb::"),
    (["q.pdb::122-159", "t.pdb@1:A:1-100", "-o", "t.pdb"], "t.pdb@1:A:1-100"),
    (["link.pdb::122-159", "t.pdb", "--save-superposed", "q.pdb"], "link.pdb::122-159"),
    (["q.pdb::122-159", "t.pdb", "--save-superposed", "link.pdb"], "q.pdb::122-159"),
    (["q.pdb::122-159", "--targets", "list.txt", "--save-superposed", "t.pdb"], "listed in"),
    (["q.pdb::122-159", "--targets", "list.txt", "-o", "list.txt"], "list.txt"),
    (["q.pdb::122-159", "--targets", "db", "--save-superposed", "db/t2.pdb"], "t2.pdb (in db)"),
    (["q.pdb", "t.pdb", "--features", "q.npy", "--target-features", "feat",
      "--save-plan", "feat/t.npy"], "feat/t.npy"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "named"), _SAME, ids=[" ".join(a) for a, _ in _SAME])
def test_output_onto_an_input_behind_a_selection_is_refused(prot, monkeypatch, args, named):
    monkeypatch.chdir(prot)
    before = files(prot)
    line = refused(run("align", *args), before, prot, "is the input file")
    assert named in line, line


def test_outputs_beside_selected_inputs_are_written(prot, monkeypatch):
    """The guard refuses only real inputs: an unrelated file in the same folders is fine."""
    monkeypatch.chdir(prot)
    (prot / "db" / "old.tsv").write_text("old")
    res = run("--quiet", "align", "q.pdb::122-159", "--targets", "db", "t.pdb@1",
              "--save-scores", "db/old.tsv", "--save-superposed", "sup.pdb")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (prot / "db" / "old.tsv").read_text().startswith("rank\t")
    assert (prot / "sup.pdb").read_text().count("ATOM") > 1000


# 2. a full disk: every writer fails with exit 1, one line, nothing left ------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte (root on Linux, as in CI); else skipped."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"mount not permitted here: {r.stderr.strip()}")
    try:
        with open(mnt / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 512)
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    """A small real LOT embedding of the pbmc cohort (12 donors, 60 cells each)."""
    import otbio.lot as L

    d = tmp_path_factory.mktemp("emb")
    cohort = ad.read_h5ad(DATA / "pbmc_cohort.h5ad")
    donors = sorted(cohort.obs["donor"].unique())[:12]
    keep = np.concatenate([np.flatnonzero(cohort.obs["donor"] == s)[:60] for s in donors])
    cells = cohort[keep].copy()
    ref = L.reference(cells, sample_key="donor", use_rep="X_pca", size=8, seed=0)
    emb = L.embed(cells, ref, sample_key="donor", jobs=1, progress=False)
    emb.write_h5ad(d / "emb.h5ad")
    return d / "emb.h5ad"


_FORMATS = {
    "pdb": ["align", "q.pdb::122-159", "t.pdb", "--save-superposed", "{m}/s.pdb"],
    "mmcif": ["align", "q.pdb::122-159", "t.pdb", "--save-superposed", "{m}/s.cif"],
    "tsv": ["align", "q.pdb::122-159", "t.pdb", "-o", "{m}/pairs.tsv"],
    "tsv.gz": ["align", "q.pdb::122-159", "t.pdb", "--save-scores", "{m}/scores.tsv.gz"],
    "csv": ["transport", "x.npy", "y.npy", "--save-matches", "{m}/m.csv"],
    "npy": ["align", "q.pdb::122-159", "t.pdb", "--save-plan", "{m}/plan.npy"],
    "npz": ["transport", "x.npy", "y.npy", "--save-potentials", "{m}/f.npz"],
    "png": ["align", "q.pdb::122-159", "t.pdb", "--plot", "{m}/plan.png"],
    "pdf": ["align", "q.pdb::122-159", "t.pdb", "--plot", "{m}/plan.pdf"],
    "svg": ["align", "q.pdb::122-159", "t.pdb", "--plot", "{m}/plan.svg"],
    "eps": ["align", "q.pdb::122-159", "t.pdb", "--plot", "{m}/plan.eps"],
    "jpg": ["align", "q.pdb::122-159", "t.pdb", "--plot", "{m}/plan.jpg"],
    "txt": ["transport", "x.npy", "y.npy", "--save-matches", "{m}/m.txt"],
    "h5ad": ["stack", "s1.h5ad", "s2.h5ad", "-o", "{m}/st.h5ad"],
    "joblib": ["classify", "emb.h5ad", "--groupby", "condition", "--n-splits", "2",
               "--save-model", "{m}/model.joblib", "-o", "{m}/cls"],
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(_FORMATS))
def test_full_disk_fails_every_writer_cleanly(prot, full_disk, embedding, monkeypatch, fmt):
    d = prot
    shutil.copy(SLICE1, d / "s1.h5ad")
    shutil.copy(SLICE2, d / "s2.h5ad")
    shutil.copy(embedding, d / "emb.h5ad")
    x = ad.read_h5ad(SLICE1).obsm["spatial"][:80].astype(float)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", x[::-1] + 1.0)
    monkeypatch.chdir(d)
    before, on_disk = files(d), files(full_disk)
    args = [a.replace("{m}", str(full_disk)) for a in _FORMATS[fmt]]
    res = run("--quiet", *args)
    assert res.exit_code == 1, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write"), res.stderr
    assert "No space left on device" in lines[0], lines[0]
    assert files(d) == before and files(full_disk) == on_disk
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


# 13. outputs that cannot be written, numbers that overflow: refused before any work -------


def test_unwritable_formats_and_overflow_are_refused_up_front(prot, monkeypatch):
    import importlib.util

    monkeypatch.chdir(prot)
    before = files(prot)
    cases = [(["align", "q.pdb::122-159", "t.pdb", "--round-iter", "99999999999999999999"],
              "--round-iter must be at most")]  # fmt: skip
    if importlib.util.find_spec("zstandard") is None:
        cases.append((["align", "q.pdb::122-159", "t.pdb", "-o", "p.tsv.zst"], "zstandard"))
    import matplotlib as mpl

    if shutil.which(mpl.rcParams["pgf.texsystem"]) is None:
        cases.append((["align", "q.pdb::122-159", "t.pdb", "--plot", "p.pgf"], "TeX"))
    for args, text in cases:
        refused(run(*args), before, prot, text)


# 14. empty names, write-protected and foreign outputs, repeated cell names ----------------


def test_empty_output_names(prot, monkeypatch):
    monkeypatch.chdir(prot)
    shutil.copy(SLICE1, prot / "s1.h5ad")
    before = files(prot)
    refused(run("stack", "s1.h5ad", "-o", ""), before, prot, "is empty; give a file name")
    refused(run("concat", "s1.h5ad", "-o", ""), before, prot, "is empty; give a file name")
    refused(run("align", "q.pdb", "t.pdb", "--save-superposed", ""), before, prot,
            "--save-superposed is empty")  # fmt: skip


def test_write_protected_output_is_refused_as_cp_does(prot, monkeypatch):
    """Documented choice (README, Guarantees): a write-protected existing output is never
    replaced, for root too; remove it or chmod u+w first."""
    monkeypatch.chdir(prot)
    (prot / "scores.tsv").write_text("kept\n")
    (prot / "scores.tsv").chmod(0o444)
    before = files(prot)
    line = refused(run("align", "q.pdb::122-159", "t.pdb", "--save-scores", "scores.tsv"),
                   before, prot, "write-protected")  # fmt: skip
    assert "0444" in line
    assert stat.S_IMODE((prot / "scores.tsv").stat().st_mode) == 0o444


def test_foreign_file_in_sticky_folder_is_refused_before_work(prot, monkeypatch):
    """Non-root onto another user's file in a sticky folder (/tmp): the rename would fail
    after the work and after the success line; refused up front instead."""
    from otbio.cli import _outputs

    if os.geteuid() != 0:
        pytest.skip("making another user's file needs root")
    sticky = prot / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "scores.tsv").write_text("theirs\n")
    os.chown(sticky / "scores.tsv", 65534, 65534)
    monkeypatch.chdir(prot)
    monkeypatch.setattr(_outputs.os, "geteuid", lambda: 4321)  # an ordinary user
    before = files(prot)
    refused(run("align", "q.pdb::122-159", "t.pdb", "--save-scores", "sticky/scores.tsv"),
            before, prot, "belongs to another user in a sticky directory")  # fmt: skip


def test_repeated_cell_names_in_stack_are_one_line(tmp_path, monkeypatch):
    a = ad.read_h5ad(SLICE1)
    names = list(a.obs_names)
    names[1], names[3] = names[0], names[2]
    a.obs_names = names
    a.write_h5ad(tmp_path / "dup.h5ad")
    shutil.copy(SLICE2, tmp_path / "s2.h5ad")
    monkeypatch.chdir(tmp_path)
    before = files(tmp_path)
    refused(run("stack", "dup.h5ad", "s2.h5ad", "-o", "st.h5ad"), before, tmp_path,
            "section 'dup' (dup.h5ad) has 2 repeated cell names")  # fmt: skip
