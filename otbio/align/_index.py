"""An on-disk index of structures for database search: order-free pair features, a
rarity-weighted prefilter, and compact coordinates (after Folddisco's inverted index).

Every residue ``i`` with two sequence neighbours on each side in its chain segment gets a
local frame from the CA atoms ``i - 1, i, i + 1`` (tangent ``t_i``, bisector ``b_i``) and a
secondary-structure class from the distance ``|CA_{i-2} CA_{i+2}|`` (helix-like, mixed,
strand-like). Every pair of such residues closer than ``RADIUS`` A (sequence neighbours
excepted) gives one integer key: its binned CA-CA distance, the two residues' classes, the
binned cosines of the pair direction with each residue's tangent and bisector, and the
binned cosine between the two tangents, ordered so that (i, j) and (j, i) give the same key.
No key depends on where the residues sit in the sequence: a motif of swapped or circularly
permuted segments gives the same keys as the original.

The index (a directory) holds, memory-mapped at query time:

- ``manifest.json``: format, version, counts and the feature parameters;
- ``keys.npy`` (sorted unique keys), ``offsets.npy`` and ``postings.npy``: the inverted lists,
  structure numbers per key;
- ``n_keys.npy``: distinct keys per structure (the length correction of the prefilter);
- ``names.npy``, ``paths.npy``, ``models.npy``, ``res_offsets.npy``: one entry per structure;
- ``ca.npy`` (int16, ``COORD_SCALE`` A units about ``origin.npy``), ``resnum.npy``,
  ``icode.npy``, ``resname.npy``, ``chain.npy``: the residues, so a query never reopens the
  source files.

The query's pairs also look up the neighbouring bin of every value near a bin edge
(multi-probe, ``PROBE_MARGINS``). The prefilter scores a structure ``t`` by the query pairs
whose keys (any probe) it holds, each weighted by the key's rarity ``idf_k = log(N / df_k)``
(``df_k`` structures of ``N`` hold key ``k``):

.. math:: s_t = \\sum_{p \\in Q} \\mathrm{idf}_{k(p, t)} \\, [\\exists k \\in
          \\mathrm{probes}(p) \\cap T],

less its least-squares fit by a quadratic in ``log n_t`` (``n_t`` distinct keys of ``t``)
over the whole database (:func:`size_corrected`), since larger structures hold more keys by
chance.

Keys of a noisy query (1 A of coordinate noise) fall in other bins too often for this score
to rank a motif's copies first among 100,000 structures (they stay within its best few
percent), so its ``SEED_CHECK_CANDIDATES`` best get a geometric check on the stored
coordinates (:func:`seed_scores`), as Folddisco superposes residues after its prefilter:
the alignment's own order-free seed search (:func:`otbio.align._seeds.fragment_seeds`),
whose best seed TM-score ranks them; the best ``max_candidates`` go on to the Sinkhorn
alignment (:func:`otbio.align.search`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from otbio._errors import InputError
from otbio.align._seeds import (
    SCREEN_ITER,
    _best_fragment_pairs,
    _seed_search,
    _signatures,
    _window_starts,
)

__all__ = ["StructureIndex", "expand_structures", "index", "open_index", "pair_keys"]

log = logging.getLogger("otbio")

FORMAT = "otbio-structure-index"
VERSION = 1
#: Pair radius (A): pairs of residues whose CA atoms are closer than this give a key.
RADIUS = 14.0
#: CA-CA distance bin edges (A).
D_EDGES = np.arange(4.75, RADIUS, 1.25)
#: Cosine bin edges of the angles between the pair direction and the residues' directions
#: (CA(i-2) -> CA(i+2)), and between the two residues' directions.
COS_EDGES = np.array([-0.6, -0.2, 0.2, 0.6])
#: |CA(i-2) CA(i+2)| class edges (A): helix-like below 7.5, strand-like above 10.5.
SS_EDGES = np.array([7.5, 10.5])
#: Query-side probe margins (distance A, class distance A, cosine, chirality): a query value
#: this close to a bin edge also looks up the neighbouring bin (robust to 1 A of noise).
PROBE_MARGINS = np.array([0.4, 0.75, 0.1, 0.15])
#: CA coordinates are stored as int16 in units of COORD_SCALE A about each structure's centre.
COORD_SCALE = 0.05
#: Default number of candidates the prefilter passes on to the alignment.
DEFAULT_MAX_CANDIDATES = 500
#: Candidates of the key prefilter that get the geometric check (:func:`seed_scores`)
#: before the best ``max_candidates`` go on to the alignment.
SEED_CHECK_CANDIDATES = 20000
#: Fragment pairs superposed, and extension rounds, of the geometric check.
SEED_CHECK_SEEDS = 32
SEED_CHECK_ITER = 2
#: Structures read per batch while building (bounds the memory of the build).
BUILD_BATCH = 512
_FEATURES = {
    "radius": RADIUS,
    "d_edges": D_EDGES.tolist(),
    "cos_edges": COS_EDGES.tolist(),
    "ss_edges": SS_EDGES.tolist(),
    "chirality": True,
}
_PER_STRUCTURE = ("names", "paths", "models", "n_keys", "origin")
_PER_RESIDUE = ("ca", "resnum", "icode", "resname", "chain")


# --- features -----------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _bins(x, edges, margin, out):
    """The bin of ``x`` (``edges`` ascending) in ``out[0]``, and in ``out[1]`` the next bin
    when ``x`` lies within ``margin`` of an edge (else -1); returns how many."""
    b = 0
    while b < edges.shape[0] and x >= edges[b]:
        b += 1
    out[0] = b
    out[1] = -1
    if margin > 0:
        if b > 0 and x - edges[b - 1] < margin:
            out[1] = b - 1
        elif b < edges.shape[0] and edges[b] - x < margin:
            out[1] = b + 1
    return 1 if out[1] < 0 else 2


@njit(cache=True, nogil=True)
def _pair_keys(ca, seg, radius, d_edges, s_edges, c_edges, margins):
    """Keys of every residue pair (see the module docstring), with repeats, as uint32.

    ``margins`` (distance, class distance, cosine, chirality): a value that close to a bin
    edge also gives the key of the neighbouring bin (multi-probe, at query time; zeros
    when indexing)."""
    n = ca.shape[0]
    ok = np.zeros(n, dtype=np.bool_)
    tan = np.zeros((n, 3))
    ssd = np.zeros(n)
    for i in range(2, n - 2):
        if seg[i - 2] != seg[i] or seg[i + 2] != seg[i]:
            continue
        ok[i] = True
        nt = 0.0
        for k in range(3):
            tan[i, k] = ca[i + 2, k] - ca[i - 2, k]
            nt += tan[i, k] ** 2
        nt = np.sqrt(nt)
        ssd[i] = nt
        for k in range(3):
            tan[i, k] /= nt + 1e-9
    ns = s_edges.shape[0] + 1
    nc = c_edges.shape[0] + 1
    nh = ns * nc
    r2 = radius * radius
    cap = 16
    for i in range(n):
        if ok[i]:
            cap += 64
    out = np.empty(cap, dtype=np.uint32)
    owner = np.empty(cap, dtype=np.int64)
    m = 0
    n_pairs = 0
    bd = np.empty(2, dtype=np.int64)
    bsi = np.empty(2, dtype=np.int64)
    bsj = np.empty(2, dtype=np.int64)
    bci = np.empty(2, dtype=np.int64)
    bcj = np.empty(2, dtype=np.int64)
    btt = np.empty(2, dtype=np.int64)
    bch = np.empty(2, dtype=np.int64)
    ch_edges = np.zeros(1)
    for i in range(n):
        if not ok[i]:
            continue
        for j in range(i + 1, n):
            if not ok[j] or (j == i + 1 and seg[j] == seg[i]):
                continue
            dx = ca[j, 0] - ca[i, 0]
            dy = ca[j, 1] - ca[i, 1]
            dz = ca[j, 2] - ca[i, 2]
            d2 = dx * dx + dy * dy + dz * dz
            if d2 >= r2:
                continue
            d = np.sqrt(d2)
            ux, uy, uz = dx / d, dy / d, dz / d
            ci = ux * tan[i, 0] + uy * tan[i, 1] + uz * tan[i, 2]
            cj = -(ux * tan[j, 0] + uy * tan[j, 1] + uz * tan[j, 2])
            tt = tan[i, 0] * tan[j, 0] + tan[i, 1] * tan[j, 1] + tan[i, 2] * tan[j, 2]
            cx = tan[i, 1] * tan[j, 2] - tan[i, 2] * tan[j, 1]
            cy = tan[i, 2] * tan[j, 0] - tan[i, 0] * tan[j, 2]
            cz = tan[i, 0] * tan[j, 1] - tan[i, 1] * tan[j, 0]
            chir = cx * ux + cy * uy + cz * uz
            n1 = _bins(d, d_edges, margins[0], bd)
            n2 = _bins(ssd[i], s_edges, margins[1], bsi)
            n3 = _bins(ssd[j], s_edges, margins[1], bsj)
            n4 = _bins(ci, c_edges, margins[2], bci)
            n5 = _bins(cj, c_edges, margins[2], bcj)
            n6 = _bins(tt, c_edges, margins[2], btt)
            n7 = _bins(chir, ch_edges, margins[3], bch)
            if m + n1 * n2 * n3 * n4 * n5 * n6 * n7 > out.shape[0]:
                grown = np.empty(out.shape[0] * 2 + 128 * 64, dtype=np.uint32)
                grown[:m] = out[:m]
                out = grown
                grown_owner = np.empty(out.shape[0], dtype=np.int64)
                grown_owner[:m] = owner[:m]
                owner = grown_owner
            for a1 in range(n1):
                for a2 in range(n2):
                    for a3 in range(n3):
                        for a4 in range(n4):
                            for a5 in range(n5):
                                hi = bsi[a2] * nc + bci[a4]
                                hj = bsj[a3] * nc + bcj[a5]
                                if hj < hi:
                                    hi, hj = hj, hi
                                for a6 in range(n6):
                                    for a7 in range(n7):
                                        key = ((bd[a1] * nh + hi) * nh + hj) * nc + btt[a6]
                                        out[m] = key * 2 + bch[a7]
                                        owner[m] = n_pairs
                                        m += 1
            n_pairs += 1
    return out[:m], owner[:m]


def pair_keys(st, *, probe: bool = False) -> np.ndarray:
    """Sorted distinct order-free pair keys (uint32) of a :class:`Structure`; with
    ``probe``, also the keys of the neighbouring bins of values near a bin edge (queries)."""
    from otbio.align._seeds import sequence_segments

    ca = np.ascontiguousarray(st.ca, dtype=np.float64)
    margins = PROBE_MARGINS if probe else np.zeros(4)
    seg = sequence_segments(st.resnum, st.chain)  # noisy CA-CA gaps do not cut a motif
    raw, _ = _pair_keys(ca, seg, RADIUS, D_EDGES, SS_EDGES, COS_EDGES, margins)
    return _sorted_unique(raw)


@njit(cache=True, nogil=True)
def _sorted_unique(x):
    """np.unique of a uint32 array (sort, then drop repeats; faster than numpy's hash)."""
    y = np.sort(x)
    m = 0
    for i in range(y.shape[0]):
        if i == 0 or y[i] != y[i - 1]:
            y[m] = y[i]
            m += 1
    return y[:m].copy()


def probe_keys(st) -> tuple[np.ndarray, np.ndarray]:
    """The query's probe keys and the pair each comes from (distinct (key, pair) rows)."""
    from otbio.align._seeds import sequence_segments

    ca = np.ascontiguousarray(st.ca, dtype=np.float64)
    seg = sequence_segments(st.resnum, st.chain)
    keys, owner = _pair_keys(ca, seg, RADIUS, D_EDGES, SS_EDGES, COS_EDGES, PROBE_MARGINS)
    return keys, owner


# --- building -----------------------------------------------------------------------------


def expand_structures(specs: Sequence[str | os.PathLike]) -> list[str]:
    """Structure specs from files, folders (their structure files), globs and ``@list`` files
    (one structure per line), in the order given; raises :class:`InputError` when one names
    nothing."""
    from otbio.align._search import list_targets

    out: list[str] = []
    for spec in specs:
        s = os.fspath(spec)
        if s.startswith("@"):
            out += list_targets(s[1:])
        elif os.path.isdir(s):
            out += list_targets(s)
        elif any(c in s for c in "*?[") and not os.path.exists(s):
            found = sorted(f for f in glob.glob(s) if os.path.isfile(f))
            if not found:
                msg = f"no file matches '{s}'"
                raise InputError(msg)
            out += found
        else:
            out.append(s)
    if not out:
        msg = "no structure given to index"
        raise InputError(msg)
    return out


def _index_chunk(specs: Sequence[str], model: int) -> list:
    """Read structures and compute their keys (a worker process): per spec, a tuple of the
    arrays to store, or the :class:`InputError`."""
    from otbio.align._structure import read_structure

    out = []
    for spec in specs:
        try:
            st = read_structure(spec, pdb_model=model)
        except InputError as exc:
            out.append(exc)
            continue
        out.append((st.name, st.path, st.model, st.ca, st.resnum, st.icode, st.resname,
                    st.chain, pair_keys(st)))  # fmt: skip
    return out


def _read_batches(specs: list[str], model: int, jobs: int):
    """Yield (number of specs done, results) in order, ``BUILD_BATCH`` specs at a time."""
    from otbio.align._search import _fork_context

    ctx = _fork_context()
    starts = range(0, len(specs), BUILD_BATCH)
    if jobs <= 1 or ctx is None or len(specs) < 64:
        for s in starts:
            part = specs[s : s + BUILD_BATCH]
            yield s + len(part), _index_chunk(part, model)
        return
    from concurrent.futures import ProcessPoolExecutor

    _pair_keys(np.zeros((6, 3)), np.zeros(6, dtype=np.int64), RADIUS, D_EDGES, SS_EDGES,
               COS_EDGES, np.zeros(4))  # fmt: skip  # compile once, before forking
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        for s in starts:
            part = specs[s : s + BUILD_BATCH]
            n_chunks = min(len(part), 4 * jobs)
            chunks = [part[k::n_chunks] for k in range(n_chunks)]
            found: list = [None] * len(part)
            for k, res in enumerate(pool.map(_index_chunk, chunks, [model] * n_chunks)):
                found[k::n_chunks] = res
            yield s + len(part), found


class _Builder:
    """Arrays of an index being built (in memory)."""

    def __init__(self) -> None:
        self.per: dict[str, list] = {k: [] for k in (*_PER_STRUCTURE, *_PER_RESIDUE)}
        self.n_res: list[int] = []
        self.keys: list[np.ndarray] = []
        self.chain_ids: dict[str, int] = {}
        self.resnames: dict[str, int] = {}

    def add(self, name, path, model, ca, resnum, icode, resname, chain, keys) -> None:
        origin = ca.mean(0)
        q = np.rint((ca - origin) / COORD_SCALE)
        if np.abs(q).max(initial=0) > 32767:
            msg = f"{name}: the chain spans more than {32767 * COORD_SCALE:.0f} A from its centre"
            raise InputError(msg)
        p = self.per
        p["names"].append(name)
        p["paths"].append(os.path.abspath(path) if path else "")
        p["models"].append(model)
        p["n_keys"].append(len(keys))
        p["origin"].append(origin)
        p["ca"].append(q.astype(np.int16))
        p["resnum"].append(np.asarray(resnum, dtype=np.int32))
        p["icode"].append(np.array([ord(c[:1]) if c else 0 for c in icode], dtype=np.uint8))
        p["resname"].append(
            np.array(
                [self.resnames.setdefault(r, len(self.resnames)) for r in resname], dtype=np.uint16
            )  # fmt: skip
        )
        p["chain"].append(
            np.array(
                [self.chain_ids.setdefault(c, len(self.chain_ids)) for c in chain], dtype=np.uint16
            )  # fmt: skip
        )
        self.n_res.append(len(ca))
        self.keys.append(keys)

    def add_index(self, old: StructureIndex) -> None:
        """Every structure of an existing index (for ``append``)."""
        rn = list(old.resnames)
        ch = list(old.chain_ids)
        for k in range(old.n_structures):
            a, b = old.res_offsets[k], old.res_offsets[k + 1]
            ca = old.ca[a:b].astype(np.float64) * COORD_SCALE + old.origin[k]
            icode = [chr(c) if c else "" for c in old.icode[a:b]]
            self.add(str(old.names[k]), str(old.paths[k]), int(old.models[k]), ca,
                     old.resnum[a:b], icode, [rn[c] for c in old.resname[a:b]],
                     [ch[c] for c in old.chain[a:b]], old.keys_of(k))  # fmt: skip

    def write(self, directory: Path) -> dict:
        p = self.per
        n = len(p["names"])
        counts = np.array([len(k) for k in self.keys], dtype=np.int64)
        allkeys = np.concatenate(self.keys) if n else np.zeros(0, np.uint32)
        sid = np.repeat(np.arange(n, dtype=np.uint32), counts)
        order = np.argsort(allkeys, kind="stable")  # postings stay sorted by structure
        sk = allkeys[order]
        keys, first = np.unique(sk, return_index=True)
        offsets = np.append(first, len(sk)).astype(np.int64)
        arrays = {
            "keys": keys.astype(np.uint32),
            "offsets": offsets,
            "postings": sid[order],
            "names": np.array(p["names"], dtype=str),
            "paths": np.array(p["paths"], dtype=str),
            "models": np.array(p["models"], dtype=np.int32),
            "n_keys": np.array(p["n_keys"], dtype=np.uint32),
            "origin": np.array(p["origin"], dtype=np.float64).reshape(n, 3),
            "res_offsets": np.concatenate([[0], np.cumsum(self.n_res)]).astype(np.int64),
            "ca": np.concatenate(p["ca"]) if n else np.zeros((0, 3), np.int16),
        }
        for k, dt in (("resnum", np.int32), ("icode", np.uint8), ("resname", np.uint16),
                      ("chain", np.uint16)):  # fmt: skip
            arrays[k] = np.concatenate(p[k]) if n else np.zeros(0, dt)
        for k, v in arrays.items():
            np.save(directory / f"{k}.npy", v, allow_pickle=False)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "n_structures": n,
            "n_residues": int(sum(self.n_res)),
            "n_postings": len(sk),
            "features": _FEATURES,
            "coordinate_scale": COORD_SCALE,
            "resnames": list(self.resnames),
            "chain_ids": list(self.chain_ids),
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest


def index(
    structures: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    append: bool = False,
    pdb_model: int = 1,
    jobs: int = 1,
    skip_bad: bool = True,
    progress: bool = False,
) -> dict:
    """Build (or extend) an on-disk structure index for :func:`otbio.align.search`.

    Parameters
    ----------
    structures
        Structure files (selections allowed), folders, globs and ``@list`` files.
    output
        The index directory. It is built in a temporary directory beside it and moved into
        place only when complete: an interrupted or failed build leaves the previous index
        (or none) and no partial one.
    append
        Add the structures to the existing index ``output`` (it must exist).
    pdb_model
        Model read from multi-model files (``FILE@N`` overrides it).
    jobs
        Worker processes that read the files and compute their keys.
    skip_bad
        Leave out files that cannot be used, with a warning (else the first raises).
    progress
        Report the structures read on stderr.

    Returns
    -------
    dict
        The manifest written (``n_structures``, ``n_residues``, ``n_postings``, ...).
    """
    from otbio._progress import progress as progress_bar

    out = Path(output)
    old = None
    if append:
        if not out.exists():
            msg = f"`output` {out}: no index to append to; build it first without `append`"
            raise InputError(msg)
        old = open_index(out)
    elif out.exists() and not out.is_dir():
        msg = f"`output` {out} exists and is not a directory"
        raise InputError(msg)
    elif out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        msg = f"`output` {out} is a non-empty directory that is not an index; give a new name"
        raise InputError(msg)
    specs = expand_structures(structures)
    b = _Builder()
    if old is not None:
        b.add_index(old)
        del old
    n_bad = 0
    bar = progress_bar(range(len(specs)), total=len(specs), desc="indexing", show=progress)
    it = iter(bar)
    done = 0
    for upto, found in _read_batches(specs, pdb_model, max(1, int(jobs))):
        for item in found:
            if isinstance(item, InputError):
                if not skip_bad:
                    raise item
                n_bad += 1
                log.warning("skipping structure: %s", item)
            else:
                b.add(*item)
        for _ in range(upto - done):
            next(it, None)
        done = upto
    if not b.per["names"]:
        msg = "no usable structure to index (every file was skipped)"
        raise InputError(msg)
    with atomic_dir(out) as tmp:
        manifest = b.write(tmp)
    log.info(
        "indexed %d structures (%d residues, %d skipped) into %s",
        manifest["n_structures"], manifest["n_residues"], n_bad, out,
    )  # fmt: skip
    return manifest


class atomic_dir:  # noqa: N801 - a context manager used like a function
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (an
    existing index is moved aside, then removed); on any failure or signal it is removed.
    The temporary is named like the output guard's (``.otbio-tmp-HOST-PID-K.NAME``), so a
    later run removes the orphans of a killed one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        from otbio.io import tmp_name

        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        _remove_orphan_dirs(parent)
        self.tmp = parent / tmp_name(self.path.name, 1)
        self.old = parent / tmp_name(self.path.name, 2)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        import signal

        blocked = {signal.SIGTERM, signal.SIGINT}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            moved = False
            if self.path.exists():
                os.replace(self.path, self.old)
                moved = True
            os.replace(self.tmp, self.path)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if moved:
            shutil.rmtree(self.old, ignore_errors=True)


def _remove_orphan_dirs(parent: Path) -> None:
    """Remove temporary index directories left in ``parent`` by killed runs on this host."""
    from otbio.io import _HOST, TMP_PREFIX, _pid_alive

    prefix = f"{TMP_PREFIX}{_HOST}-"
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False):
            pid = e.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(e.path, ignore_errors=True)


