"""The one output guard of the command line, and the run-time policy around a command.

:func:`run_command` wraps every subcommand (hooked in ``otbio.cli._Group.invoke``):

- every output is written to a temporary file beside its target (``.otbio-tmp-HOST-PID-K.NAME``)
  and all of them are moved into place together only when the command succeeded
  (:func:`otbio.io.staging`); a failed command leaves no output and no temporary;
- SIGTERM, SIGINT and SIGHUP remove the temporaries (matplotlib's too) and exit 143 / 130 /
  129 with one line on stderr;
- convergence warnings become one ``otbio: warning: ...`` line on stderr (none under --quiet);
- an ``OSError`` (read-only file system, full disk, ...) becomes one ``Error:`` line.

:func:`guard`, called first in every command body, checks before any work that no output
resolves to an input (same path, symlink or hard link), that every output location is
writable with a known format, and that every numeric option is finite and in range.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from otbio import _signals
from otbio._errors import ConvergenceWarning, InputError, OtbioError

__all__ = ["guard", "install", "run_command"]

FIGURE = {".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".eps", ".ps",
          ".webp", ".pgf"}  # fmt: skip
_COMPRESS = ("", ".gz", ".bz2", ".xz", ".zip", ".zst")
TABLE = {t + c for t in (".tsv", ".csv", ".txt", ".tab") for c in _COMPRESS}
KINDS: dict[str, set[str] | None] = {
    "h5ad": {".h5ad"},
    "table": TABLE,
    "figure": FIGURE,
    "npy": {".npy"},
    "npz": {".npz"},
    "pdb": {".pdb", ".ent", ".cif", ".mmcif"},
    "model": {".joblib", ".pkl", ".pickle"} | {".joblib" + c for c in _COMPRESS},
    "dir": None,
}
#: Output parameters (Python names, old and new spellings) and their kinds; ``output`` of
#: these commands is not an .h5ad.
_PARAM_KIND = {
    "save_potentials": "npz",
    "save_projection": "npy",
    "plan_path": "npy",
    "save_plan": "npy",
    "superpose_path": "pdb",
    "save_superposed": "pdb",
    "save_model": "model",
}
_OUTPUT_KIND = {"distances": "table", "align": "table", "classify": "dir", "index": "dir"}
_OUTPUT_NAMES = {"output", "plot_path", "plot", "check_path", "matches_path", "scores",
                 "plan_path", "superpose_path"}  # fmt: skip
_POSITIVE = {"tol", "epsilon", "reg_m", "temperature", "alpha", "C"}
_SEED_MAX = 2**32 - 1
_INT_MAX = 2**63 - 1


def _is_output(param: click.Parameter) -> bool:
    if getattr(param, "is_flag", False) or param.name is None:
        return False
    opts = list(param.opts) + list(getattr(param, "secondary_opts", []))
    return (
        param.name in _OUTPUT_NAMES
        or param.name.startswith("save_")
        or any(o in ("-o", "--output", "--plot") or o.startswith("--save-") for o in opts)
    )


def option_name(param: click.Parameter) -> str:
    """The option as the user typed it (one of its spellings), else its longest spelling."""
    if isinstance(param, click.Argument):
        return (param.human_readable_name or param.name or "").upper()
    opts = list(param.opts)
    for o in opts:
        if o in sys.argv[1:] or any(a.startswith(o + "=") for a in sys.argv[1:]):
            return o
    return max(opts, key=len)


def _kind(command: str, param: click.Parameter) -> str | None:
    name = param.name or ""
    if name.startswith("plot"):
        return "figure"
    if name == "output":
        return _OUTPUT_KIND.get(command, "h5ad")
    return _PARAM_KIND.get(name, "table")


def _values(value: Any, *, keep_empty: bool = False) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)] if keep_empty or os.fspath(value) != "" else []
    if isinstance(value, (list, tuple)):
        return [os.fspath(v) for v in value if isinstance(v, (str, os.PathLike))]
    return []


def _suffix(path: Path) -> str:
    sfx = [s.lower() for s in path.suffixes]
    if len(sfx) >= 2 and sfx[-1] in _COMPRESS:
        return "".join(sfx[-2:])
    return sfx[-1] if sfx else ""


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _spec_file(value: str) -> str | None:
    """The file that a structure spec ``FILE[@MODEL][:CHAIN[:RANGES]]`` reads (the longest
    prefix that is a file, as the reader takes it), the value itself when it exists, or None."""
    if os.path.exists(value):
        return value
    cuts = sorted((k for k, c in enumerate(value) if c in ":@"), reverse=True)
    for k in cuts:
        if k and os.path.isfile(value[:k]):
            return value[:k]
    return None


def _read_as_list(value: str) -> list[str]:
    """``--targets``: a folder's structure files or a list file's entries (and the file)."""
    from otbio.align import list_targets

    found = list_targets(value)
    return found if os.path.isdir(value) else [value, *found]


def _feature_files(values: list[str], params: dict) -> list[str]:
    """``--target-features DIR``: the ``<target stem>.npy`` files the command reads there."""
    from otbio.cli.align import _stem

    if len(values) != 1 or not os.path.isdir(values[0]):
        return values
    specs = [str(t) for t in params.get("target") or ()]
    if params.get("targets_spec"):
        specs += [s for s in _read_as_list(params["targets_spec"]) if s != params["targets_spec"]]
    files = [_spec_file(s) for s in specs]
    return [os.path.join(values[0], _stem(f) + ".npy") for f in files if f]


def _input_files(param: click.Parameter, params: dict) -> list[tuple[str, str]]:
    """(file, as the user named it) for every file an input option makes the command read:
    selections and models stripped (``q.pdb::10-50``, ``t.pdb@2``), list files and folders
    expanded (``--targets``), feature folders resolved (``--target-features DIR``)."""
    vals = _values(params.get(param.name))
    if param.name == "target_features":
        return [(f, f) for f in _feature_files(vals, params) if os.path.exists(f)]
    out = []
    for v in vals:
        named = [(v, v)]
        if param.name == "targets_spec" and os.path.exists(v):
            where = f"listed in {v}" if os.path.isfile(v) else f"in {v}"
            named = [(e, e if e == v else f"{e} ({where})") for e in _read_as_list(v)]
        for spec, label in named:
            f = _spec_file(spec)
            if f is not None:
                out.append((f, label))
    return out


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symbolic links
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


#: Modules that write a compressed table, by extension (pandas picks the codec by name).
_CODEC = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma", ".zip": "zipfile", ".zst": "zstandard"}


def _check_writer(p: Path, opt: str) -> None:
    """Refuse, before any work, an output whose writer is missing (a codec, TeX for .pgf)."""
    import importlib.util
    import shutil

    sfx = _suffix(p)
    codec = _CODEC.get(Path(sfx).suffix) if sfx.count(".") == 2 else None
    if codec is not None and importlib.util.find_spec(codec) is None:
        pip = f"pip install {codec}" if codec == "zstandard" else f"a Python with {codec}"
        msg = f"{opt} {p}: writing {Path(sfx).suffix} files needs {pip}; or use .gz"
        raise InputError(msg)
    if sfx == ".pgf":
        import matplotlib as mpl

        tex = str(mpl.rcParams["pgf.texsystem"])
        if shutil.which(tex) is None:
            msg = f"{opt} {p}: .pgf figures need {tex} (TeX) on PATH; use .pdf or .svg"
            raise InputError(msg)


def _check_replace(p: Path, opt: str) -> None:
    """An existing output is replaced only when it could be written in place: a
    write-protected file is refused (as ``cp`` does), and so is another user's file in a
    sticky directory (``/tmp``), which cannot be renamed over."""
    import stat

    try:
        st = p.lstat()
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    if not st.st_mode & stat.S_IWUSR:
        msg = (
            f"{opt} {p} exists and is write-protected (mode {stat.S_IMODE(st.st_mode):04o}); "
            "remove it or make it writable (chmod u+w) to replace it"
        )
        raise InputError(msg)
    euid = os.geteuid()
    try:
        parent = os.stat(p.parent if str(p.parent) else ".")
    except OSError:
        return
    if euid != 0 and parent.st_mode & stat.S_ISVTX and euid not in (st.st_uid, parent.st_uid):
        msg = (
            f"{opt} {p} belongs to another user in a sticky directory and cannot be replaced; "
            "write to another name"
        )
        raise InputError(msg)


def check_location(path: str, opt: str, kind: str | None) -> None:
    """Raise InputError unless ``path`` can be written as an output of ``kind``."""
    if not path.strip():
        msg = f"{opt} is empty; give a file name"
        raise InputError(msg)
    p = Path(path)
    for part in p.parts:
        if len(os.fsencode(part)) > 255:
            msg = f"{opt}: the name '{part[:40]}...' is longer than 255 bytes"
            raise InputError(msg)
    if kind == "dir":
        if p.exists() and not p.is_dir():
            msg = f"{opt} {path} exists and is not a directory; give a directory for the outputs"
            raise InputError(msg)
        where = p
    else:
        if p.is_dir():
            msg = f"{opt} {path} is a directory; give a file name"
            raise InputError(msg)
        allowed = KINDS.get(kind or "")
        if allowed is not None and _suffix(p) not in allowed:
            shown = ", ".join(sorted(s for s in allowed if s.count(".") == 1))
            msg = f"{opt} {path}: unknown format '{_suffix(p) or 'no extension'}'; use {shown}"
            raise InputError(msg)
        _check_writer(p, opt)
        _check_replace(p, opt)
        where = p.parent
    d = where if str(where) else Path(".")
    while not d.exists():  # missing directories are created: check the first existing one
        if d.is_symlink() or d.parent == d:
            break
        d = d.parent
    if d.exists() and not d.is_dir():
        msg = f"{opt} {path}: {d} is not a directory"
        raise InputError(msg)
    if not os.access(d, os.W_OK | os.X_OK):
        msg = f"{opt} {path}: cannot write in directory {d} (permission denied or read-only)"
        raise InputError(msg)


def _check_numbers(ctx: click.Context) -> None:
    from otbio._settings import settings

    if not 0 <= settings.seed <= _SEED_MAX:
        msg = f"--seed must be between 0 and {_SEED_MAX}, got {settings.seed}"
        raise InputError(msg)
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        opt = option_name(param)
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"{opt} must be a finite number, got {value}"
            raise InputError(msg)
        if param.name in _POSITIVE and not value > 0:
            msg = f"{opt} must be positive, got {value}"
            raise InputError(msg)
        if isinstance(value, int) and value > _INT_MAX:  # kernels take 64-bit integers
            msg = f"{opt} must be at most {_INT_MAX}, got {value}"
            raise InputError(msg)
        if isinstance(value, int) and value < 0:
            msg = f"{opt} must be >= 0, got {value}"
            raise InputError(msg)


def guard(ctx: click.Context | None = None) -> None:
    """Check the current command's outputs and numeric options before any work.

    Raises :class:`InputError` (exit 2) when an output resolves to an input file, when two
    outputs are the same file, when an output location is not writable or its format is
    unknown, or when a numeric option is not finite or out of range. Also removes the
    temporaries that killed runs left in the output directories.
    """
    from otbio.io import remove_orphans

    ctx = ctx or click.get_current_context()
    _check_numbers(ctx)
    command = ctx.info_name or ctx.command.name or ""
    outputs: list[tuple[str, str, str | None]] = []
    inputs: dict[tuple[int, int], str] = {}  # (device, inode) -> the input as named
    for param in ctx.command.params:
        if _is_output(param):
            vals = _values(ctx.params.get(param.name), keep_empty=True)
            outputs += [(v, option_name(param), _kind(command, param)) for v in vals]
            continue
        for f, label in _input_files(param, ctx.params):
            key = _file_id(f)
            if key is not None and not os.path.isdir(f):
                inputs.setdefault(key, label)
    seen: list[tuple[str, str]] = []
    for path, opt, kind in outputs:
        for other, other_opt in seen:
            if _same_file(path, other) or os.path.abspath(path) == os.path.abspath(other):
                msg = f"{opt} and {other_opt} name the same file {path}; give different names"
                raise InputError(msg)
        seen.append((path, opt))
        key = _file_id(path) if path.strip() else None
        if key is not None and key in inputs:
            msg = f"{opt} {path} is the input file {inputs[key]}; write to another file"
            raise InputError(msg)
        check_location(path, opt, kind)
        remove_orphans(path if kind == "dir" else (os.path.dirname(path) or "."))


def install(group: click.Group) -> None:
    """Make every command of ``group`` call :func:`guard` before its body runs."""
    import functools

    for cmd in group.commands.values():
        body = cmd.callback
        if body is None or getattr(body, "_otbio_guarded", False):
            continue

        @functools.wraps(body)
        def guarded(*args, __body=body, **kwargs):
            guard()
            return __body(*args, **kwargs)

        guarded._otbio_guarded = True
        cmd.callback = guarded


# --- the policy around one command ------------------------------------------------------

_SIGNALS = _signals.SIGNALS
#: MPLCONFIGDIR before any command: a value set later is matplotlib's own temporary folder
#: (made when its config folder is not writable), removed on a signal as the outputs are.
_MPLCONFIGDIR = os.environ.get("MPLCONFIGDIR")
_finished = False  # the current command's outputs are all in place


def _remove_library_temporaries() -> None:
    import shutil
    import tempfile

    mpl = os.environ.get("MPLCONFIGDIR")
    if (
        mpl
        and mpl != _MPLCONFIGDIR
        and os.path.basename(mpl).startswith("matplotlib-")
        and os.path.dirname(os.path.abspath(mpl)) == os.path.abspath(tempfile.gettempdir())
    ):
        shutil.rmtree(mpl, ignore_errors=True)
    cache = sys.modules.get("otbio._numba_cache")
    if cache is not None and cache.temporary_dir:
        shutil.rmtree(cache.temporary_dir, ignore_errors=True)


def _on_signal(signum, frame) -> None:  # pragma: no cover - exercised in a subprocess
    from otbio import io

    name, code = _SIGNALS.get(signum, ("signal", 128 + signum))
    try:
        st = io._active
        done = _finished or (st is not None and st.done)
        if st is not None and not st.done:
            st.rollback()
        _remove_library_temporaries()
        if done:
            text = (
                f"Error: interrupted by {name} after the outputs were written (they are complete)"
            )
        else:
            text = f"Error: interrupted by {name}; no output written"
        os.write(2, (text + "\n").encode())
    finally:
        os._exit(code)


_on_signal._otbio = True


class _ConvergenceLines(logging.Filter):
    """Collect convergence warnings (Python warnings and otbio log records); show one line
    at the end of the command, the command line's own message when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.cli: str | None = None
        self.engine: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and "did not converge" in record.getMessage():
            self.engine = self.engine or " ".join(record.getMessage().split())
            return False
        return True

    def showwarning(self, message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ConvergenceWarning):
            text = " ".join(str(message).split())
            if f"{os.sep}cli{os.sep}" in str(filename):
                self.cli = self.cli or text
            else:
                self.engine = self.engine or text
            return
        _original_showwarning(message, category, filename, lineno, file, line)

    def flush(self) -> None:
        from otbio._settings import settings

        text = self.cli or self.engine
        if text and not settings.quiet:
            click.echo(f"otbio: warning: {text}", err=True)


