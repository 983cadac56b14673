"""The ``otbio`` command line: one Click group, thin commands, errors converted in one place.

Each subcommand lives in its own module and registers itself on :data:`cli`; the command
bodies only parse options, call the Python API and write outputs.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from otbio import __version__
from otbio._errors import InputError, OtbioError
from otbio._settings import settings
from otbio._threading import check_environment, expected_threads, threading_layer_name, use_threads
from otbio.cli._util import hoist_global_options, python_to_option, rewrite_aliases, translate_names

__all__ = ["cli", "main"]


class OtbioClickError(click.ClickException):
    """One line on stderr, ``Error: ...``; exit 2 for bad input, 1 otherwise."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_GLOBAL_EPILOG = (
    "Global options (--seed, --jobs, --device, -v, --quiet, --debug) may be given before or "
    "after the command."
)


#: options that name files, shown as FILE in every command's --help (not TEXT in some)
_FILE_OPTIONS = {"--output", "--plot", "--reference", "--cells", "--predict", "--load-model"}


class _Command(click.Command):
    """A subcommand: deprecated option spellings are rewritten (with a warning) before parsing;
    file options are shown as FILE in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("epilog", _GLOBAL_EPILOG)
        super().__init__(*args, **kwargs)
        for p in self.params:
            if not isinstance(p, click.Option) or p.metavar is not None or p.is_flag:
                continue
            longs = [o for o in p.opts if o.startswith("--")]
            if longs and (longs[0] in _FILE_OPTIONS or longs[0].startswith("--save-")):
                if isinstance(p.type, (click.Path, click.types.StringParamType)):
                    p.metavar = "FILE"

    def parse_args(self, ctx, args):
        aliases = getattr(self.callback, "__otbio_aliases__", None)
        if aliases:
            args = rewrite_aliases(list(args), aliases, self.name or "")
        return super().parse_args(ctx, args)


class _Group(click.Group):
    command_class = _Command

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_global_options(list(args), self.commands))

    def list_commands(self, ctx):  # keep the order in which commands were written
        return list(self.commands)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the group; every error is one line on stderr, ``Error: ...``."""
        if args is None:
            args = sys.argv[1:]
        if not args and standalone_mode:  # bare `otbio`: the normal help, exit 0 (as git does)
            with self.make_context(prog_name or "otbio", ["--help"], resilient_parsing=True) as ctx:
                click.echo(self.get_help(ctx))
            sys.exit(0)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            click.echo(f"Error: {_one_line(click.unstyle(exc.format_message()))}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:
            if not standalone_mode:
                raise
            if isinstance(exc.__context__, KeyboardInterrupt):  # SIGINT with Python's handler
                click.echo("Error: interrupted by SIGINT; no output written", err=True)
                sys.exit(130)
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return _outputs.run_command(super().invoke, ctx)  # staged outputs, signals
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            sys.stderr.close()
            raise click.exceptions.Exit(0) from None
        except InputError as exc:
            if settings.debug:  # the traceback, and still exit 2: bad input stays bad input
                traceback.print_exc()
            raise OtbioClickError(self._for_cli(ctx, _one_line(exc)), 2) from None
        except OtbioError as exc:
            if settings.debug:
                raise
            raise OtbioClickError(self._for_cli(ctx, _one_line(exc)), 1) from None
        except MemoryError:
            if settings.debug:
                raise
            raise OtbioClickError(
                "out of memory; try a smaller problem or --downsample", 1
            ) from None
        except Exception as exc:
            if settings.debug:
                raise
            msg = f"internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with --debug"
            raise OtbioClickError(msg, 1) from None

    def _for_cli(self, ctx, message: str) -> str:
        """The one place where library parameter names become command-line options."""
        cmd = self.commands.get(ctx.invoked_subcommand or "")
        return translate_names(message, python_to_option(cmd)) if cmd is not None else message


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="otbio")
@click.option("-v", "--verbose", count=True, help="Say what was chosen (-v) and more (-vv).")
@click.option("--quiet", is_flag=True, help="Show no progress and no informational messages.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; the same seed gives the same output.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Parallel jobs. 0 uses the CPUs granted by the scheduler (SLURM_CPUS_PER_TASK, ...) or the machine.",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "auto"]),
    default="cpu",
    show_default=True,
    help="Where the Sinkhorn kernels run. cuda needs otbio[gpu] (CuPy) and a GPU; auto picks cuda when present.",
)
@click.option("--debug", is_flag=True, help="Show the full traceback on error.")
def cli(verbose: int, quiet: bool, seed: int, jobs: int, device: str, debug: bool) -> None:
    """Optimal transport for biology: LOT embeddings of single-cell samples, elastic
    registration of spatial slices, and protein substructure alignment.

    Run `otbio COMMAND -h` for the options of each command.
    """
    check_environment()  # Numba's variables: one line and exit 2, before any work
    settings.verbosity = 0 if quiet else verbose
    settings.quiet = quiet
    settings.seed = seed
    settings.jobs = jobs or None
    settings.device = device
    settings.debug = debug
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2:
        level = logging.DEBUG
    if quiet:
        level = logging.ERROR
    logger = logging.getLogger("otbio")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("otbio: %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    use_threads(settings.n_jobs)  # applied when Numba loads: commands without kernels skip it
    logger.info(
        "jobs=%d device=%s seed=%d numba threads=%d (%s layer)",
        settings.n_jobs, device, seed, expected_threads(), threading_layer_name(),
    )  # fmt: skip


def main() -> None:
    """Console-script entry point (signals handled first: see :mod:`otbio._signals`)."""
    from otbio._signals import install_early_handlers

    install_early_handlers()
    cli.main(prog_name="otbio")


# subcommands register themselves on `cli` when imported, in the order listed here
from otbio.cli import transport  # noqa: E402, F401, I001
from otbio.cli import lot  # noqa: E402, F401, I001
from otbio.cli import lot_analysis  # noqa: E402, F401, I001
from otbio.cli import register  # noqa: E402, F401, I001
from otbio.cli import stack  # noqa: E402, F401, I001
from otbio.cli import align  # noqa: E402, F401, I001
from otbio.cli import index  # noqa: E402, F401, I001
from otbio.cli import _outputs  # noqa: E402, I001

_outputs.install(cli)  # every command: output guard and option checks before any work
