"""Key names, the reference fingerprint and the collection of samples from cell AnnData."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from otbio._contract import with_params
from otbio._errors import InputError, listing, not_found

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

log = logging.getLogger("otbio")

__all__ = [
    "BARY_KEY",
    "EMB_KEY",
    "REF_KEY",
    "Samples",
    "check_same_reference",
    "representation_mismatch",
    "collect_embedded",
    "collect_samples",
    "dim_names",
    "embedding_entry",
    "reference_arrays",
    "reference_entry",
    "reference_id",
]

REF_KEY = "lot_reference"
EMB_KEY = "lot"
BARY_KEY = "lot_barycenter"

# parameters that files written before the AnnData contract kept flat in uns[key]
_REF_LEGACY = ("method", "size", "use_rep", "vars", "sample_key", "seed", "stratified_by",
               "min_points")  # fmt: skip
_EMB_LEGACY = ("use_rep", "vars", "sample_key", "weight_key", "solver", "epsilon",
               "relative_epsilon", "tol", "raw_map")  # fmt: skip
_EMPTY_MEANT_NONE = ("use_rep", "vars", "sample_key", "weight_key", "relative_epsilon",
                     "stratified_by")  # fmt: skip


def reference_id(z: np.ndarray, r: np.ndarray) -> str:
    """Fingerprint of a reference: 16 hex digits of SHA-256 over support then weights."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(z, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(r, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def dim_names(use_rep: str | None, vars: Sequence[str] | None, d: int) -> list[str]:
    """Names of the d dimensions: the vars, or ``{use_rep}_{j}`` counted from 1 (``X_pca_1`` is
    the first principal component, PC1 in scanpy's figures)."""
    if vars:
        return [str(v) for v in vars]
    return [f"{use_rep or 'X'}_{j + 1}" for j in range(d)]


def reference_arrays(ref: AnnData) -> tuple[np.ndarray, np.ndarray, dict]:
    """Support (k, d), weights (k,) and parameters of a reference AnnData, checked."""
    from otbio.io import check_points, check_weights

    if REF_KEY not in ref.uns:
        msg = f"the reference has no uns['{REF_KEY}']; make it with `otbio reference`"
        raise InputError(msg)
    if "weight" not in ref.obs:
        msg = "the reference has no obs['weight']; make it with `otbio reference`"
        raise InputError(msg)
    z = check_points(np.asarray(ref.X), name="reference support points")
    r = check_weights(ref.obs["weight"].to_numpy(), z.shape[0], name="reference weights")
    r = r / r.sum()
    return z, r, reference_entry(ref.uns[REF_KEY])


def reference_entry(entry: Mapping) -> dict:
    """``uns['lot_reference']`` in the current layout (flat files of earlier versions too)."""
    e = with_params(entry, _REF_LEGACY, empty=_EMPTY_MEANT_NONE)
    p = e["params"]
    if "stratified_by" in p:  # earlier files: the cell-type column of a stratified reference
        p["celltype_key"] = str(p.pop("stratified_by"))
        p["stratify"] = True
    if p.get("min_points") == 0 and not p.get("stratify"):
        p.pop("min_points")
    return e


def embedding_entry(emb: AnnData, *, name: str = "the embedding") -> dict:
    """``uns['lot']`` of an embedding in the current layout: the results (``reference``,
    ``reference_weights``, ``reference_id``, ``dims``, ``convergence``, ...) at the top and
    the parameters of :func:`otbio.lot.embed` under ``params``. Embeddings written before
    the AnnData contract (parameters flat in ``uns['lot']``) are read too."""
    if EMB_KEY not in emb.uns or "reference" not in emb.uns[EMB_KEY]:
        msg = f"{name} has no uns['{EMB_KEY}']; make it with `otbio embed`"
        raise InputError(msg)
    e = with_params(emb.uns[EMB_KEY], _EMB_LEGACY, empty=_EMPTY_MEANT_NONE)
    p = e["params"]
    if p.get("solver", "exact") == "exact":  # earlier files wrote 0 / "" for these
        for k in ("epsilon", "relative_epsilon", "tol", "epsilon_scaling", "max_iter"):
            p.pop(k, None)
    rp = e.get("reference_params")
    if isinstance(rp, Mapping) and "reference_id" in rp:  # earlier: the reference's flat entry
        e["reference_params"] = reference_entry(rp)["params"]
    return e