_original_showwarning = warnings.showwarning


def _os_error(exc: OSError) -> OtbioError:
    where = exc.filename or ""
    if where:
        where = f" {Path(where).name}" if ".otbio-tmp-" in str(where) else f" {where}"
    text = exc.strerror or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = f"cannot write{where}: {text}"
    user = {errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR}
    return InputError(msg) if exc.errno in user else OtbioError(msg)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS}


def _write_error_in(exc: BaseException) -> OSError | None:
    """A disk error (full, quota, I/O, read-only) among the causes of ``exc``: matplotlib's
    PDF writer, for one, fails on it with an AttributeError of its own."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def run_command(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """Run one subcommand with staged outputs, signal cleanup and one convergence line."""
    from otbio import io
    from otbio._settings import settings

    if isinstance(ctx.command, click.Group):
        install(ctx.command)  # commands registered after the import-time install, too
    global _finished
    _finished = False
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.getsignal(s) for s in _SIGNALS} if main else {}
    for s, h in old.items():
        if h is not signal.SIG_IGN:  # nohup, background jobs: ignored signals stay ignored
            signal.signal(s, _on_signal)
    lines = _ConvergenceLines()
    logger = logging.getLogger("otbio")
    logger.addFilter(lines)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ConvergenceWarning)
            warnings.showwarning = lines.showwarning
            try:
                with io.staging():
                    rv = invoke(ctx)
                _finished = True
            except OSError as exc:
                if settings.debug or isinstance(exc, BrokenPipeError):
                    raise
                raise _os_error(exc) from None
            except Exception as exc:  # a writer that hides the disk's error behind its own
                cause = _write_error_in(exc)
                if settings.debug or cause is None:
                    raise
                raise _os_error(cause) from None
        lines.flush()
        return rv
    finally:
        logger.removeFilter(lines)
        for s, h in old.items():
            if not getattr(h, "_otbio_early", False):  # the console script keeps _on_signal
                signal.signal(s, h)