# --- querying -----------------------------------------------------------------------------


@dataclass(eq=False)
class StructureIndex:
    """One index directory, its arrays memory-mapped (see the module docstring)."""

    path: str
    manifest: dict
    keys: np.ndarray
    offsets: np.ndarray
    postings: np.ndarray
    n_keys: np.ndarray
    names: np.ndarray
    paths: np.ndarray
    models: np.ndarray
    origin: np.ndarray
    res_offsets: np.ndarray
    ca: np.ndarray
    resnum: np.ndarray
    icode: np.ndarray
    resname: np.ndarray
    chain: np.ndarray

    @property
    def n_structures(self) -> int:
        return int(self.manifest["n_structures"])

    @property
    def resnames(self) -> list[str]:
        return self.manifest["resnames"]

    @property
    def chain_ids(self) -> list[str]:
        return self.manifest["chain_ids"]

    def keys_of(self, k: int) -> np.ndarray:
        """The keys of structure ``k`` (rebuilt from the inverted lists; slow, for append)."""
        if not hasattr(self, "_key_of_posting"):
            self._key_of_posting = np.repeat(self.keys, np.diff(self.offsets))
            self._posting_order = np.argsort(self.postings, kind="stable")
            self._posting_start = np.searchsorted(
                self.postings[self._posting_order], np.arange(self.n_structures + 1)
            )
        a, b = self._posting_start[k], self._posting_start[k + 1]
        return np.sort(self._key_of_posting[self._posting_order[a:b]])

    def structure(self, k: int):
        """Structure ``k`` rebuilt from the stored residues (a :class:`Structure`)."""
        from otbio.align._structure import Structure

        a, b = int(self.res_offsets[k]), int(self.res_offsets[k + 1])
        rn = np.array(self.resnames, dtype=object)
        ch = np.array(self.chain_ids, dtype=object)
        icode = np.array([chr(c) if c else "" for c in self.icode[a:b]], dtype=object)
        ca = self.ca[a:b].astype(np.float64) * COORD_SCALE + self.origin[k]
        return Structure(
            name=str(self.names[k]),
            path=str(self.paths[k]),
            chain=ch[np.asarray(self.chain[a:b], dtype=np.intp)],
            resnum=np.asarray(self.resnum[a:b], dtype=np.int64),
            icode=icode,
            resname=rn[np.asarray(self.resname[a:b], dtype=np.intp)],
            ca=np.ascontiguousarray(ca),
            model=int(self.models[k]),
        )