def check_same_reference(ids: Sequence[str], names: Sequence[str] | None = None) -> str:
    """Return the common reference id, or raise InputError naming the odd one out."""
    ids = [str(i) for i in ids]
    if not ids:
        msg = "no embeddings given"
        raise InputError(msg)
    names = list(names) if names is not None else [f"#{i}" for i in range(len(ids))]
    for i, name in zip(ids[1:], names[1:]):
        if i != ids[0]:
            msg = (
                f"{name} was embedded against another reference (id {i}) than {names[0]} "
                f"(id {ids[0]}); embed every shard with the same `reference`"
            )
            raise InputError(msg)
    return ids[0]


def same_value(a, b) -> bool:
    """Equal parameters (None, scalars, strings or lists) as read back from h5ad."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool((a == b).all())


#: the parameters that name the cell coordinates of a reference or an embedding
REP_KEYS = ("use_rep", "vars")


def _rep_text(params: Mapping) -> str:
    vars_ = params.get("vars")
    if vars_ is not None and np.size(vars_):
        return f"vars {','.join(str(v) for v in np.atleast_1d(vars_))}"
    return f"use_rep {params.get('use_rep')}"


def representation_mismatch(params: Mapping, other: Mapping) -> str | None:
    """None when two parameter sets name the same cell coordinates (``use_rep`` and
    ``vars``), else the two as text (``"use_rep X_other" / "use_rep X_pca"``).

    The one check of :func:`otbio.lot.embed` (cells against the reference they are
    embedded on) and :func:`otbio.lot.concat` (shards against each other)."""
    for key in REP_KEYS:
        if not same_value(params.get(key), other.get(key)):
            return f"{_rep_text(params)} / {_rep_text(other)}"
    return None


@dataclass
class Samples:
    """Cells grouped by sample: ids, point clouds, weights and sample-level obs."""

    ids: list[str]
    points: list[np.ndarray]
    weights: list[np.ndarray]
    obs: pd.DataFrame
    loadings: np.ndarray | None = None
    genes: list[str] | None = None


def _sample_level(obs: pd.DataFrame, codes: np.ndarray, n: int) -> pd.DataFrame:
    """Columns of ``obs`` that are constant within each sample, one row per sample."""
    import pandas as pd

    cols = {}
    for col in obs.columns:
        s = obs[col]
        try:
            nun = s.groupby(codes, observed=True).nunique(dropna=False)
        except TypeError:  # unhashable values
            continue
        if len(nun) == n and (nun <= 1).all():
            first = s.groupby(codes, observed=True).first()
            vals = first.reindex(range(n))
            if isinstance(s.dtype, pd.CategoricalDtype):
                vals = vals.astype(str)
            cols[col] = vals.to_numpy()
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


def valid_loadings(pcs: np.ndarray, genes: list[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """The rows of ``varm['PCs']`` with finite loadings, and their genes.

    Scanpy writes NaN loadings for genes left out of the PCA (e.g. not highly variable):
    those genes cannot be reconstructed from PCA coordinates and are dropped (logged).
    Returns ``(None, None)`` when no gene has finite loadings.
    """
    ok = np.isfinite(pcs).all(1)
    if not ok.all():
        log.info(
            "PCA loadings: %d of %d genes have NaN loadings (outside the PCA) and are left out "
            "of gene read-backs",
            int((~ok).sum()),
            ok.size,
        )
    if not ok.any():
        return None, None
    return np.ascontiguousarray(pcs[ok]), [g for g, keep in zip(genes, ok) if keep]


def collect_samples(
    adatas: Sequence[AnnData],
    *,
    sample_key: str | None,
    use_rep: str | None = None,
    vars: Sequence[str] | None = None,
    weight_key: str | None = None,
    samples: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> Samples:
    """Split cells into samples (one or more AnnData; one file per sample works too).

    With ``sample_key=None`` every AnnData is one sample named ``names[i]`` (file stems).
    Raises InputError for a missing key, NaN coordinates, an empty sample or one whose
    weights sum to zero, a sample id found in two inputs, or an unknown id in ``samples``.
    """
    import pandas as pd

    from otbio.io import get_rep

    if use_rep is None and not vars:
        msg = "give the cell coordinates with use_rep (e.g. X_pca) or `vars`"
        raise InputError(msg)
    names = list(names) if names is not None else [f"input {i}" for i in range(len(adatas))]
    if sample_key is None and len(adatas) == 1:
        msg = "pass sample_key (the obs column naming the sample of each cell)"
        raise InputError(msg)
    ids: list[str] = []
    pts: list[np.ndarray] = []
    wts: list[np.ndarray] = []
    frames = []
    seen: dict[str, str] = {}
    want = None if samples is None else [str(s) for s in samples]
    if want is not None and len(set(want)) < len(want):
        dup = next(s for i, s in enumerate(want) if s in want[:i])
        msg = f"`samples` names '{dup}' {want.count(dup)} times; give each sample once"
        raise InputError(msg)
    d = None
    loadings = genes = None
    for ad_, name in zip(adatas, names):
        x = get_rep(
            ad_, use_rep=use_rep, vars=list(vars) if vars else None, what=f"cells in {name}"
        )
        if d is not None and x.shape[1] != d:
            msg = f"{name} has {x.shape[1]} dimensions, the first input {d}"
            raise InputError(msg)
        d = x.shape[1]
        if loadings is None and use_rep == "X_pca" and "PCs" in ad_.varm:
            pcs = np.asarray(ad_.varm["PCs"], dtype=np.float64)
            if pcs.ndim == 2 and pcs.shape[1] == d:
                loadings, genes = valid_loadings(pcs, [str(g) for g in ad_.var_names])
        w_all = _cell_weights(ad_, weight_key, name)
        uniq, codes = _sample_codes(ad_, sample_key, name)
        level = _sample_level(
            ad_.obs.drop(columns=[c for c in [sample_key] if c]), codes, len(uniq)
        )
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
        for i, sid in enumerate(uniq):
            if want is not None and sid not in want:
                continue
            if sid in seen:
                msg = (
                    f"sample '{sid}' appears in both {seen[sid]} and {name}; give each sample "
                    "once (rename it in one file, or drop one file)"
                )
                raise InputError(msg)
            seen[sid] = name
            rows = order[bounds[i] : bounds[i + 1]]
            if rows.size == 0:
                msg = f"sample '{sid}' in {name} has no cells; drop it or pass `samples`"
                raise InputError(msg)
            ids.append(sid)
            pts.append(np.ascontiguousarray(x[rows]))
            wts.append(_sample_weights(w_all[rows], sid))
            row = level.iloc[[i]].copy()
            row.index = [sid]
            frames.append(row)
    if want is not None:
        ids, pts, wts, frames = _as_requested(want, seen, ids, pts, wts, frames)
    if not ids:
        msg = "no samples found in the input"
        raise InputError(msg)
    obs = pd.concat(frames, axis=0, join="inner") if len(frames) > 1 else frames[0]
    obs.index = pd.Index(ids, dtype=object).astype(str)
    obs.index.name = None
    obs["n_cells"] = np.array([p.shape[0] for p in pts], dtype=np.int64)
    return Samples(ids, pts, wts, obs, loadings, genes)


def _cell_weights(ad_: AnnData, weight_key: str | None, name: str) -> np.ndarray:
    """The cell weights ``obs[weight_key]`` of one input as float64 (NaN where not numeric;
    checked per sample), or ones."""
    import pandas as pd

    if weight_key is None:
        return np.ones(ad_.n_obs)
    if weight_key not in ad_.obs:
        raise not_found("obs column", weight_key, name, ad_.obs.columns, "weight_key")
    return pd.to_numeric(ad_.obs[weight_key], errors="coerce").to_numpy(np.float64)


def _sample_codes(ad_: AnnData, sample_key: str | None, name: str) -> tuple[list[str], np.ndarray]:
    """The sample ids of one input (categories in their order, else first appearance; the
    input ``name`` itself without ``sample_key``) and each cell's index into them."""
    import pandas as pd

    if sample_key is None:
        return [str(name)], np.zeros(ad_.n_obs, dtype=np.int64)
    if sample_key not in ad_.obs:
        raise not_found("obs column", sample_key, name, ad_.obs.columns, "sample_key")
    col = ad_.obs[sample_key]
    if col.isna().any():
        msg = f"obs column '{sample_key}' in {name} has missing values"
        raise InputError(msg)
    labels = col.astype(str).to_numpy()
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in col.cat.categories]
        uniq = [c for c in cats]  # categories with no cells become empty samples
    else:
        uniq = list(dict.fromkeys(labels))
    index = {u: i for i, u in enumerate(uniq)}
    return uniq, np.array([index[s] for s in labels], dtype=np.int64)


