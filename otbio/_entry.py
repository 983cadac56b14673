"""The ``otbio`` console script. Its first line handles SIGINT, SIGTERM and SIGHUP
(:mod:`otbio._signals`), before the command line's imports."""

from otbio._signals import install_early_handlers

install_early_handlers()


def main() -> None:
    """Console-script entry point (``otbio``)."""
    from otbio.cli import main as cli_main

    cli_main()