def _bad_index(path: Path, why: str) -> InputError:
    return InputError(f"`index` {path}: {why}")


def open_index(path: str | os.PathLike) -> StructureIndex:
    """Open one index directory, its arrays memory-mapped; raises :class:`InputError` (one
    line) for anything that is not a complete index of this format and version."""
    p = Path(path)
    if not p.exists():
        raise _bad_index(p, "no such index directory")
    if not p.is_dir():
        raise _bad_index(p, "not an otbio index (a file, not an index directory)")
    mf = p / "manifest.json"
    if not mf.is_file():
        raise _bad_index(p, "not an otbio index (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_index(p, f"corrupt manifest.json ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad_index(p, "not an otbio index (manifest of another format)")
    if manifest.get("version") != VERSION:
        raise _bad_index(p, f"index version {manifest.get('version')}; this otbio reads "
                            f"{VERSION}: rebuild it with `otbio index`")  # fmt: skip
    if manifest.get("features") != _FEATURES or manifest.get("coordinate_scale") != COORD_SCALE:
        raise _bad_index(p, "built with other feature parameters; rebuild it with `otbio index`")
    arrays = {}
    names = ("keys", "offsets", "postings", "res_offsets", *_PER_STRUCTURE, *_PER_RESIDUE)
    for name in names:
        try:
            arrays[name] = np.load(p / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _bad_index(p, f"corrupt or missing {name}.npy ({type(exc).__name__})") from None
    try:
        n = int(manifest["n_structures"])
        n_res = int(manifest["n_residues"])
    except (KeyError, TypeError, ValueError):
        raise _bad_index(p, "corrupt manifest.json (counts)") from None
    shapes_ok = (
        all(len(arrays[k]) == n for k in _PER_STRUCTURE)
        and all(len(arrays[k]) == n_res for k in _PER_RESIDUE)
        and len(arrays["res_offsets"]) == n + 1
        and len(arrays["offsets"]) == len(arrays["keys"]) + 1
        and (len(arrays["offsets"]) == 0 or int(arrays["offsets"][-1]) == len(arrays["postings"]))
        and int(arrays["res_offsets"][-1]) == n_res
        and arrays["ca"].ndim == 2
        and arrays["ca"].shape[1] == 3
    )
    if not shapes_ok:
        raise _bad_index(p, "corrupt (array sizes disagree with manifest.json); rebuild it")
    return StructureIndex(path=str(p), manifest=manifest, **arrays)


def open_indexes(paths: Sequence[str | os.PathLike]) -> list[StructureIndex]:
    """Open index directories; a directory without a manifest whose sub-directories are
    indexes (shards) opens every one of them."""
    out = []
    for path in paths:
        p = Path(path)
        if p.is_dir() and not (p / "manifest.json").exists():
            shards = sorted(d for d in p.iterdir() if (d / "manifest.json").is_file())
            if shards:
                out += [open_index(d) for d in shards]
                continue
        out.append(open_index(p))
    if not out:
        msg = "no index given"
        raise InputError(msg)
    return out


@njit(cache=True, nogil=True)
def _accumulate(qkeys, owner, qw, keys, offsets, postings, stamp, out):
    """``out[t] += qw[a]`` for every structure t in the inverted list of query key a, at
    most once per query pair (``owner[a]``, non-decreasing): a pair whose probes hit t
    several times counts once."""
    nk = keys.shape[0]
    for a in range(qkeys.shape[0]):
        k = np.searchsorted(keys, qkeys[a])
        if k < nk and keys[k] == qkeys[a]:
            w = qw[a]
            tag = owner[a] + 1
            for p in range(offsets[k], offsets[k + 1]):
                t = postings[p]
                if stamp[t] != tag:
                    stamp[t] = tag
                    out[t] += w


def prefilter(query, indexes: Sequence[StructureIndex]) -> list[np.ndarray]:
    """Prefilter scores of every structure of each index (see the module docstring)."""
    qk, owner = probe_keys(query)
    n = sum(ix.n_structures for ix in indexes)
    df = np.zeros(len(qk))
    for ix in indexes:
        keys = np.asarray(ix.keys)
        if not len(keys):
            continue
        k = np.minimum(np.searchsorted(keys, qk), len(keys) - 1)
        offs = np.asarray(ix.offsets)
        df += np.where(keys[k] == qk, offs[k + 1] - offs[k], 0)
    present = df > 0
    qk, owner, df = qk[present], owner[present], df[present]
    idf = np.log(n / df)
    out = []
    for ix in indexes:
        s = np.zeros(ix.n_structures)
        stamp = np.zeros(ix.n_structures, dtype=np.int64)
        _accumulate(qk, owner, idf, np.asarray(ix.keys), np.asarray(ix.offsets),
                    np.asarray(ix.postings), stamp, s)  # fmt: skip
        out.append(s)
    return out


def size_corrected(scores: np.ndarray, n_keys: np.ndarray) -> np.ndarray:
    """Prefilter scores less their least-squares fit by a quadratic in ``log(n_keys)`` over
    the whole database: a structure with more keys holds more of the query's by chance
    (without this, large chains crowd out the planted motifs of a benchmark database; the
    quadratic follows the saturation of the largest chains, which a line over-corrects)."""
    x = np.log(np.maximum(np.asarray(n_keys, dtype=np.float64), 1.0))
    if len(x) < 4 or np.ptp(x) == 0:
        return scores - np.mean(scores)
    x = (x - x.mean()) / x.std()
    a = np.vstack([x * x, x, np.ones_like(x)]).T
    coef = np.linalg.lstsq(a, scores, rcond=None)[0]
    return scores - a @ coef


@njit(cache=True, nogil=True)
def _segments(resnum, chain):
    """:func:`otbio.align._seeds.sequence_segments` of stored residues (compiled)."""
    n = resnum.shape[0]
    seg = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        step = resnum[i] - resnum[i - 1]
        brk = (step != 0 and step != 1) or chain[i] != chain[i - 1]
        seg[i] = seg[i - 1] + (1 if brk else 0)
    return seg


@njit(cache=True, nogil=True)
def _seed_scores(cand, q, qsub, qext, qstarts, sq, w, sep, ca, res_offsets, resnum, chain,
                 scale, n_seeds, d0s, d0, n_iter, out):  # fmt: skip
    """The best seed TM-score (:func:`otbio.align._seeds.fragment_seeds`, one kept) of each
    structure ``cand`` of one index, from its stored coordinates, into ``out``."""
    for c in range(cand.shape[0]):
        k = cand[c]
        a = res_offsets[k]
        b = res_offsets[k + 1]
        if b - a < w:
            out[c] = 0.0
            continue
        t = np.empty((b - a, 3))
        for r in range(b - a):
            for x in range(3):
                t[r, x] = ca[a + r, x] * scale
        tstarts = _window_starts(_segments(resnum[a:b], chain[a:b]), w, 1)
        if tstarts.shape[0] == 0:
            out[c] = 0.0
            continue
        st = _signatures(t, tstarts, w, sep)
        best_d, best_j = _best_fragment_pairs(sq, st, min(2, tstarts.shape[0]))
        tms = _seed_search(q, qsub, qext, t, qstarts, tstarts, best_d, best_j, w, n_seeds, 1,
                           d0s, d0, n_iter, SCREEN_ITER)[0]  # fmt: skip
        out[c] = tms.max() if tms.shape[0] else 0.0


def seed_scores(query, indexes: Sequence[StructureIndex], flat_ids: np.ndarray,
                jobs: int = 1) -> np.ndarray:  # fmt: skip
    """The geometric check of the prefilter's best structures ``flat_ids`` (numbered across
    ``indexes``), on the stored coordinates: the alignment's own seed search
    (:func:`otbio.align._seeds.fragment_seeds`: windows of the query and the target
    compared by their internal CA distances, the ``SEED_CHECK_SEEDS`` best fragment pairs
    superposed and the best extended ``SEED_CHECK_ITER`` rounds to the whole query);
    returns each structure's best seed TM-score (0 where it is too short), computed in
    ``jobs`` threads."""
    from otbio.align._seeds import (
        EXTEND_RESIDUES,
        MAX_QUERY_WINDOWS,
        MIN_SEPARATION,
        RANK_D0,
        SCREEN_RESIDUES,
        STRIDE,
        WINDOW,
        sequence_segments,
        tm_d0_search,
    )
    from otbio.align._superpose import tm_d0

    q = np.ascontiguousarray(query.ca, dtype=np.float64)
    nq = len(q)
    out = np.zeros(len(flat_ids))
    w = min(WINDOW, nq)
    if w < 4 or not len(flat_ids):
        return out
    qseg = sequence_segments(query.resnum, query.chain)
    qstarts = _window_starts(np.ascontiguousarray(qseg, dtype=np.int64), w, STRIDE)
    if qstarts.size > MAX_QUERY_WINDOWS:
        qstarts = qstarts[np.linspace(0, qstarts.size - 1, MAX_QUERY_WINDOWS).astype(int)]
    if qstarts.size == 0:
        return out
    sep = min(MIN_SEPARATION, w - 1)
    sq = _signatures(q, qstarts, w, sep)
    qsub = np.ascontiguousarray(q[:: -(-nq // SCREEN_RESIDUES)])
    qext = np.ascontiguousarray(q[:: -(-nq // EXTEND_RESIDUES)])
    d0s, d0 = tm_d0_search(nq), max(tm_d0(nq), RANK_D0)
    bounds = np.cumsum([0] + [ix.n_structures for ix in indexes])
    shard = np.searchsorted(bounds, flat_ids, side="right") - 1
    tasks = []
    for s, ix in enumerate(indexes):
        pos = np.flatnonzero(shard == s)
        if not len(pos):
            continue
        arrs = (np.asarray(ix.ca), np.asarray(ix.res_offsets), np.asarray(ix.resnum),
                np.asarray(ix.chain))  # fmt: skip
        n_chunks = max(1, min(len(pos) // 32, 8 * max(1, jobs)))
        for part in np.array_split(pos, n_chunks):
            tasks.append((part, (flat_ids[part] - bounds[s]).astype(np.int64), arrs))

    def run(task):
        part, ids, (ca, ro, rn, ch) = task
        res = np.zeros(len(ids))
        _seed_scores(ids, q, qsub, qext, qstarts, sq, w, sep, ca, ro, rn, ch, COORD_SCALE,
                     SEED_CHECK_SEEDS, d0s, d0, SEED_CHECK_ITER, res)  # fmt: skip
        out[part] = res

    if jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(run, tasks))
    else:
        for task in tasks:
            run(task)
    return out


def candidates(query, indexes: Sequence[StructureIndex], max_candidates: int, *,
               check_candidates: int = SEED_CHECK_CANDIDATES, jobs: int = 1):  # fmt: skip
    """The ``max_candidates`` best structures: the key prefilter's ``check_candidates``
    best, ranked by the geometric check (:func:`seed_scores`; ``check_candidates=0``: by
    the key prefilter alone). Returns (structures, their scores)."""
    scores = prefilter(query, indexes)
    flat = size_corrected(np.concatenate(scores), np.concatenate([ix.n_keys for ix in indexes]))
    k = min(max(int(check_candidates), int(max_candidates)), len(flat))
    top = np.argpartition(-flat, k - 1)[:k] if k < len(flat) else np.arange(len(flat))
    top = top[np.argsort(-flat[top], kind="stable")]
    ranked = flat[top]
    if check_candidates > 0:
        geo = seed_scores(query, indexes, top, jobs=jobs)
        order = np.lexsort((-flat[top], -geo))
        top, ranked = top[order], geo[order]
    top, ranked = top[: int(max_candidates)], ranked[: int(max_candidates)]
    bounds = np.cumsum([0] + [ix.n_structures for ix in indexes])
    out = []
    for g in top:
        s = int(np.searchsorted(bounds, g, side="right") - 1)
        out.append(indexes[s].structure(int(g - bounds[s])))
    return out, ranked


def search_index(
    query,
    index: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    targets: Sequence = (),
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    check_candidates: int = SEED_CHECK_CANDIDATES,
    pdb_model: int = 1,
    **search_kw,
):
    """:func:`otbio.align.search` through an index: the key prefilter's ``check_candidates``
    best structures get the geometric check, its ``max_candidates`` best (plus ``targets``)
    are aligned and ranked."""
    from otbio.align._search import search
    from otbio.align._structure import Structure, read_structure

    if int(max_candidates) < 1:
        msg = f"`max_candidates` must be at least 1, got {max_candidates}"
        raise InputError(msg)
    if int(check_candidates) < 0:
        msg = f"`check_candidates` must be at least 0, got {check_candidates}"
        raise InputError(msg)
    paths = [index] if isinstance(index, (str, os.PathLike)) else list(index)
    indexes = open_indexes(paths)
    if not isinstance(query, Structure):
        query = read_structure(query, pdb_model=pdb_model)
    n_all = sum(ix.n_structures for ix in indexes)
    from otbio._workers import worker_count

    threads = worker_count(int(search_kw.get("jobs") or 1), max(1, int(check_candidates)))
    found, scores = candidates(query, indexes, max_candidates, jobs=threads,
                               check_candidates=check_candidates)  # fmt: skip
    log.info(
        "prefilter: %d of %d structures in %d index(es) checked geometrically, %d go on to "
        "the alignment (%s %.3f to %.3f)",
        min(max(check_candidates, max_candidates), n_all) if check_candidates else 0, n_all,
        len(indexes), len(found), "seed TM-scores" if check_candidates else "key scores",
        scores[0] if len(scores) else np.nan, scores[-1] if len(scores) else np.nan,
    )  # fmt: skip
    return search(query, [*found, *targets], pdb_model=pdb_model, **search_kw)
