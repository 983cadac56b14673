"""Shared option helpers for the command modules."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import click

from otbio._errors import ConvergenceWarning, InputError, OtbioError
from otbio.ot._defaults import SINKHORN_DEFAULTS as SD

__all__ = [
    "GLOBAL_FLAGS",
    "GLOBAL_VALUED",
    "check_epsilon",
    "check_output_file",
    "celltype_key_option",
    "color_key_option",
    "deprecated_aliases",
    "epsilon_option",
    "epsilon_scaling_option",
    "exact_cells_option",
    "groupby_option",
    "handle_convergence",
    "hoist_global_options",
    "max_iter_option",
    "on_nonconvergence_option",
    "output_option",
    "pdb_model_option",
    "plot_option",
    "python_to_option",
    "relative_epsilon_option",
    "rewrite_aliases",
    "sample_key_option",
    "save_matches_option",
    "tol_option",
    "topk_option",
    "translate_names",
    "use_rep_option",
    "vars_option",
    "weight_key_option",
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

# --- shared options ---------------------------------------------------------------------
# One decorator (or factory) per option that several commands take: the name, type, range
# and default are written once; a factory takes the help text where the commands say
# different things about the same option. Decorators are applied in the order written, so
# --help lists the options as the command module lists them.

#: the LOT commands' sample key (reference, embed): one help text
sample_key_option = click.option(
    "--sample-key",
    default=None,
    help="obs column naming the sample (donor, patient) of each cell. Leave it out only when "
    "every input file is one sample (the file name then names the sample).",
)

#: marker coordinates instead of a representation (reference, embed)
vars_option = click.option(
    "--vars",
    "vars_",
    default=None,
    help="Comma-separated var names of X to use as coordinates (e.g. CD3,CD4,CD8), instead "
    "of --use-rep.",
)

#: the cells an embedding was made from, for the exact comparisons (barycenter, distances)
exact_cells_option = click.option(
    "--cells",
    multiple=True,
    help="The cells .h5ad file(s) the embedding was made from (only for --exact).",
)

CELL_WEIGHTS_HELP = (
    "Optional obs column of non-negative cell weights; cells count equally without it."
)


def output_option(help: str, *, required: bool = True, **kw):
    """``-o/--output``: required unless ``required=False``; ``kw`` go to :func:`click.option`."""
    return click.option("-o", "--output", required=required, help=help, **kw)


def plot_option(help: str, **kw):
    """``--plot`` (Python name ``plot_path``, no figure by default): a figure file."""
    return click.option("--plot", "plot_path", default=None, help=help, **kw)


def use_rep_option(help: str):
    """``--use-rep``: an obsm key of the coordinates (``None``: the command's default)."""
    return click.option("--use-rep", default=None, help=help)


def weight_key_option(help: str = CELL_WEIGHTS_HELP):
    """``--weight-key``: an obs column of non-negative weights (uniform without it)."""
    return click.option("--weight-key", default=None, help=help)


def celltype_key_option(help: str):
    """``--celltype-key``: an obs column of cell types (or other cell labels)."""
    return click.option("--celltype-key", default=None, help=help)


def color_key_option(help: str):
    """``--color-key``: an obs column that colours a figure."""
    return click.option("--color-key", default=None, help=help)


def groupby_option(help: str, *, required: bool = False):
    """``--groupby``: a sample-level obs column of groups."""
    if required:
        return click.option("--groupby", required=True, help=help)
    return click.option("--groupby", default=None, help=help)


def epsilon_option(help: str, default: float | None = SD.epsilon):
    """``--epsilon``: the entropic regularisation (a float; the engine's default unless given)."""
    return click.option("--epsilon", type=float, default=default, show_default=True, help=help)


def relative_epsilon_option(help: str):
    """``--relative-epsilon none|mean|max``, the engine's default."""
    return click.option(
        "--relative-epsilon",
        type=click.Choice(["none", "mean", "max"]),
        default=SD.relative_epsilon or "none",
        show_default=True,
        help=help,
    )


def tol_option(help: str, default: float = SD.tol):
    """``--tol``: a solver's stopping tolerance (the Sinkhorn default unless given)."""
    return click.option("--tol", type=float, default=default, show_default=True, help=help)


def max_iter_option(help: str, default: int = SD.max_iter):
    """``--max-iter``: a solver's iteration limit, at least 1 (the Sinkhorn default unless given)."""
    return click.option(
        "--max-iter", type=click.IntRange(min=1), default=default, show_default=True, help=help
    )


def epsilon_scaling_option(help: str):
    """``--epsilon-scaling``: the annealing factor in [0, 1) (0 turns it off), engine default."""
    return click.option(
        "--epsilon-scaling",
        type=click.FloatRange(min=0, max=1, max_open=True),
        default=SD.epsilon_scaling or 0.0,
        show_default=True,
        help=help,
    )


def save_matches_option(help: str):
    """``--save-matches``: a TSV of each source point's top target matches."""
    return click.option("--save-matches", type=click.Path(dir_okay=False), default=None, help=help)


def topk_option(help: str):
    """``--topk``: matches per source point in --save-matches (at least 1, default 3)."""
    return click.option(
        "--topk", type=click.IntRange(min=1), default=3, show_default=True, help=help
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


def check_output_file(path: str) -> None:
    """Raise InputError when -o names a directory where the command writes one file."""
    if Path(path).is_dir():
        msg = f"-o {path} is a directory; give a file name"
        raise InputError(msg)


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
