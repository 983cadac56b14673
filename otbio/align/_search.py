"""One query against many targets: parse each structure once, align, rank."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from otbio._errors import InputError
from otbio._progress import progress
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
        msg = f"--targets {p}: no such directory or list file"
        raise InputError(msg)
    if p.is_dir():
        found = sorted(
            str(f)
            for f in p.iterdir()
            if f.is_file() and f.name.lower().endswith(STRUCTURE_SUFFIXES)
        )
        if not found:
            msg = f"--targets {p}: no structure files ({', '.join(STRUCTURE_SUFFIXES)})"
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
        msg = f"--targets {p}: the list file names no structure"
        raise InputError(msg)
    return out


def read_structures(
    specs: Sequence[str], *, model: int = 1, jobs: int = 1, skip_bad: bool = False
) -> list[Structure]:
    """Read structures and compute their geometric features once, in threads if ``jobs > 1``.

    Parsing (gemmi) and the features (NumPy) run no Numba kernel, so threads are safe here.
    With ``skip_bad``, files that cannot be used (unreadable, no or too few protein
    residues) are left out with a warning instead of stopping the run (database search).
    """

    def one(spec: str) -> Structure | None:
        try:
            st = read_structure(spec, model=model)
        except InputError as exc:
            if not skip_bad:
                raise
            log.warning("skipping target: %s", exc)
            return None
        features_of(st)
        return st

    specs = list(specs)
    if jobs <= 1 or len(specs) < 8:
        out = [one(s) for s in progress(specs, total=len(specs), desc="reading")]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            out = list(progress(pool.map(one, specs), total=len(specs), desc="reading"))
    kept = [st for st in out if st is not None]
    if specs and not kept:
        msg = "no usable target structure (every file was skipped); check --targets"
        raise InputError(msg)
    return kept


def search(
    query: Structure,
    targets: Sequence[Structure],
    *,
    query_features: Features | None = None,
    target_features: Sequence[Features] | None = None,
    **align_kw,
) -> list[Alignment]:
    """Align one query onto every target and rank the results by score (best first).

    Sinkhorn runs one alignment after another (each uses every core through Numba), as the
    engine requires; structures should be read beforehand with :func:`read_structures`,
    which parses each file once.

    Parameters
    ----------
    query, targets
        Structures.
    query_features, target_features
        Embeddings for the query and for every target (both or neither).
    **align_kw
        Options of :func:`align`.

    Returns
    -------
    list of Alignment
        Sorted by decreasing score, then by TM-score.
    """
    if (query_features is None) != (target_features is None):
        msg = "give embeddings for the query and for every target, or for none"
        raise InputError(msg)
    if target_features is not None and len(target_features) != len(targets):
        msg = f"{len(target_features)} target embeddings for {len(targets)} targets"
        raise InputError(msg)
    results = []
    it = progress(targets, total=len(targets), desc="aligning") if len(targets) > 1 else targets
    for k, t in enumerate(it):
        tf = None if target_features is None else target_features[k]
        results.append(
            align(query, t, query_features=query_features, target_features=tf, **align_kw)
        )
    order = sorted(
        range(len(results)),
        key=lambda i: (-results[i].score, -np.nan_to_num(results[i].tm_score, nan=-1.0), i),
    )
    return [results[i] for i in order]


def score_table(results: Sequence[Alignment]):
    """The score table (pandas DataFrame), one row per target, with a ``rank`` column."""
    import pandas as pd

    df = pd.DataFrame([r.summary() for r in results])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def write_superposed(result: Alignment, path: str | os.PathLike) -> None:
    """Write the query structure (all atoms of the model read) superposed onto the target.

    Uses the rotation and translation of ``result`` (TM-score superposition of the pairs);
    raises :class:`InputError` when there were fewer than 3 pairs to superpose.
    """
    import gemmi

    from otbio.io import atomic_path

    if result.n_pairs < 3:
        msg = f"only {result.n_pairs} pair(s) above --threshold: too few to superpose"
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
    with atomic_path(path) as tmp:
        st.write_pdb(str(tmp))
