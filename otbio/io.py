"""Input checks and atomic output writing: the one place where files come in and go out.

Every reader raises :class:`otbio.InputError` with a message that names the problem and,
where there is one, the option that fixes it. Every writer writes to a temporary name beside
the target and renames it when complete, so a failed run leaves no partial file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from otbio._errors import InputError, listing, not_found

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "point_names",
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
    "write_text",
]


#: Largest coordinate magnitude accepted: squared distances of larger ones overflow float64.
MAX_COORDINATE = 1e100


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
    not_reps: tuple[str, ...] = (),
) -> np.ndarray:
    """Coordinates of the cells: ``obsm[use_rep]``, ``X[:, vars]`` or the whole ``X``.

    Returns a C-contiguous array of ``dtype`` after checking that it is finite. A missing
    ``use_rep`` is reported with the obsm keys there, less ``not_reps`` (keys that are no
    representation, such as the spatial coordinates of a slice).
    """
    if use_rep is not None and vars:
        msg = "give either use_rep or `vars`, not both"
        raise InputError(msg)
    if use_rep is not None:
        if use_rep == "X":
            arr = adata.X
        elif use_rep not in adata.obsm:
            keys = [k for k in adata.obsm.keys() if k not in not_reps] + ["X"]
            raise not_found("obsm key", use_rep, f"the {what}", keys, "use_rep")
        else:
            arr = adata.obsm[use_rep]
    elif vars:
        missing = [v for v in vars if v not in adata.var_names]
        if missing:
            msg = (
                f"variables not found in var_names of the {what}: {listing(missing, 5)} "
                f"(var_names there: {listing(adata.var_names)}); check `vars`"
            )
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
    if np.iscomplexobj(x):
        msg = f"{name} are complex numbers; give real coordinates"
        raise InputError(msg)
    try:
        arr = np.ascontiguousarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        msg = f"{name} are not numeric: {exc}"
        raise InputError(msg) from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        msg = f"{name} must be a 2-D array (points x dimensions), got shape {arr.shape}; reshape it"
        raise InputError(msg)
    if arr.shape[0] < min_points:
        msg = f"{name} hold {arr.shape[0]} points; give at least {min_points}"
        raise InputError(msg)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        msg = f"{name} contain NaN or infinite values ({bad} rows); remove or impute those rows"
        raise InputError(msg)
    if arr.shape[1] == 0:
        msg = f"{name} have 0 columns (dimensions); give at least one coordinate column"
        raise InputError(msg)
    big = float(np.abs(arr).max()) if arr.size else 0.0
    if big > MAX_COORDINATE:
        msg = (
            f"{name} reach {big:.3g}; squared distances of such values overflow, "
            f"rescale them below {MAX_COORDINATE:.0e}"
        )
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
        msg = f"{name} contain NaN or infinite values; fix or drop those weights"
        raise InputError(msg)
    if (arr < 0).any():
        msg = f"{name} contain negative values; weights must be >= 0"
        raise InputError(msg)
    if not arr.sum() > 0:
        msg = f"{name} sum to zero; give at least one positive weight"
        raise InputError(msg)
    return arr


def point_names(path: str | os.PathLike, n: int) -> np.ndarray:
    """Names of the ``n`` points of a file read by :func:`read_points`: the obs names of an
    .h5ad (read alone, backed), else the row numbers 0 ... n-1."""
    p = Path(path)
    if p.suffix == ".h5ad":
        ad_ = read_h5ad(p, backed=True)
        try:
            names = np.asarray(ad_.obs_names, dtype=object)
        finally:
            ad_.file.close()
        if len(names) == n:
            return names
    return np.arange(n)


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
                raise not_found("obs column", weight_key, p.name, adata.obs.columns, "weight_key")
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
                raise not_found("column", weight_key, p.name, df.columns, "weight_key")
            weights = df.pop(weight_key).to_numpy()
        df = df.select_dtypes(include="number")
        return check_points(df.to_numpy(), name=f"points in {p.name}"), weights
    msg = f"unknown point file type '{suffix}' for {p.name}: use .h5ad, .npy, .csv or .tsv"
    raise InputError(msg)


#: Temporary outputs are named ``.otbio-tmp-HOST-PID-K.NAME`` beside their target, so a
#: later run can remove the orphans of a killed one (same host, dead PID) and nothing else.
TMP_PREFIX = ".otbio-tmp-"
_HOST = "".join(c if c.isalnum() else "_" for c in os.uname().nodename)[:32] or "host"


class Staging:
    """Outputs of one command: written to temporaries, moved into place together.

    While a staging is active (:func:`staging`), :func:`atomic_path` leaves each finished
    temporary in place and records it; :meth:`commit` renames them all onto their targets
    once every output succeeded, and :meth:`rollback` removes them (and the directories it
    created) otherwise.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []
        self.temps: set[Path] = set()
        self.made_dirs: list[Path] = []
        self.done = False  # every output is in place
        self._k = 0

    def temp_for(self, target: Path) -> Path:
        self._k += 1
        return target.parent / tmp_name(target.name, self._k)

    def commit(self) -> None:
        import signal

        umask = os.umask(0)
        os.umask(umask)
        for tmp, _ in self.pending:
            os.chmod(tmp, 0o666 & ~umask)  # temporaries are 0600 until now
        blocked = {signal.SIGTERM, signal.SIGINT}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)  # all renames or none
        try:
            for tmp, target in self.pending:
                os.replace(tmp, target)
                self.temps.discard(tmp)
            self.pending.clear()
            self.done = True  # before the signals are let through again
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def rollback(self) -> None:
        for tmp in list(self.temps):
            try:
                tmp.unlink()
            except OSError:
                pass
        self.temps.clear()
        self.pending.clear()
        for d in reversed(self.made_dirs):
            try:
                d.rmdir()  # only when empty
            except OSError:
                pass
        self.made_dirs.clear()


