"""Reading structures: selections, CHARMM names, altlocs, insertion codes, models, errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from otbio import InputError
from otbio.align import parse_selection, read_structure


def test_adk_no_chain_ids_and_charmm_names(data):
    st = read_structure(data / "adk_open.pdb")
    assert len(st) == 214
    assert set(st.chain) == {""}
    assert "HSD" not in set(st.resname) and "HIS" in set(st.resname)
    assert st.sequence.startswith("MRIILLGAPGAGKGTQ")
    assert "X" not in st.sequence


def test_selection_ranges_and_chains(data):
    lid = read_structure(f"{data}/adk_open.pdb::122-159")
    assert len(lid) == 38 and lid.resnum[0] == 122 and lid.resnum[-1] == 159
    two = read_structure(f"{data}/adk_open.pdb:*:10-19,30-39")
    assert list(two.resnum) == list(range(10, 20)) + list(range(30, 40))
    hv = read_structure(data / "1hvr.pdb")
    b = read_structure(f"{data}/1hvr.pdb:B")
    assert set(b.chain) == {"B"} and len(b) < len(hv)
    assert "X" not in b.sequence  # CSO (modified cysteine) counts as a residue


def test_parse_selection_errors(data):
    assert parse_selection(str(data / "1hvr.pdb")) == (str(data / "1hvr.pdb"), None, None)
    with pytest.raises(InputError, match="residue range"):
        parse_selection(f"{data}/1hvr.pdb:A:x-y")
    with pytest.raises(InputError, match="file not found"):
        parse_selection("missing.pdb:A")


def _odd_pdb(data, tmp_path):
    """A real chain made awkward: MSE, an insertion code, altlocs, a Ca ion, two models."""
    lines = [
        ln
        for ln in gzip.open(data / "chains" / "1ahsA.pdb.gz", "rt").read().splitlines()
        if ln.startswith("ATOM")
    ]
    first = int(lines[0][22:26])
    out = []
    for ln in lines:
        num = int(ln[22:26])
        if num == first + 1:
            ln = ln[:17] + "MSE" + ln[20:]
        if num == first + 2:
            ln = ln[:26] + "A" + ln[27:]  # insertion code
        if num == first + 3 and ln[12:16] == " CA ":
            alt_a = ln[:16] + "A" + ln[17:]
            x = float(ln[30:38]) + 5.0
            alt_b = ln[:16] + "B" + ln[17:30] + f"{x:8.3f}" + ln[38:]
            out += [alt_a, alt_b]
            continue
        out.append(ln)
    ca_ion = "HETATM 9999 CA    CA A 900      10.000  10.000  10.000  1.00  0.00          CA"
    model1 = ["MODEL        1", *out, ca_ion, "ENDMDL"]
    shifted = [ln[:30] + f"{float(ln[30:38]) + 1.0:8.3f}" + ln[38:] for ln in out]
    model2 = ["MODEL        2", *shifted, "ENDMDL"]
    p = tmp_path / "odd.pdb"
    p.write_text("\n".join([*model1, *model2, "END", ""]))
    return p, first, out


def test_awkward_file(data, tmp_path):
    p, first, _ = _odd_pdb(data, tmp_path)
    ref = read_structure(data / "chains" / "1ahsA.pdb.gz")
    st = read_structure(p)
    assert len(st) == len(ref)  # the Ca ion is not a residue, altlocs count once
    assert st.resname[1] == "MET"
    assert st.icode[2] == "A" and st.resnum[2] == first + 2
    assert np.allclose(st.ca[3], ref.ca[3])  # first altloc kept
    m2 = read_structure(p, pdb_model=2)
    assert np.allclose(m2.ca - st.ca, [1.0, 0.0, 0.0])
    with pytest.raises(InputError, match="model"):
        read_structure(p, pdb_model=3)
    sel = read_structure(f"{p}:A:{first + 2}A-{first + 6}")
    assert len(sel) == 5 and sel.icode[0] == "A"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("missing.pdb", "file not found"),
        ("1hvr.pdb:C", "chain 'C' not found"),
        ("1hvr.pdb:A:500-600", "matches no protein residue"),
        ("chains/wrong_hydrogens.pdb.gz", "only 2 protein residue"),
    ],
)
def test_read_errors(data, spec, match):
    with pytest.raises(InputError, match=match):
        read_structure(spec if spec.startswith("missing") else f"{data}/{spec}")


def test_unreadable_and_non_protein(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_bytes(b"\x00\x01 this is not a structure")
    with pytest.raises(InputError):
        read_structure(bad)
    water = tmp_path / "water.pdb"
    water.write_text(
        "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00           O\nEND\n"
    )
    with pytest.raises(InputError, match="no protein residues"):
        read_structure(water)


def test_mmcif_gzip_reads_like_pdb(data, tmp_path):
    import gemmi

    st = gemmi.read_structure(str(data / "chains" / "2a2lA.pdb.gz"))
    st.setup_entities()
    doc = st.make_mmcif_document()
    cif = tmp_path / "2a2lA.cif"
    doc.write_file(str(cif))
    gz = tmp_path / "2a2lA.cif.gz"
    gz.write_bytes(gzip.compress(cif.read_bytes()))
    a = read_structure(data / "chains" / "2a2lA.pdb.gz")
    b = read_structure(f"{gz}:A")
    assert len(a) == len(b) and np.allclose(a.ca, b.ca) and a.sequence == b.sequence
