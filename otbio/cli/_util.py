"""Shared option helpers for the command modules."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import click

from otbio._errors import ConvergenceWarning, InputError, OtbioError

__all__ = [
    "GLOBAL_FLAGS",
    "GLOBAL_VALUED",
    "check_epsilon",
    "deprecated_aliases",
    "handle_convergence",
    "hoist_global_options",
    "on_nonconvergence_option",
    "pdb_model_option",
    "python_to_option",
    "rewrite_aliases",
    "translate_names",
]

on_nonconvergence_option = click.option(
    "--on-nonconvergence",
    type=click.Choice(["warn", "error"]),
    default="warn",
    show_default=True,
    help="What a solver that stops at --max-iter before reaching its tolerance does: warn (one "
    "line on stderr, none under --quiet) and write the result marked converged False, or fail "
    "with exit 1.",
)

#: the model read from multi-model structure files (align, index): one option, one help text
pdb_model_option = click.option(
    "--pdb-model",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Model to read from multi-model (NMR, trajectory) files, 1-based, for every "
    "structure; FILE@N picks model N of one structure (e.g. nmr.pdb@1:A:10-40 nmr.pdb@2).",
)

#: global options of ``otbio`` that take a value / that are flags; accepted after the command too
GLOBAL_VALUED = ("--seed", "--jobs", "--device")
GLOBAL_FLAGS = ("--verbose", "--quiet", "--debug")

Alias = str | Callable[[str | None], str]


def deprecated_aliases(aliases: dict[str, Alias]):
    """Keep old option spellings of one command as hidden deprecated aliases.

    ``aliases`` maps an old spelling (``"--folds"``) to the new one (``"--n-splits"``), or to a
    function of the option's value that returns the new spelling (when one old option became
    two). Using an old spelling prints one warning line on stderr and behaves like the new one.
    """

    def deco(f):
        f.__otbio_aliases__ = dict(aliases)
        return f

    return deco


def rewrite_aliases(args: list[str], aliases: dict[str, Alias], command: str) -> list[str]:
    """Replace deprecated option spellings in ``args`` by the new ones, warning once each."""
    out: list[str] = []
    for i, tok in enumerate(args):
        if tok == "--":
            out.extend(args[i:])
            break
        name, eq, value = tok.partition("=")
        if name in aliases:
            new = aliases[name]
            if callable(new):
                new = new(value if eq else (args[i + 1] if i + 1 < len(args) else None))
            click.echo(
                f"otbio: warning: '{command} {name}' is deprecated and will be removed; use {new}",
                err=True,
            )
            tok = new + eq + value
        out.append(tok)
    return out


def _is_global(tok: str) -> tuple[bool, bool]:
    """(is a global option, takes the next token as its value)."""
    name, eq, _ = tok.partition("=")
    if name in GLOBAL_VALUED:
        return True, not eq
    if tok in GLOBAL_FLAGS or re.fullmatch(r"-v+", tok):
        return True, False
    return False, False


def hoist_global_options(args: list[str], commands) -> list[str]:
    """Move global options written after the subcommand in front of it.

    ``otbio register a.h5ad b.h5ad --seed 1 -v`` becomes ``otbio --seed 1 -v register ...``.
    Everything after ``--`` is left alone.
    """
    args = list(args)
    i = 0
    while i < len(args):  # find the subcommand, skipping the group's own options
        tok = args[i]
        if tok == "--":
            return args
        if tok in commands:
            break
        glob, takes = _is_global(tok)
        i += 2 if glob and takes else 1
    else:
        return args
    head, cmd, rest = args[:i], args[i], args[i + 1 :]
    moved: list[str] = []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        tok = rest[j]
        if tok == "--":
            kept.extend(rest[j:])
            break
        glob, takes = _is_global(tok)
        if glob:
            moved.append(tok)
            if takes and j + 1 < len(rest):
                moved.append(rest[j + 1])
                j += 1
        else:
            kept.append(tok)
        j += 1
    return [*head, *moved, cmd, *kept]


def python_to_option(command: click.Command) -> dict[str, str]:
    """Python parameter name -> CLI option of one command (``n_splits`` -> ``--n-splits``).

    A flag ``--no-foo`` also maps ``foo=False``; the global options map ``seed``, ``device``,
    ``jobs`` and ``n_jobs``.
    """
    out: dict[str, str] = {
        "seed": "--seed",
        "device": "--device",
        "jobs": "--jobs",
        "n_jobs": "--jobs",
    }
    for p in command.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        longs = [o for o in p.opts if o.startswith("--")]
        if not longs:
            continue
        opt = longs[0]
        out[opt[2:].replace("-", "_")] = opt
        if p.name and p.name.rstrip("_") not in out:
            out[p.name.rstrip("_")] = opt
        if p.name and p.name.endswith("_") and p.name not in out:  # lambda_ -> --lambda
            out[p.name] = opt
        if opt.startswith("--no-") and p.is_flag:
            out[f"{opt[5:].replace('-', '_')}=False"] = opt
    return out


_WORD_VERBS = r"(?=\s+(?:must|should|expects|needs)\b|\s*[=<>])"


def translate_names(message: str, names: dict[str, str]) -> str:
    """Write a library error for the command line: Python parameter names become options.

    Library messages name parameters as Python does: names with an underscore bare
    (``n_splits must be >= 2``), one-word names in backticks (``pass `groupby```) or as the
    subject of a rule (``epsilon must be positive``). Those become options (``--n-splits``,
    ``--groupby``, ``--epsilon``); ordinary words and quoted values stay as they are.
    """
    for py in sorted(names, key=len, reverse=True):
        opt = names[py]
        if "=" in py:
            message = message.replace(py, opt)
            continue
        message = message.replace(f"`{py}`", opt)
        if "_" in py:
            pat = rf"(?<![\w\-'\[.`]){re.escape(py)}(?![\w\-'\]`])"
        else:
            pat = rf"(?<![\w\-'\[.`]){re.escape(py)}{_WORD_VERBS}"
        message = re.sub(pat, opt, message)
    return message


def check_epsilon(epsilon: float) -> None:
    """Raise InputError unless epsilon is a positive finite number."""
    if not epsilon > 0 or epsilon == float("inf"):
        msg = f"epsilon must be positive, got {epsilon}"
        raise InputError(msg)


def handle_convergence(
    converged: bool,
    what: str,
    policy: str = "warn",
    advice: str = "raise --max-iter, loosen --tol or raise --epsilon",
) -> None:
    """Apply the --on-nonconvergence policy to a result: the one convergence policy of
    every solver. ``warn`` gives one ``otbio: warning: WHAT did not converge; ADVICE``
    line at the end of the command (none under --quiet); ``error`` fails with exit 1."""
    if converged:
        return
    msg = f"{what} did not converge; {advice}"
    if policy == "error":
        raise OtbioError(msg)
    warnings.warn(msg, ConvergenceWarning, stacklevel=2)
