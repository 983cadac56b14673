"""The structure index (``otbio index``, ``search(..., index=...)``) on the bundled chains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from otbio import InputError
from otbio.align import _index, index, open_index, read_structure, search
from otbio.cli import cli

DATA = Path(__file__).resolve().parents[2] / "test_data" / "protein"
CHAINS = sorted(p for p in (DATA / "chains").glob("*.pdb.gz") if p.name[0].isdigit())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One index of the 25 chains, and the same chains in two shards."""
    d = tmp_path_factory.mktemp("ix")
    index([str(p) for p in CHAINS], d / "all.idx")
    index([str(p) for p in CHAINS[:11]], d / "shards" / "a.idx")
    index([str(p) for p in CHAINS[11:]], d / "shards" / "b.idx")
    return d


def _motif(st, segments, noise, seed):
    """Residues of ``segments`` (in the order given), rotated and moved by ``noise`` A."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(a, b) for a, b in segments])
    m = st.subset(idx, name=f"{st.name}{segments}")
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    ca = m.ca @ q.T + rng.normal(scale=noise, size=m.ca.shape) + 10.0
    return m.with_coordinates(ca)


MOTIFS = [  # (chain number, segments, noise A): contiguous, and two segments swapped
    (0, [(40, 100)], 0.5),
    (7, [(20, 70)], 0.3),
    (13, [(60, 90), (20, 50)], 0.5),
    (20, [(10, 40), (70, 100)], 0.5),
    (5, [(30, 80)], 1.0),
    (16, [(55, 80), (25, 50)], 1.0),
]


@pytest.mark.parametrize(("k", "segments", "noise"), MOTIFS)
def test_index_finds_the_exhaustive_top_hit(built, chains, k, segments, noise):
    q = _motif(chains[k], segments, noise, seed=k)
    exhaustive = search(q, chains)
    via = search(q, index=built / "all.idx", max_candidates=5)
    assert len(via) == 5
    assert via[0].target.name == exhaustive[0].target.name == chains[k].name
    # the stored coordinates give the same alignment as the parsed file
    assert via[0].tm_score == pytest.approx(exhaustive[0].tm_score, abs=0.01)
    assert np.array_equal(via[0].pairs, exhaustive[0].pairs)


@pytest.mark.parametrize(("k", "segments"), [(5, [(30, 80)]), (16, [(55, 80), (25, 50)])])
def test_geometric_check_is_the_alignments_seed_search(built, chains, k, segments):
    """The check of the prefilter's candidates (stored int16 coordinates) gives the seed
    TM-scores of :func:`fragment_seeds` on the parsed chains, and ranks the motif's source
    first at 1.0 A of noise."""
    from otbio.align._seeds import fragment_seeds, sequence_segments

    q = _motif(chains[k], segments, 1.0, seed=k)
    ixs = _index.open_indexes([built / "all.idx"])
    got = _index.seed_scores(q, ixs, np.arange(len(chains)), jobs=2)
    qseg = sequence_segments(q.resnum, q.chain)
    ref = []
    for t in chains:
        seeds = fragment_seeds(q.ca, t.ca, qseg, sequence_segments(t.resnum, t.chain),
                               n_seeds=_index.SEED_CHECK_SEEDS, n_keep=1,
                               n_iter=_index.SEED_CHECK_ITER)  # fmt: skip
        ref.append(seeds[0][0] if seeds else 0.0)
    diff = np.abs(got - np.array(ref))
    # int16 coordinates (0.025 A) can swap near-tied seeds of unrelated chains, never more
    assert diff[k] < 0.005 and np.median(diff) < 0.005 and diff.max() < 0.1
    assert int(np.argmax(got)) == k
    assert got[k] > np.sort(got)[-2] + 0.1
    found, scores = _index.candidates(q, ixs, 1)
    assert found[0].name == chains[k].name and scores[0] == pytest.approx(got[k])
    # the key prefilter alone still answers (check_candidates=0)
    found, _ = _index.candidates(q, ixs, 3, check_candidates=0)
    assert len(found) == 3


def test_stored_structures_round_trip(built, chains):
    ix = open_index(built / "all.idx")
    assert ix.n_structures == len(chains)
    for k in (0, 9, 24):
        st = ix.structure(k)
        ref = chains[k]
        assert st.name == ref.name and st.path == str(CHAINS[k].resolve())
        assert np.abs(st.ca - ref.ca).max() <= _index.COORD_SCALE / 2 + 1e-9
        for f in ("chain", "resnum", "icode", "resname"):
            assert list(getattr(st, f)) == list(getattr(ref, f)), f


def test_two_shards_answer_like_one(built, chains):
    one = [_index.open_index(built / "all.idx")]
    two = _index.open_indexes([built / "shards"])  # a folder of shards
    assert [ix.n_structures for ix in two] == [11, 14]
    q = _motif(chains[4], [(30, 90)], 0.5, seed=1)
    s1 = np.concatenate(_index.prefilter(q, one))
    s2 = np.concatenate(_index.prefilter(q, two))
    np.testing.assert_allclose(s1, s2, rtol=1e-12)
    a = search(q, index=built / "all.idx", max_candidates=6)
    b = search(q, index=[built / "shards" / "a.idx", built / "shards" / "b.idx"], max_candidates=6)
    assert [r.target.name for r in a] == [r.target.name for r in b]


def test_append_equals_one_build(built, tmp_path):
    out = tmp_path / "app.idx"
    index([str(p) for p in CHAINS[:11]], out)
    index([str(p) for p in CHAINS[11:]], out, append=True)
    a, b = open_index(out), open_index(built / "all.idx")
    for f in ("keys", "offsets", "postings", "n_keys", "ca", "resnum", "res_offsets"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert list(a.names) == list(b.names)


def _one_error_line(r):
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    return lines[0]


def test_corrupt_or_foreign_index_fails_with_one_line(built, tmp_path):
    q = str(CHAINS[0])
    r = CliRunner().invoke(cli, ["--quiet", "align", q, "--index", str(CHAINS[1])])
    assert "not an otbio index" in _one_error_line(r)
    bad = tmp_path / "bad.idx"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    r = CliRunner().invoke(cli, ["--quiet", "align", q, "--index", str(bad)])
    assert "corrupt manifest.json" in _one_error_line(r)
    # a truncated array
    trunc = tmp_path / "trunc.idx"
    index([str(p) for p in CHAINS[:3]], trunc)
    raw = (trunc / "postings.npy").read_bytes()
    (trunc / "postings.npy").write_bytes(raw[: len(raw) // 2])
    r = CliRunner().invoke(cli, ["--quiet", "align", q, "--index", str(trunc)])
    assert "postings.npy" in _one_error_line(r)
    # another format's manifest
    other = tmp_path / "other.idx"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "foldseek"}))
    r = CliRunner().invoke(cli, ["--quiet", "align", q, "--index", str(other)])
    assert "another format" in _one_error_line(r)


def test_cli_index_then_align(tmp_path):
    out = tmp_path / "cli.idx"
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in CHAINS[:6]) + "\n")
    r = CliRunner().invoke(cli, ["--quiet", "index", f"@{lst}", str(CHAINS[6]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert open_index(out).n_structures == 7
    scores = tmp_path / "s.tsv"
    r = CliRunner().invoke(cli, ["--quiet", "align", f"{CHAINS[6]}::20-80", "--index", str(out),
                                 "--max-candidates", "3", "--save-scores", str(scores)])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = scores.read_text().splitlines()
    assert len(rows) == 4 and CHAINS[6].name in rows[1]


def test_cli_check_candidates_reaches_the_prefilter(tmp_path, monkeypatch):
    """--check-candidates sets the geometric check's size: 0 ranks by the keys alone."""
    import otbio.align._index as ix

    out = tmp_path / "cli.idx"
    r = CliRunner().invoke(cli, ["--quiet", "index", *map(str, CHAINS[:7]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    seen, real = [], ix.candidates

    def spy(*a, **k):
        seen.append(k["check_candidates"])
        return real(*a, **k)

    monkeypatch.setattr(ix, "candidates", spy)
    scores = tmp_path / "s.tsv"
    for n, code in (("0", 0), ("2", 0), ("-1", 2)):
        r = CliRunner().invoke(cli, ["--quiet", "align", f"{CHAINS[6]}::20-80", "--index",
                                     str(out), "--max-candidates", "3", "--check-candidates", n,
                                     "--save-scores", str(scores)])  # fmt: skip
        assert r.exit_code == code, r.output
        if code == 0:
            assert CHAINS[6].name in scores.read_text().splitlines()[1]
    assert seen == [0, 2]
    # the command line's defaults are the library's
    opts = {o.name: o.default for o in cli.commands["align"].params}
    assert opts["check_candidates"] == ix.SEED_CHECK_CANDIDATES
    assert opts["max_candidates"] == ix.DEFAULT_MAX_CANDIDATES


def test_interrupted_build_leaves_no_index(tmp_path, monkeypatch):
    out = tmp_path / "x.idx"
    real = _index._Builder.write

    def write_then_die(self, directory):
        real(self, directory)  # every array written, then the run is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(_index._Builder, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        index([str(p) for p in CHAINS[:3]], out)
    assert list(tmp_path.iterdir()) == []  # no index, no temporary
    monkeypatch.setattr(_index._Builder, "write", real)
    index([str(p) for p in CHAINS[:3]], out)
    before = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(_index._Builder, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        index([str(p) for p in CHAINS[:5]], out, append=True)
    assert open_index(out).n_structures == 3  # the old index is intact
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.idx"]


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no index to append"):
        index([str(CHAINS[0])], tmp_path / "none.idx", append=True)
    with pytest.raises(InputError, match="no file matches"):
        index([str(tmp_path / "*.pdb")], tmp_path / "g.idx")
    with pytest.raises(InputError, match="max_candidates"):
        search(read_structure(CHAINS[0]), index=tmp_path, max_candidates=0)
    with pytest.raises(InputError, match="check_candidates"):
        _index.search_index(read_structure(CHAINS[0]), tmp_path, check_candidates=-1)