_active: Staging | None = None


def tmp_name(name: str, k: int = 0, pid: int | None = None) -> str:
    """The temporary name of an output called ``name`` (at most 255 bytes)."""
    head = f"{TMP_PREFIX}{_HOST}-{os.getpid() if pid is None else pid}-{k}."
    room = 255 - len(os.fsencode(head))
    raw = os.fsencode(name)
    if len(raw) > room:  # keep the extension, which some writers read
        raw = raw[-room:]
    return head + os.fsdecode(raw)


def remove_orphans(directory: str | os.PathLike) -> list[Path]:
    """Remove temporaries left in ``directory`` by killed otbio runs on this host."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    prefix = f"{TMP_PREFIX}{_HOST}-"
    for e in entries:
        if not e.name.startswith(prefix):
            continue
        pid_text = e.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        try:
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def staging() -> Iterator[Staging]:
    """Stage every output written inside the block; commit them together at its end."""
    global _active
    outer, st = _active, Staging()
    _active = st
    try:
        yield st
        st.commit()  # still the active staging: a signal handler sees ``done``
    except BaseException:
        st.rollback()
        raise
    finally:
        _active = outer


def _make_parents(directory: Path, st: Staging | None) -> None:
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    if st is not None:
        st.made_dirs.extend(reversed(missing))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Inside :func:`staging`, the rename waits until every output of the command is written.
    """
    target = Path(path)
    st = _active
    if target.parent and not target.parent.exists():
        _make_parents(target.parent, st)
    if st is not None:
        tmp_path = st.temp_for(target)
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        st.temps.add(tmp_path)
        ok = False
        try:
            yield tmp_path
            _sync(tmp_path)
            ok = True
        except OSError as exc:  # name the output, not its temporary
            if exc.filename is None or TMP_PREFIX in str(exc.filename):
                exc.filename = str(target)
            raise
        finally:
            if not ok:
                st.temps.discard(tmp_path)
                if tmp_path.exists():
                    tmp_path.unlink()
        st.pending.append((tmp_path, target))
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _sync(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _sync(path: Path) -> None:
    """Flush a finished temporary to the disk: a write error the writer did not see (a full
    disk or an I/O error found at write-back, a library that ignores its stream's state)
    becomes an OSError here, before the temporary can replace anything."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _h5ad_nbytes(adata: AnnData) -> int:
    """About the size of ``adata`` as an uncompressed .h5ad file."""

    def size(x) -> int:
        if hasattr(x, "data") and hasattr(x, "indices"):  # scipy sparse
            return x.data.nbytes + x.indices.nbytes + getattr(x, "indptr", x.indices).nbytes
        if hasattr(x, "memory_usage"):  # pandas
            return int(x.memory_usage(deep=True).sum())
        return int(getattr(x, "nbytes", 0))

    total = size(adata.X) if adata.X is not None else 0
    total += size(adata.obs) + size(adata.var)
    for m in (adata.obsm, adata.varm, adata.layers, adata.obsp, adata.varp):
        total += sum(size(v) for v in m.values())
    return total


def write_h5ad(adata: AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` atomically.

    HDF5 can crash the process when the disk fills up during a write, so the free space is
    checked first: too little is a clean ``OSError`` (ENOSPC) and nothing is written.
    """
    target = Path(path)
    need = _h5ad_nbytes(adata) + (1 << 20)
    where = target.parent if target.parent.exists() else Path(".")
    if _free_bytes(where) < need:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))
    _write_with(path, lambda tmp: adata.write_h5ad(tmp))


#: Compression of a table output by its last extension (pandas' codec names).
TABLE_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}


def table_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(separator, compression)`` of a table output named ``path``: comma for ``.csv``
    (``d.csv.gz`` too), tab otherwise; compression from a last extension .gz, .bz2, .xz,
    .zip or .zst, none otherwise."""
    name = Path(path).name.lower()
    compression = None
    for ext, codec in TABLE_COMPRESSION.items():
        if name.endswith(ext):
            compression, name = codec, name[: -len(ext)]
            break
    return ("," if name.endswith(".csv") else "\t"), compression


def write_table(df, path: str | os.PathLike, *, index: bool = False) -> None:
    """Write a pandas DataFrame atomically: separator and compression by the name
    (:func:`table_format`; ``d.csv.gz`` is gzip-compressed CSV)."""
    sep, compression = table_format(path)
    if compression == "zip":  # the member is named after the output, not its temporary
        inner = Path(path).name[: -len(".zip")]
        compression = {"method": "zip", "archive_name": inner}

    def _w(tmp: Path) -> None:
        df.to_csv(tmp, sep=sep, index=index, compression=compression)

    _write_with(path, _w)


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


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text (PDB, mmCIF, ...) atomically; a short write is an OSError, never a cut file."""

    def _w(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    _write_with(path, _w)


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 150) -> None:
    """Save a matplotlib figure atomically (format from the file name)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    _write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight"))
