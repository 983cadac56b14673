"""One query against many targets: parse each structure once, align, rank."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from otbio._errors import InputError
from otbio._progress import progress as progress_bar
from otbio._workers import process_pool, worker_count
from otbio.align._align import Alignment, align, features_of
from otbio.align._features import Features
from otbio.align._structure import Structure, read_structure

log = logging.getLogger("otbio")

__all__ = ["list_targets", "read_structures", "score_table", "search", "write_superposed"]

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz")


def list_targets(spec: str | os.PathLike) -> list[str]:
    """Structure files of a directory (sorted), or the lines of a list file.

    A list file holds one structure per line (selections allowed, ``#`` starts a comment);
    relative paths are taken relative to the list file's folder.
    """
    p = Path(spec)
    if not p.exists():
        msg = f"`targets` {p}: no such directory or list file"
        raise InputError(msg)
    if p.is_dir():
        found = sorted(
            str(f)
            for f in p.iterdir()
            if f.is_file() and f.name.lower().endswith(STRUCTURE_SUFFIXES)
        )
        if not found:
            msg = f"`targets` {p}: no structure files ({', '.join(STRUCTURE_SUFFIXES)})"
            raise InputError(msg)
        return found
    out = []
    for line in p.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        q = Path(line.split(":", 1)[0])
        out.append(line if q.is_absolute() else str(p.parent / line))
    if not out:
        msg = f"`targets` {p}: the list file names no structure"
        raise InputError(msg)
    return out


def _read_one(spec: str, model: int) -> Structure:
    st = read_structure(spec, pdb_model=model)
    features_of(st)
    return st


def _read_chunk(specs: Sequence[str], model: int) -> list[Structure | InputError]:
    """Worker of :func:`read_structures` (a forked process): the parsed structures (the
    features are computed by the caller: faster than sending them back), or the errors."""
    out: list[Structure | InputError] = []
    for spec in specs:
        try:
            out.append(read_structure(spec, pdb_model=model))
        except InputError as exc:
            out.append(exc)
    return out


#: Fewest files for which :func:`read_structures` forks worker processes (gemmi parses
#: with the GIL held, so threads do not run two files at once).
PROCESS_MIN_FILES = 64


def _fork_context():
    import multiprocessing as mp

    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _no_bar(items, **_):
    return items


def read_structures(
    specs: Sequence[str | os.PathLike],
    *,
    pdb_model: int = 1,
    jobs: int = 1,
    skip_bad: bool = False,
    progress: bool = False,
) -> list[Structure]:
    """Read structures and compute their geometric features once, ``jobs`` at a time.

    Parsing (gemmi) holds the GIL, so with ``jobs > 1`` and at least ``PROCESS_MIN_FILES``
    files the work runs in forked worker processes (chunks of files, the structures sent
    back with their features); otherwise in threads, or in this process. With
    ``skip_bad``, files that cannot be used (unreadable, no or too few protein residues)
    are left out with a warning instead of stopping the run (database search).
    """
    specs = [str(s) for s in specs]
    bar = progress_bar if progress else _no_bar
    return _drop_bad(_read_found(specs, pdb_model, jobs, bar), skip_bad)


def _drop_bad(found: list, skip_bad: bool) -> list:
    """The structures of ``found``; its errors raise the first, or with ``skip_bad`` are
    logged as warnings (at least one structure must remain)."""
    kept = []
    for st in found:
        if isinstance(st, InputError):
            if not skip_bad:
                raise st
            log.warning("skipping target: %s", st)
        elif st is not None:
            kept.append(st)
    if found and not kept:
        msg = "no usable target structure (every file was skipped); check `targets`"
        raise InputError(msg)
    return kept


def _read_found(specs: list[str], pdb_model: int, jobs: int, bar) -> list:
    """The structures (with their features) or the errors, one per spec, in order."""
    ctx = _fork_context()
    workers = worker_count(jobs, len(specs))
    if workers > 1 and len(specs) >= PROCESS_MIN_FILES and ctx is not None:
        n_chunks = min(len(specs), 8 * workers)
        chunks = [specs[k::n_chunks] for k in range(n_chunks)]  # interleaved: even sizes
        with process_pool(workers, ctx, what="reading") as pool:
            parts = list(
                bar(
                    pool.map(_read_chunk, chunks, [pdb_model] * n_chunks),
                    total=n_chunks,
                    desc="reading",
                )
            )
        found: list[Structure | InputError | None] = [None] * len(specs)
        for k, part in enumerate(parts):
            found[k::n_chunks] = part
        for st in found:
            if isinstance(st, Structure):
                features_of(st)
    else:

        def one(spec: str) -> Structure | InputError:
            try:
                return _read_one(spec, pdb_model)
            except InputError as exc:
                return exc

        if jobs <= 1 or len(specs) < 8:
            found = [one(s) for s in bar(specs, total=len(specs), desc="reading")]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                found = list(bar(pool.map(one, specs), total=len(specs), desc="reading"))
    return found


#: Fewest targets for which :func:`search` forks worker processes.
PROCESS_MIN_TARGETS = 32

_SEARCH: tuple | None = None  # (query, targets, query features, target features, options)


def _search_chunk(idx: Sequence[int]) -> list[tuple[int, object, dict | None]]:
    """Worker of :func:`search` (a forked process that inherited ``_SEARCH``): for targets
    ``idx``, (k, structure or error, result fields without the query and target). A target
    given as a file spec is read here, so each file is read, featurised and aligned in the
    same process (nothing is sent twice); a structure read here travels back without its
    features (the parent does not need them). A target too large for the serial dense
    route comes back unaligned (fields None) for the parent."""
    from otbio.ot import DENSE_MAX_ENTRIES

    assert _SEARCH is not None
    query, targets, qf, tfs, kw, model = _SEARCH
    out = []
    for k in idx:
        tg = targets[k]
        read_here = not isinstance(tg, Structure)
        if read_here:
            try:
                tg = read_structure(tg, pdb_model=model)
            except InputError as exc:
                out.append((k, exc, None))
                continue
        if (len(query) + 1) * (len(tg) + 1) > DENSE_MAX_ENTRIES:
            out.append((k, tg, None))
            continue
        res = align(
            query,
            tg,
            query_features=qf,
            target_features=None if tfs is None else tfs[k],
            **kw,
        )
        fields = {f.name: getattr(res, f.name) for f in dataclasses.fields(res)}
        del fields["query"], fields["target"]
        if read_here:
            tg._cache.clear()
        out.append((k, tg if read_here else None, fields))
    return out


def search(
    query: Structure | str | os.PathLike,
    targets: Sequence[Structure | str | os.PathLike] = (),
    *,
    index: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    max_candidates: int | None = None,
    check_candidates: int | None = None,
    query_features: Features | None = None,
    target_features: Sequence[Features] | None = None,
    jobs: int = 1,
    progress: bool = False,
    pdb_model: int = 1,
    skip_bad: bool = False,
    **align_kw,
) -> list[Alignment]:
    """Align one query onto every target and rank the results by TM-score (best first).

    The query and the targets are :class:`Structure` objects or file specs (paths,
    ``FILE:CHAIN:RANGES``, ``FILE@MODEL``; model ``pdb_model`` unless the spec names one).
    On the CPU, with ``jobs > 1`` and at least ``PROCESS_MIN_TARGETS`` targets, the
    targets are split over ``jobs`` forked worker processes, each reading its files (each
    parsed once), computing their features and aligning them, every alignment a serial
    dense Sinkhorn; targets of several thousand residues, and every target without worker
    processes, align one after another in this process, each using every core through
    the engine's parallel kernels.

    Stages: :func:`_prepare` (checks, the query and its features), :func:`_worker_context`
    (workers or not), :func:`_read_targets`, :func:`_align_in_workers`,
    :func:`_align_here` (what is left, in this process) and :func:`_ranked`.

    Parameters
    ----------
    query, targets
        Structures or file specs (mixed freely).
    index
        An index directory (``otbio index``), or several (shards): the prefilter's
        ``max_candidates`` best structures (default 500) are aligned, besides ``targets``
        (see :mod:`otbio.align._index`). Without it every target is aligned.
    max_candidates
        Structures the index's prefilter passes on to the alignment.
    check_candidates
        With ``index``: how many of the key prefilter's best get the geometric check
        before the ``max_candidates`` best are aligned (default 20,000; 0: the keys
        alone).
    query_features, target_features
        Embeddings for the query and for every target (both or neither; with embeddings
        the targets must be structures).
    jobs
        Worker processes (the command line passes the global ``--jobs``); at most one per
        available CPU and per target (:func:`otbio._workers.worker_count`). The workers die
        with this process (:func:`otbio._workers.process_pool`).
    progress
        Report the alignments done on stderr.
    pdb_model
        Model read from multi-model files given as paths (``FILE@N`` overrides it).
    skip_bad
        Leave out target files that cannot be used (unreadable, no or too few protein
        residues) with a warning instead of raising :class:`InputError` (database search).
    **align_kw
        Options of :func:`align`.

    Returns
    -------
    list of Alignment
        Sorted by decreasing TM-score (normalised by the query; NaN last), then by score.
    """
    if index is not None:
        from otbio.align._index import (
            DEFAULT_MAX_CANDIDATES,
            SEED_CHECK_CANDIDATES,
            search_index,
        )

        n_cand = DEFAULT_MAX_CANDIDATES if max_candidates is None else max_candidates
        n_check = SEED_CHECK_CANDIDATES if check_candidates is None else check_candidates
        return search_index(query, index, targets=targets, jobs=jobs, progress=progress,
                            max_candidates=n_cand, check_candidates=n_check,
                            pdb_model=pdb_model, skip_bad=skip_bad, **align_kw)  # fmt: skip
    feats = (query_features, target_features)
    query, targets, n_jobs = _prepare(query, targets, feats, jobs, pdb_model)
    ctx = _worker_context(query, targets, n_jobs, align_kw)
    if target_features is not None or ctx is None:
        targets = _read_targets(targets, pdb_model, n_jobs, skip_bad)
    results: list[Alignment | None] = [None] * len(targets)
    if ctx is not None:
        targets, results = _align_in_workers(query, targets, feats, align_kw, pdb_model,
                                             n_jobs, ctx, progress, skip_bad)  # fmt: skip
    _align_here(query, targets, results, feats, align_kw, progress)
    return _ranked(results)


def _prepare(query, targets, feats, jobs: int, pdb_model: int):
    """Stage 1 of :func:`search`: check the embeddings ``feats`` (query's, targets'), read
    the query and compute its features once (before any worker starts).

    Returns the query :class:`Structure`, the targets as a list, and the number of worker
    processes (at most one per target and per CPU)."""
    query_features, target_features = feats
    if (query_features is None) != (target_features is None):
        msg = "give embeddings for the query and for every target, or for none"
        raise InputError(msg)
    if target_features is not None and len(target_features) != len(targets):
        msg = f"{len(target_features)} target embeddings for {len(targets)} targets"
        raise InputError(msg)
    n_jobs = worker_count(jobs, len(targets))  # never more workers than targets or CPUs
    if not isinstance(query, Structure):
        query = read_structure(query, pdb_model=pdb_model)
    targets = list(targets)
    if query_features is None:
        features_of(query)  # once, before the workers start
    return query, targets, n_jobs


def _worker_context(query: Structure, targets: list, n_jobs: int, align_kw: dict):
    """Stage 2 of :func:`search`: whether the targets are split over forked workers (on
    the CPU, ``n_jobs > 1``, at least ``PROCESS_MIN_TARGETS`` targets, every target given
    as a structure small enough for the serial dense route).

    Returns the fork context when they are, else None."""
    from otbio.ot import DENSE_MAX_ENTRIES, resolve_device

    ctx = _fork_context()
    cpu = resolve_device(align_kw.get("device", "cpu")) == "cpu"
    # the slack point of partial transport adds a row or a column
    forked = (
        n_jobs > 1
        and cpu
        and len(targets) >= PROCESS_MIN_TARGETS
        and ctx is not None
        and all(
            (len(query) + 1) * (len(t) + 1) <= DENSE_MAX_ENTRIES
            for t in targets
            if isinstance(t, Structure)
        )
    )
    return ctx if forked else None


def _read_targets(targets: list, pdb_model: int, n_jobs: int, skip_bad: bool) -> list:
    """Stage 3 of :func:`search` (no workers, or embeddings): read the targets given as
    file specs here, ``n_jobs`` at a time.

    Returns the targets as structures (unusable files dropped with ``skip_bad``)."""
    specs = [k for k, t in enumerate(targets) if not isinstance(t, Structure)]
    if specs:
        found = _read_found([str(targets[k]) for k in specs], pdb_model, n_jobs, _no_bar)
        for k, st in zip(specs, found, strict=True):
            targets[k] = st
        targets = _drop_bad(targets, skip_bad)
    return targets


def _align_in_workers(query, targets, feats, align_kw, pdb_model, n_jobs, ctx, progress,
                      skip_bad):  # fmt: skip
    """Stage 4 of :func:`search`: read and align the targets in ``n_jobs`` forked worker
    processes (:func:`_search_chunk`, which inherit ``_SEARCH``).

    Returns the targets (read, unusable files dropped with ``skip_bad``) and their
    alignments, None for a target too large for a worker (aligned by :func:`_align_here`)."""
    global _SEARCH
    query_features, target_features = feats
    results: list[Alignment | None] = [None] * len(targets)
    # load the alignment kernels here, once, so that the forked workers inherit them
    align(query, query, query_features=query_features, target_features=query_features,
          **align_kw)  # fmt: skip
    n_chunks = min(len(targets), 4 * n_jobs)
    chunks = [list(range(k, len(targets), n_chunks)) for k in range(n_chunks)]
    _SEARCH = (query, targets, query_features, target_features, align_kw, pdb_model)
    try:
        with process_pool(n_jobs, ctx, what="alignments") as pool:
            parts = pool.map(_search_chunk, chunks)
            if progress:
                parts = progress_bar(parts, total=n_chunks, desc="aligning")
            parts = list(parts)
    finally:
        _SEARCH = None
    for part in parts:
        for k, st, fields in part:
            if st is not None:
                targets[k] = st
            if fields is not None:
                results[k] = Alignment(query=query, target=targets[k], **fields)
    keep = [k for k in range(len(targets)) if not isinstance(targets[k], InputError)]
    targets = _drop_bad(targets, skip_bad)
    return targets, [results[k] for k in keep]


def _align_here(query, targets, results, feats, align_kw, progress) -> None:
    """Stage 5 of :func:`search`: align in this process every target whose entry of
    ``results`` is None (each alignment using every core), filling ``results`` in place."""
    query_features, target_features = feats
    todo = [k for k in range(len(targets)) if results[k] is None]
    show = progress and len(todo) > 1
    it = progress_bar(todo, total=len(todo), desc="aligning") if show else todo
    for k in it:
        results[k] = align(
            query,
            targets[k],
            query_features=query_features,
            target_features=None if target_features is None else target_features[k],
            **align_kw,
        )


def _ranked(results: list[Alignment]) -> list[Alignment]:
    """Stage 6 of :func:`search`: the alignments by decreasing TM-score (by the query; NaN
    last), then by score, then in the order given."""
    order = sorted(
        range(len(results)),
        key=lambda i: (-np.nan_to_num(results[i].tm_score, nan=-1.0), -results[i].score, i),
    )
    return [results[i] for i in order]


def score_table(results: Sequence[Alignment]):
    """The score table (pandas DataFrame), one row per target, with a ``rank`` column."""
    import pandas as pd

    df = pd.DataFrame([r.summary() for r in results])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def write_superposed(result: Alignment, path: str | os.PathLike) -> None:
    """Write the query structure (all atoms of the model read) superposed onto the target,
    as PDB or, for a ``.cif``/``.mmcif`` name, as mmCIF.

    Uses the rotation and translation of ``result`` (TM-score superposition of the pairs);
    raises :class:`InputError` when there were fewer than 3 pairs to superpose.
    """
    import gemmi

    from otbio.io import write_text

    if result.n_pairs < 3:
        msg = f"only {result.n_pairs} pair(s) above `threshold`: too few to superpose"
        raise InputError(msg)
    q = result.query
    if not q.path:
        msg = "the query was built in memory; there is no file to superpose"
        raise InputError(msg)
    st = gemmi.read_structure(q.path)
    while len(st) > q.model:
        del st[len(st) - 1]
    for _ in range(q.model - 1):
        del st[0]
    rot = gemmi.Mat33(result.rotation.tolist())
    tr = gemmi.Vec3(*result.translation.tolist())
    st[0].transform_pos_and_adp(gemmi.Transform(rot, tr))
    # text, then the checked staged write: gemmi's own writer ignores a full disk
    cif = str(path).lower().endswith((".cif", ".mmcif"))
    write_text(st.make_mmcif_document().as_string() if cif else st.make_pdb_string(), path)
