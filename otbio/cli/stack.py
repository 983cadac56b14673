"""``otbio stack``: registered sections -> one AnnData with 3-D coordinates."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import click

from otbio._errors import InputError
from otbio.cli import cli
from otbio.cli._util import output_option

log = logging.getLogger("otbio")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _load_stack_sections():
    """``otbio.register._stack.stack_sections`` without importing otbio.register, whose
    package imports the registration kernels: stacking needs no kernel (nor Numba's cache)."""
    import importlib.util
    import sys

    mod = sys.modules.get("otbio.register._stack")
    if mod is None:
        path = Path(__file__).resolve().parents[1] / "register" / "_stack.py"
        spec = importlib.util.spec_from_file_location("otbio._stack_only", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod.stack_sections


@cli.command("stack")
@click.argument("sections", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--spatial-keys",
    default="spatial",
    show_default=True,
    help="obsm key(s) of each section's in-frame 2-D coordinates: one key for all, or a comma-separated list, one per section (e.g. spatial,spatial_registered,spatial_registered).",
)
@click.option(
    "--z",
    "z_values",
    default=None,
    help="Comma-separated height of each section; 0, 1, 2, ... (the section order) when absent.",
)
@click.option(
    "--names", default=None, help="Comma-separated section names; the file names when absent."
)
@click.option(
    "--join",
    type=click.Choice(["outer", "inner"]),
    default="outer",
    show_default=True,
    help="Genes kept: the union (missing counts 0) or only those shared by every section.",
)
@output_option("Output .h5ad.", type=click.Path(dir_okay=False))
def stack(sections, spatial_keys, z_values, names, join, output):
    """Stack SECTIONS (already placed in one frame, e.g. by `otbio register`) into one
    AnnData: obs['section'], obs['z'], obsm['spatial_3d'] = [x, y, z]."""
    from otbio import io

    stack_sections = _load_stack_sections()

    n = len(sections)
    keys = _split(spatial_keys)
    if len(keys) == 1:
        keys = keys * n
    try:
        z = [float(v) for v in _split(z_values)] if z_values else list(range(n))
    except ValueError as exc:
        msg = f"--z must be comma-separated numbers, got '{z_values}'"
        raise InputError(msg) from exc
    if not all(math.isfinite(v) for v in z):
        msg = f"--z must be finite numbers, got '{z_values}'"
        raise InputError(msg)
    nm = _split(names) if names else [Path(s).name.split(".")[0] for s in sections]
    adatas = []
    for k, path in enumerate(sections):
        name = nm[k] if k < len(nm) else Path(path).name
        with warnings.catch_warnings():  # anndata's repeated warning becomes one line below
            warnings.filterwarnings("ignore", "Observation names are not unique")
            adatas.append(io.read_h5ad(path))
        dup = adatas[-1].obs_names[adatas[-1].obs_names.duplicated()]
        if len(dup):
            msg = (
                f"section '{name}' ({path}) has {len(dup)} repeated cell names (obs_names), "
                f"e.g. '{dup[0]}'; make them unique first (AnnData.obs_names_make_unique)"
            )
            raise InputError(msg)
    out = stack_sections(adatas, spatial_keys=keys, z=z, names=nm, join=join)
    if out.n_vars == 0 and any(a.n_vars for a in adatas):
        msg = f"--join {join}: the sections share no genes (var_names); use --join outer"
        raise InputError(msg)
    io.write_h5ad(out, output)
    log.info("stacked %d sections, %d cells -> %s", n, out.n_obs, output)
