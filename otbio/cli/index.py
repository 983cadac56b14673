"""``otbio index``: an on-disk structure index for ``otbio align --index``."""

from __future__ import annotations

import logging

import click

from otbio.cli import cli
from otbio.cli._util import output_option, pdb_model_option

log = logging.getLogger("otbio")


@cli.command("index")
@click.argument("structures", nargs=-1, required=True)
@output_option(
    "The index directory. It is built beside its final place and moved there only when "
    "complete, so an interrupted build leaves no partial index (and an existing one intact).",
    type=click.Path(file_okay=False),
)
@click.option(
    "--append",
    is_flag=True,
    help="Add the structures to the existing index -o instead of replacing it. To search "
    "many structures, build shards (one index per job) instead and pass them all to "
    "otbio align --index.",
    show_default=True,
)
@pdb_model_option
def index_command(structures: tuple[str, ...], output: str, append: bool, pdb_model: int) -> None:
    """Index STRUCTURES for database search with `otbio align QUERY --index DB`.

    STRUCTURES are PDB or mmCIF files (gzip too, selections FILE:CHAIN allowed), folders
    of them, globs ('pdb/*.cif.gz', quoted) and @LIST files (one structure per line).
    For every chain the index stores order-free residue-pair features (binned CA-CA
    distance, local-frame angles and secondary-structure classes of pairs within 14 A)
    as inverted lists, and the CA coordinates (int16) with the residue numbers and names,
    so a query never reopens the source files. The global --jobs reads the files in
    parallel. Files that cannot be used are skipped with a warning.

    Example: otbio index proteome/ -o proteome.idx; otbio align motif.pdb:A:40-100
    --index proteome.idx --save-scores hits.tsv
    """
    from otbio._settings import settings
    from otbio.align import index

    manifest = index(
        list(structures),
        output,
        append=append,
        pdb_model=pdb_model,
        jobs=settings.n_jobs,
        progress=not settings.quiet,
    )
    log.info("index %s: %d structures", output, manifest["n_structures"])