def _sample_weights(w: np.ndarray, sid: str) -> np.ndarray:
    """The weights ``w`` of sample ``sid``'s cells, checked and normalised to sum to one."""
    if not np.isfinite(w).all() or (w < 0).any():
        msg = f"cell weights of sample '{sid}' contain NaN or negative values; fix weight_key"
        raise InputError(msg)
    if not w.sum() > 0:
        msg = f"cell weights of sample '{sid}' sum to zero; check weight_key"
        raise InputError(msg)
    return w / w.sum()


def _as_requested(
    want: list[str], seen: dict[str, str], ids: list[str], *cols: list
) -> tuple[list, ...]:
    """Check that every sample in ``want`` was found (InputError listing the missing ones)
    and reorder ``ids`` and each of ``cols`` (lists parallel to ids) as ``want`` gives."""
    missing = [s for s in want if s not in seen]
    if missing:
        msg = (
            f"samples not found: {listing(missing, 5)} (samples there: {listing(sorted(seen))}); "
            "check `samples`"
        )
        raise InputError(msg)
    # keep the order the user gave
    pos = {s: i for i, s in enumerate(ids)}
    sel = [pos[s] for s in want]
    return tuple([c[i] for i in sel] for c in (ids, *cols))


#: hints of :func:`collect_samples` that name options of ``embed`` / ``reference``
_EMBED_HINT = re.compile(
    r"(?:drop it or )?(?:(?:pass|check|fix) `?(?:use_rep|vars|sample_key|weight_key|samples)`?"
    r"|set `?(?:use_rep|vars|sample_key|weight_key|samples)`? to one of those)"
)


def collect_embedded(
    adatas: Sequence[AnnData],
    params: Mapping,
    *,
    samples: Sequence[str],
    names: Sequence[str] | None = None,
) -> Samples:
    """The cells of an embedding's ``samples``, read as :func:`otbio.lot.embed` read them
    (``params``: its ``use_rep``, ``vars``, ``sample_key`` and ``weight_key``).

    For the analyses that take the cells again (distances, barycenter, classify): their
    errors point to the cells, not to options of ``embed`` the command at hand lacks.
    """
    try:
        return collect_samples(
            adatas,
            sample_key=params.get("sample_key") or None,
            use_rep=params.get("use_rep") or None,
            vars=[str(v) for v in np.atleast_1d(params["vars"])]
            if params.get("vars") is not None and np.size(params["vars"])
            else None,
            weight_key=params.get("weight_key") or None,
            samples=samples,
            names=names,
        )
    except InputError as exc:
        msg = _EMBED_HINT.sub("pass the cells the embedding was made from", str(exc))
        raise InputError(msg) from None
