"""The read-back stage of :func:`otbio.lot.classify`: a linear rule's weights in cell space.

A linear score on LOT vectors decomposes over the reference points (see
:mod:`otbio.lot._classify`), so the weight block :math:`w_k \\in \\mathbb{R}^d` of reference
point :math:`z_k` says where in cell space (its norm), which features (its components, or genes
through the PCA loadings) and which cell types (those the point transports to) separate the
classes. :func:`read_back` builds the ``points`` and ``features`` tables from the classifier
fitted on all samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from otbio.lot._classify import CellsBySample, ClassifyData

__all__ = ["ReadBack", "read_back", "transport_labels"]


def transport_labels(
    z: np.ndarray,
    r: np.ndarray,
    cells: CellsBySample,
    types: Sequence[str],
    *,
    jobs: int = 1,
) -> np.ndarray:
    """Share of each cell type in the cells that each reference point transports to.

    Recomputes the exact plan (``ot.emd``) from the reference to every sample and returns
    ``S`` of shape (n_samples, k, n_types) with
    :math:`S_{ikt} = \\frac{1}{r_k} \\sum_{j: \\text{type}(x_j) = t} P^{(i)}_{kj}`.
    """
    import otbio.ot as O

    types = list(types)
    index = {t: i for i, t in enumerate(types)}

    def one(i: int) -> np.ndarray:
        lab = cells.celltypes[i]  # type: ignore[index]
        onehot = np.zeros((lab.size, len(types)))
        onehot[np.arange(lab.size), [index[t] for t in lab]] = 1.0
        out = O.emd(z, cells.points[i], r, cells.weights[i])
        mass = out.plan_dot(onehot)
        return mass / np.maximum(mass.sum(1, keepdims=True), 1e-300)

    return np.stack(O.map_batch(one, list(range(len(cells.points))), jobs=jobs, threads=True))


def _fmt(names: Sequence[str], values: np.ndarray, n: int) -> str:
    order = [j for j in np.argsort(-np.abs(values), kind="stable")[:n] if values[j] != 0]
    return ",".join(f"{names[j]}:{values[j]:+.3g}" for j in order)


def _per_point(vals: np.ndarray) -> np.ndarray:
    """(rows, k, p) -> (k, p): the one row, signed (two classes), or the norm over rows."""
    return vals[0] if vals.shape[0] == 1 else np.sqrt((vals**2).sum(0))


@dataclass
class ReadBack:
    """What :func:`read_back` returns (see :class:`otbio.lot._classify.ClassifyResult`)."""

    points: pd.DataFrame  # reference points ranked by the norm of their scaled weights
    features: pd.DataFrame  # per dimension (and gene): how far it moves between the classes
    weights: np.ndarray  # (n_rows, k, d) weights in the embedding's units
    dims: list[str]  # the d dimension names
    shares: np.ndarray | None  # (n_samples, k, n_types) transport shares, with cell types


def class_shift(v: np.ndarray, r: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The class difference of the displacements :math:`T(z_k) - z_k` (cell-space units).

    Takes the LOT vectors ``v`` (n, k*d), the weights ``r`` (k,) and the labels; returns
    (1, k, d) for two classes (``classes[1]`` minus ``classes[0]``), else (c, k, d) (each class
    minus the rest).
    """
    k = r.size
    disp = v.reshape(-1, k, v.shape[1] // k) / np.sqrt(r)[None, :, None]
    if classes.size == 2:
        return (disp[y == classes[1]].mean(0) - disp[y == classes[0]].mean(0))[None]
    return np.stack([disp[y == c].mean(0) - disp[y != c].mean(0) for c in classes])


def _points_table(w_scaled: np.ndarray, r: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Reference points ranked by the norm of their scaled weights ``w_scaled`` (rows, k, d).

    Returns the table (rank, ref_point, weight_norm, weight_share, n_selected, ref_weight)
    and the ranking (k,).
    """
    import pandas as pd

    norm = np.sqrt((w_scaled**2).sum(axis=(0, 2)))
    order = np.argsort(-norm, kind="stable")
    pts = pd.DataFrame(
        {
            "rank": np.arange(1, norm.size + 1),
            "ref_point": order,
            "weight_norm": norm[order],
            "weight_share": (norm[order] ** 2) / max(float((norm**2).sum()), 1e-300),
            "n_selected": (np.abs(w_scaled) > 0).any(0).sum(1)[order],
            "ref_weight": r[order],
        }
    )
    return pts, order


def _celltype_columns(
    pts: pd.DataFrame,
    order: np.ndarray,
    share: np.ndarray,
    types: list[str],
    y: np.ndarray,
    classes: np.ndarray,
) -> None:
    """Add to ``pts`` (in place) the cell types its points transport to, from ``share``
    (n_samples, k, n_types): pooled, per class, and the type whose share changes most."""
    pooled = share.mean(0)
    pts["celltype"] = np.asarray(types, dtype=object)[pooled.argmax(1)][order]
    pts["celltype_share"] = pooled.max(1)[order]
    by_class = np.stack([share[y == c].mean(0) for c in classes])  # (c, k, t)
    for ci, c in enumerate(classes):
        pts[f"celltype:{c}"] = np.asarray(types, dtype=object)[by_class[ci].argmax(1)][order]
    spread = by_class.max(0) - by_class.min(0)  # (k, t)
    pts["celltype_change"] = np.asarray(types, dtype=object)[spread.argmax(1)][order]
    pts["change_share"] = spread.max(1)[order]


def _features_table(
    move: np.ndarray, gene_w: np.ndarray | None, dims: list[str], genes: list[str] | None
) -> pd.DataFrame:
    """Per dimension (and per gene with ``gene_w``): the norm of the class difference ``move``
    (rows, k, d) over the rows and points, ranked within each kind."""
    import pandas as pd

    fdim = np.sqrt((move**2).sum(axis=(0, 1)))
    frames = [pd.DataFrame({"kind": "dim", "feature": dims, "importance": fdim})]
    if gene_w is not None:
        frames.append(
            pd.DataFrame(
                {
                    "kind": "gene",
                    "feature": genes,
                    "importance": np.sqrt((gene_w**2).sum(axis=(0, 1))),
                }
            )
        )
    features = pd.concat(frames, ignore_index=True)
    features = features.sort_values(["kind", "importance"], ascending=[True, False], kind="stable")
    features["rank"] = features.groupby("kind").cumcount() + 1
    return features.reset_index(drop=True)


def read_back(
    fitted: Any, data: ClassifyData, types: list[str], *, n_top: int = 5, jobs: int = 1
) -> ReadBack:
    """Map the weights of ``fitted`` (a :class:`~otbio.lot._classify.Scaled` model on all
    samples) back to the reference points, features, genes and cell types.

    Takes the samples ``data`` (a :class:`~otbio.lot._classify.ClassifyData`: LOT vectors,
    reference, labels, the embedding's ``uns['lot']`` entry with dims and PCA loadings, and
    the cells) and the sorted cell ``types`` (empty: no cell-type columns; else the exact
    plans are recomputed by :func:`transport_labels`). Returns a :class:`ReadBack`. What moves
    is the class difference of :math:`T(z_k) - z_k` on the features with non-zero weight.
    """
    v, z, r, y, entry, classes = data.v, data.z, data.r, data.y, data.entry, data.classes
    k, d = z.shape
    w = np.asarray(fitted.coef_, dtype=np.float64).reshape(-1, k, d)
    w_scaled = np.asarray(fitted.coef_scaled_, dtype=np.float64).reshape(-1, k, d)
    dims = list(entry.get("dims", [])) or [f"dim{j}" for j in range(d)]
    loadings = np.asarray(entry["loadings"], dtype=np.float64) if "loadings" in entry else None
    genes = [str(g) for g in entry["genes"]] if loadings is not None else None
    pts, order = _points_table(w_scaled, r)
    move = class_shift(v, r, y, classes) * (w_scaled != 0)
    wk = _per_point(move)  # (k, d)
    pts["top_features"] = [_fmt(dims, wk[i], n_top) for i in order]
    gene_w = None
    if loadings is not None and loadings.shape[1] == d:
        gene_w = np.einsum("gd,ckd->ckg", loadings, move)  # (rows, k, n_genes)
        gk = _per_point(gene_w)
        pts["top_genes"] = [_fmt(genes, gk[i], n_top) for i in order]  # type: ignore[arg-type]
    share = None
    if types:
        share = transport_labels(z, r, data.cells, types, jobs=jobs)  # type: ignore[arg-type]
        _celltype_columns(pts, order, share, types, y, classes)
    for j, name in enumerate(dims):
        pts[f"z:{name}"] = z[order, j]
    return ReadBack(pts, _features_table(move, gene_w, dims, genes), w, dims, share)
