"""Search in parallel: forked worker processes for reading and for the alignments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from otbio import InputError
from otbio.align import _search, read_structure, read_structures, search

DATA = Path(__file__).resolve().parents[2] / "test_data" / "protein"
CHAINS = sorted(p for p in (DATA / "chains").glob("*.pdb.gz") if p.name[0].isdigit())


def _same_structures(a, b):
    assert len(a) == len(b)
    for s, t in zip(a, b, strict=True):
        assert s.name == t.name and s.path == t.path
        for k in ("chain", "resnum", "icode", "resname", "ca"):
            assert np.array_equal(getattr(s, k), getattr(t, k))
        assert np.array_equal(s._cache["geometric"].values, t._cache["geometric"].values,
                              equal_nan=True)  # fmt: skip


@pytest.mark.skipif(_search._fork_context() is None, reason="needs the fork start method")
def test_read_structures_in_processes_matches_serial(monkeypatch, tmp_path, data):
    specs = [str(p) for p in CHAINS[:6]] + [f"{data}/1hvr.pdb:B", f"{data}/adk_open.pdb::5-60"]
    serial = read_structures(specs, jobs=1)
    monkeypatch.setattr(_search, "PROCESS_MIN_FILES", 2)
    forked = read_structures(specs, jobs=2)
    _same_structures(serial, forked)
    bad = tmp_path / "bad.pdb"
    bad.write_bytes(b"\x00\x01 not a structure")
    with pytest.raises(InputError, match="bad.pdb"):
        read_structures([*specs, str(bad)], jobs=2)
    kept = read_structures([str(bad), *specs], jobs=2, skip_bad=True)
    _same_structures(serial, kept)


@pytest.mark.skipif(_search._fork_context() is None, reason="needs the fork start method")
def test_search_in_processes_matches_serial(chains, monkeypatch):
    rng = np.random.default_rng(5)
    parent = chains[7]
    motif = parent.subset(np.arange(20, 55))
    motif = motif.with_coordinates(motif.ca + rng.normal(0, 0.2, motif.ca.shape))
    one = search(motif, chains, jobs=1)
    monkeypatch.setattr(_search, "PROCESS_MIN_TARGETS", 2)
    two = search(motif, chains, jobs=2)
    assert [r.target.name for r in one] == [r.target.name for r in two]
    for a, b in zip(one, two, strict=True):
        assert b.query is motif and any(b.target is c for c in chains)
        assert a.score == b.score and a.params == b.params
        assert np.array_equal(a.pairs, b.pairs) and np.array_equal(a.plan, b.plan)
    assert one[0].target is parent and _search._SEARCH is None


def test_search_computes_query_features_once(data, monkeypatch):
    st = read_structure(data / "adk_open.pdb")
    motif = st.subset(np.arange(120, 160))
    monkeypatch.setattr(_search, "PROCESS_MIN_TARGETS", 2)
    res = search(motif, [st, st, st, st], jobs=2)
    assert "geometric" in motif._cache and len(res) == 4


@pytest.mark.skipif(_search._fork_context() is None, reason="needs the fork start method")
def test_search_reads_files_in_its_workers(chains, monkeypatch, tmp_path):
    """File specs are read, featurised and aligned in the same forked worker: the same
    results as aligning the structures in this process; unusable files are skipped with a
    warning (``skip_bad``) or raise."""
    paths = [str(p) for p in CHAINS[:6]]
    motif = chains[0].subset(np.arange(10, 45))
    one = search(motif, [read_structure(p) for p in paths], jobs=1)
    bad = tmp_path / "bad.pdb"
    bad.write_bytes(b"\x00\x01 not a structure")
    monkeypatch.setattr(_search, "PROCESS_MIN_TARGETS", 2)
    warned = []
    monkeypatch.setattr(_search.log, "warning", lambda *a: warned.append(a[0] % a[1:]))
    two = search(motif, [paths[0], str(bad), *paths[1:]], jobs=2, skip_bad=True)
    assert len(warned) == 1 and "bad.pdb" in warned[0]
    assert [r.target.path for r in one] == [r.target.path for r in two]
    for a, b in zip(one, two, strict=True):
        assert a.tm_score == b.tm_score and np.array_equal(a.pairs, b.pairs)
        assert np.array_equal(a.target.ca, b.target.ca) and b.query is motif
    with pytest.raises(InputError, match="bad.pdb"):
        search(motif, [*paths, str(bad)], jobs=2)
    with pytest.raises(InputError, match="no usable target"):
        search(motif, [str(bad)] * 3, jobs=2, skip_bad=True)
