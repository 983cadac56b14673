"""Input checks and atomic output writing: the one place where files come in and go out.

Every reader raises :class:`otbio.InputError` with a message that names the problem and,
where there is one, the option that fixes it. Every writer writes to a temporary name beside
the target and renames it when complete, so a failed run leaves no partial file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from otbio._errors import InputError

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "atomic_path",
    "check_points",
    "check_weights",
    "get_rep",
    "read_h5ad",
    "read_points",
    "write_h5ad",
    "write_npy",
    "write_npz",
    "write_table",
]


def _need_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        msg = f"file not found: {p}"
        raise InputError(msg)
    if p.is_dir():
        msg = f"expected a file, got a directory: {p}"
        raise InputError(msg)
    return p


def read_h5ad(path: str | os.PathLike, *, backed: bool = False) -> AnnData:
    """Read an AnnData file, turning every failure into one :class:`InputError` line."""
    import anndata as ad

    p = _need_file(path)
    try:
        return ad.read_h5ad(p, backed="r" if backed else None)
    except Exception as exc:  # h5py / anndata raise many types for corrupt files
        msg = f"cannot read {p} as .h5ad: {type(exc).__name__}: {exc}".splitlines()[0]
        raise InputError(msg) from exc


def get_rep(
    adata: AnnData,
    *,
    use_rep: str | None = None,
    vars: list[str] | None = None,
    dtype: type = np.float64,
    what: str = "cells",
) -> np.ndarray:
    """Coordinates of the cells: ``obsm[use_rep]``, ``X[:, vars]`` or the whole ``X``.

    Returns a C-contiguous array of ``dtype`` after checking that it is finite.
    """
    if use_rep is not None and vars:
        msg = "give either use_rep or `vars`, not both"
        raise InputError(msg)
    if use_rep is not None:
        if use_rep == "X":
            arr = adata.X
        elif use_rep not in adata.obsm:
            keys = ", ".join(adata.obsm.keys()) or "none"
            msg = f"obsm key '{use_rep}' not found (available: {keys}); pass use_rep"
            raise InputError(msg)
        else:
            arr = adata.obsm[use_rep]
    elif vars:
        missing = [v for v in vars if v not in adata.var_names]
        if missing:
            msg = f"variables not found in var_names: {', '.join(missing[:5])}"
            raise InputError(msg)
        arr = adata[:, list(vars)].X
    else:
        arr = adata.X
    if hasattr(arr, "toarray"):
        arr = arr.toarray()
    arr = np.asarray(arr)
    if arr.ndim != 2:
        msg = f"the representation of the {what} must be 2-D, got shape {arr.shape}"
        raise InputError(msg)
    return check_points(arr, name=f"the representation of the {what}", dtype=dtype)


def check_points(
    x: Any, *, name: str = "points", dtype: type = np.float64, min_points: int = 1
) -> np.ndarray:
    """Return ``x`` as a finite C-contiguous 2-D array of ``dtype``, or raise InputError."""
    try:
        arr = np.ascontiguousarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        msg = f"{name} are not numeric: {exc}"
        raise InputError(msg) from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        msg = f"{name} must be a 2-D array (points x dimensions), got shape {arr.shape}"
        raise InputError(msg)
    if arr.shape[0] < min_points:
        msg = f"{name} hold {arr.shape[0]} points; at least {min_points} needed"
        raise InputError(msg)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        msg = f"{name} contain NaN or infinite values ({bad} rows)"
        raise InputError(msg)
    return arr


def check_weights(w: Any, n: int, *, name: str = "weights", dtype: type = np.float64):
    """Return weights as a non-negative array of length ``n`` with positive total."""
    if w is None:
        return np.full(n, 1.0 / n, dtype=dtype)
    arr = np.ascontiguousarray(w, dtype=dtype).ravel()
    if arr.shape[0] != n:
        msg = f"{name} have length {arr.shape[0]} but there are {n} points"
        raise InputError(msg)
    if not np.isfinite(arr).all():
        msg = f"{name} contain NaN or infinite values"
        raise InputError(msg)
    if (arr < 0).any():
        msg = f"{name} contain negative values"
        raise InputError(msg)
    if not arr.sum() > 0:
        msg = f"{name} sum to zero"
        raise InputError(msg)
    return arr


def read_points(path: str | os.PathLike, *, use_rep: str | None = None, weight_key=None):
    """Read a point cloud from .h5ad (``obsm[use_rep]`` or X), .npy, .csv or .tsv.

    Returns ``(points, weights)``; weights are ``None`` unless ``weight_key`` names an obs
    column (h5ad) or a column (CSV/TSV).
    """
    p = _need_file(path)
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    weights = None
    if suffix == ".h5ad":
        adata = read_h5ad(p)
        x = get_rep(adata, use_rep=use_rep, what=f"points in {p.name}")
        if weight_key is not None:
            if weight_key not in adata.obs:
                msg = f"obs column '{weight_key}' not found in {p.name}; pass weight_key"
                raise InputError(msg)
            weights = adata.obs[weight_key].to_numpy()
        return x, weights
    if suffix == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except Exception as exc:
            msg = f"cannot read {p} as .npy: {exc}"
            raise InputError(msg) from exc
        return check_points(x, name=f"points in {p.name}"), None
    if suffix in {".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"}:
        import pandas as pd

        sep = "\t" if ".tsv" in suffix or suffix == ".txt" else ","
        try:
            df = pd.read_csv(p, sep=sep)
        except Exception as exc:
            msg = f"cannot read {p} as a table: {exc}".splitlines()[0]
            raise InputError(msg) from exc
        if weight_key is not None:
            if weight_key not in df.columns:
                msg = f"column '{weight_key}' not found in {p.name}; pass weight_key"
                raise InputError(msg)
            weights = df.pop(weight_key).to_numpy()
        df = df.select_dtypes(include="number")
        return check_points(df.to_numpy(), name=f"points in {p.name}"), weights
    msg = f"unknown point file type '{suffix}' for {p.name}: use .h5ad, .npy, .csv or .tsv"
    raise InputError(msg)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_h5ad(adata: AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` atomically."""
    _write_with(path, lambda tmp: adata.write_h5ad(tmp))


def write_table(df, path: str | os.PathLike, *, index: bool = False) -> None:
    """Write a pandas DataFrame as TSV (or CSV for a .csv name) atomically."""
    sep = "," if str(path).endswith(".csv") else "\t"
    _write_with(path, lambda tmp: df.to_csv(tmp, sep=sep, index=index))


def write_npy(arr: np.ndarray, path: str | os.PathLike) -> None:
    """Write an array as .npy atomically."""

    def _w(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)

    _write_with(path, _w)


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """Write named arrays as .npz atomically."""

    def _w(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    _write_with(path, _w)


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 150) -> None:
    """Save a matplotlib figure atomically (format from the file name)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    _write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight"))
