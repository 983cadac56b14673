"""The one output guard of the command line, and the run-time policy around a command.

:func:`run_command` wraps every subcommand (hooked in ``otbio.cli._Group.invoke``):

- every output is written to a temporary file beside its target (``.otbio-tmp-HOST-PID-K.NAME``)
  and all of them are moved into place together only when the command succeeded
  (:func:`otbio.io.staging`); a failed command leaves no output and no temporary;
- SIGTERM and SIGINT remove the temporaries and exit 143 / 130 with one line on stderr;
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
    "pdb": {".pdb", ".ent"},
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
_STRUCTURE = {".pdb", ".ent", ".cif", ".mmcif", ".gz"}


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


def _values(value: Any) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)] if os.fspath(value) != "" else []
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
    inputs: list[str] = []
    for param in ctx.command.params:
        vals = _values(ctx.params.get(param.name))
        if _is_output(param):
            outputs += [(v, option_name(param), _kind(command, param)) for v in vals]
        else:
            inputs += [v for v in vals if os.path.exists(v)]
    seen: list[tuple[str, str]] = []
    for path, opt, kind in outputs:
        for other, other_opt in seen:
            if _same_file(path, other) or os.path.abspath(path) == os.path.abspath(other):
                msg = f"{opt} and {other_opt} name the same file {path}; give different names"
                raise InputError(msg)
        seen.append((path, opt))
        for inp in inputs:
            if os.path.isdir(inp) and kind != "dir":
                inside = os.path.realpath(path).startswith(os.path.realpath(inp) + os.sep)
                if inside and os.path.exists(path) and _suffix(Path(path)) in _STRUCTURE:
                    msg = f"{opt} {path} is an input file (in {inp}); write to another file"
                    raise InputError(msg)
            elif os.path.exists(path) and _same_file(path, inp):
                msg = f"{opt} {path} is the input file {inp}; write to another file"
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

_SIGNALS = {signal.SIGTERM: ("SIGTERM", 143), signal.SIGINT: ("SIGINT", 130)}


def _on_signal(signum, frame) -> None:  # pragma: no cover - exercised in a subprocess
    from otbio import io

    name, code = _SIGNALS.get(signum, ("signal", 128 + signum))
    st = io._active
    if st is not None:
        st.rollback()
    try:
        sys.stderr.write(f"Error: interrupted by {name}; no output written\n")
        sys.stderr.flush()
    finally:
        os._exit(code)


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


def run_command(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """Run one subcommand with staged outputs, signal cleanup and one convergence line."""
    from otbio import io
    from otbio._settings import settings

    if isinstance(ctx.command, click.Group):
        install(ctx.command)  # commands registered after the import-time install, too
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.getsignal(s) for s in _SIGNALS} if main else {}
    for s in old:
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
            except OSError as exc:
                if settings.debug or isinstance(exc, BrokenPipeError):
                    raise
                raise _os_error(exc) from None
        lines.flush()
        return rv
    finally:
        logger.removeFilter(lines)
        for s, h in old.items():
            signal.signal(s, h)
