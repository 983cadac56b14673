"""``otbio align``: protein substructure alignment and search by Sinkhorn (after PLASMA)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from otbio._errors import InputError
from otbio.cli import cli
from otbio.cli._util import (
    deprecated_aliases,
    epsilon_option,
    handle_convergence,
    output_option,
    pdb_model_option,
    plot_option,
)

log = logging.getLogger("otbio")


@cli.command("align")
@deprecated_aliases(
    {
        "--model": "--pdb-model",
        "--plan": "--save-plan",
        "--superpose": "--save-superposed",
        "--scores": "--save-scores",
        "--seeds": "--n-fragments",
        "--max-iter": "--round-iter",
    }
)
@click.argument("query")
@click.argument("target", nargs=-1)
@click.option(
    "--targets",
    "targets_spec",
    default=None,
    metavar="DIR|LIST",
    help="A directory of structures (.pdb, .cif, .ent, gzipped too) or a text file with one "
    "structure per line, searched in addition to TARGET arguments; use it for database search. "
    "Files there that cannot be used (no protein, too few residues) are skipped with a warning.",
    show_default=True,
)
@click.option(
    "--index",
    "index_paths",
    multiple=True,
    help="An index built by `otbio index` (repeat the option for shards, or give a folder of "
    "shards): a rarity-weighted prefilter of order-free pair features picks the "
    "--check-candidates best structures, the alignment's fragment-seed superposition (on the stored coordinates) "
    "ranks those, and only the --max-candidates best are aligned (same table as --targets).",
)
@click.option(
    "--max-candidates",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Structures the --index prefilter passes on to the alignment; raise it for more "
    "recall on weak hits (about 3 ms of CPU each).",
)
@click.option(
    "--check-candidates",
    type=click.IntRange(min=0),
    default=20000,
    show_default=True,
    help="Structures of the --index key prefilter that get the geometric check before the "
    "--max-candidates best are aligned (about 0.35 ms of CPU each); raise it for noisy or "
    "distant queries, 0 ranks by the keys alone.",
)
@output_option(
    "Residue pairs (TSV): query and target chain, number, insertion code, name, and the "
    "plan value, for every target.",
    required=False,
    type=click.Path(dir_okay=False),
    show_default=True,
)
@click.option(
    "--save-scores",
    default=None,
    type=click.Path(dir_okay=False),
    help="Score table (TSV), one row per target ranked by TM-score: tm_score (normalised by "
    "the query), tm_score_target, aligned_length, rmsd, seq_identity (with --sequential "
    "tm_score_seq, tm_score_seq_target), PLASMA's score, coverage, converged (the alignment "
    "settled: --round-iter more Sinkhorn iterations give the same pairs or TM-score within "
    "0.02; the rounds are capped by design). Without -o and --save-scores the table goes to "
    "stdout.",
    show_default=True,
)
@click.option(
    "--features",
    default="geometric",
    show_default=True,
    help="'geometric' (from the coordinates) or a .npy file (L x d) of query residue "
    "embeddings computed elsewhere (e.g. ESM-2); then pass --target-features too.",
)
@click.option(
    "--target-features",
    multiple=True,
    help="Embedding .npy per target, in target order (repeat the option), or one directory "
    "holding <target file stem>.npy; needed when --features is a .npy file.",
    show_default=True,
)
@click.option(
    "--plasma-pf",
    is_flag=True,
    help="Reproduce PLASMA-PF on embeddings: per-residue normalisation, hinge cost, "
    "temperature 0.1 and 20 Sinkhorn iterations.",
    show_default=True,
)
@epsilon_option(
    "Entropic regularisation of the plan, absolute (default 1.0 for geometric features, "
    "10 with --plasma-pf, i.e. PLASMA's temperature 0.1). Lower it for sharper plans, raise "
    "it for smoother ones.",
    default=None,
)
@click.option("--temperature", type=float, default=None, hidden=True)  # deprecated: 1/epsilon
@click.option(
    "--threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Plan value above which a residue pair is reported; 0.5 means a majority of the "
    "residue's mass. Lower it to see weaker correspondences.",
)
@click.option(
    "--sequence-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Cost of an amino-acid mismatch added to the geometric cost; 0 is pure shape "
    "search, 2-5 favours sequence-identical partners.",
)
@click.option(
    "--mass",
    type=click.Choice(["partial", "balanced", "unbalanced"]),
    default="partial",
    show_default=True,
    help="Marginals: partial (each residue of the smaller protein sends mass 1, each of the "
    "larger receives at most 1), balanced, or unbalanced (KL-relaxed, slower).",
)
@click.option(
    "--reg-m",
    type=float,
    default=1.0,
    show_default=True,
    help="Weight of the marginal penalties with --mass unbalanced; larger is closer to balanced.",
)
@click.option(
    "--refine",
    type=click.IntRange(min=0),
    default=None,
    help="Rounds of geometric refinement of the local-feature round (superpose the pairs, add "
    "CA distances to the cost, solve again; kept only if the TM-score rises to at least 0.5); "
    "default 1, or 0 with --plasma-pf. 0 gives plain PLASMA. With seeds the local-feature "
    "round runs only when no seed fits or domains moved.",
    show_default=True,
)
@click.option(
    "--n-fragments",
    type=click.IntRange(min=0),
    default=None,
    help="Fragment pairs tried as seeded superpositions (fragment -> Kabsch -> TM-weighted "
    "extension -> an OT round on the distances after superposition from each of the 3 best, "
    "one more from the best of them); default 32, 0 "
    "with --plasma-pf or --mass other than partial. 0 turns them off (local features only).",
    show_default=True,
)
@click.option(
    "--sequential",
    is_flag=True,
    help="Add tm_score_seq and tm_score_seq_target to the score table: the TM-score of the "
    "best sequential, TM-align-style alignment (iterated DP and superposition), by the query "
    "and by the target; it ranks pairs as TM-align does. About doubles the time per chain pair.",
    show_default=True,
)
@click.option(
    "--round-iter",
    type=click.IntRange(min=1),
    default=None,
    help="Sinkhorn iterations per round (default 20, as in PLASMA): a fixed budget, not a "
    "convergence limit; raise it if pairs look noisy.",
    show_default=True,
)
@pdb_model_option
@click.option(
    "--save-plan",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the dense plan (L_q x L_c, .npy) of the best-ranked target.",
    show_default=True,
)
@plot_option(
    "Write a heat map of the plan of the best-ranked target (.png, .pdf, .svg).",
    type=click.Path(dir_okay=False),
    show_default=True,
)
@click.option(
    "--save-superposed",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the query superposed onto the best-ranked target, using the pairs: PDB, or "
    "mmCIF for a .cif or .mmcif name.",
    show_default=True,
)
def align_command(
    query: str,
    target: tuple[str, ...],
    targets_spec: str | None,
    index_paths: tuple[str, ...],
    max_candidates: int,
    check_candidates: int,
    output: str | None,
    save_scores: str | None,
    features: str,
    target_features: tuple[str, ...],
    plasma_pf: bool,
    epsilon: float | None,
    temperature: float | None,
    threshold: float,
    sequence_weight: float,
    mass: str,
    reg_m: float,
    refine: int | None,
    n_fragments: int | None,
    sequential: bool,
    round_iter: int | None,
    pdb_model: int,
    save_plan: str | None,
    plot_path: str | None,
    save_superposed: str | None,
) -> None:
    """Align a QUERY structure (motif, domain or chain) onto TARGET structures.

    QUERY and TARGET are PDB or mmCIF files (gzip too), with optional selections
    FILE:CHAIN or FILE:CHAIN:10-55,80-95 (several ranges make a discontiguous motif; an
    empty CHAIN, FILE::10-55, means every chain) and FILE@N for model N of that file.
    The residue-level plan is PLASMA's (Wang et al., ICLR 2026) on features computed
    from the coordinates, or on embeddings; seeded superpositions (fragment pairs ->
    Kabsch, as TM-align seeds) and Sinkhorn rounds on the distances after superposition
    keep it right under 1-1.5 A of coordinate noise or a conformational change. Targets
    are ranked by TM-score (by the query); the table also gives the TM-score by the
    target, aligned length, RMSD, sequence identity and PLASMA's score.

    Search: with --targets DIR the global --jobs reads and featurises the structures in
    parallel worker processes (each file once) and splits the alignments over as many
    processes (each alignment a serial dense Sinkhorn; at most one process per CPU, and
    they end with the command, however it ends); chains of several thousand
    residues instead align one after another, each using every core.

    Example: otbio align adk_open.pdb::122-159 adk_closed.pdb 1hvr.pdb -o pairs.tsv
    --save-scores scores.tsv --plot plan.png
    """
    from otbio._settings import settings
    from otbio._threading import tune_malloc

    epsilon = _epsilon_from_temperature(epsilon, temperature)
    specs, listed = _check_targets(target, targets_spec, index_paths, features, plasma_pf)
    tune_malloc()  # process tuning belongs to the command line, not to the library
    q, targets = _read_structures(query, specs, listed, features, pdb_model)
    qf, tf = _read_features(features, target_features, q, targets)
    kw = dict(
        epsilon=epsilon,
        threshold=threshold,
        sequence_weight=sequence_weight,
        plasma_pf=plasma_pf,
        mass=mass,
        reg_m=reg_m,
        refine=refine,
        n_fragments=n_fragments,
        sequential=sequential,
        round_iter=round_iter,
        device=settings.device,
    )
    if index_paths and features != "geometric":
        msg = "--index searches with geometric features; drop --features"
        raise InputError(msg)
    cands = (max_candidates, check_candidates)
    results = _run_alignments(q, targets, qf, tf, kw, list(index_paths), cands, pdb_model)
    table = _check_results(results, threshold)
    # everything is computed and checked before the first file is written
    best = results[0]
    fig = _plan_figure(best) if plot_path else None
    if save_superposed and best.n_pairs < 3:
        msg = (
            f"cannot superpose: only {best.n_pairs} pair(s) above --threshold "
            f"with {best.target.name}; lower --threshold"
        )
        raise InputError(msg)
    _write_outputs(results, table, fig, output, save_scores, save_plan, plot_path, save_superposed)
    log.info("aligned %s onto %d target(s); best %s", q.name, len(results), best.target.name)


def _epsilon_from_temperature(epsilon: float | None, temperature: float | None) -> float | None:
    """The --epsilon to use, given the deprecated --temperature (PLASMA's, 1 / epsilon).

    Takes both option values; returns ``epsilon`` unchanged when --temperature is not given,
    else ``1 / temperature`` after one deprecation line on stderr. Raises InputError when both
    are given or the temperature is not positive.
    """
    if temperature is None:
        return epsilon
    click.echo(
        "otbio: warning: 'align --temperature' is deprecated and will be removed; use "
        "--epsilon (--epsilon E is --temperature 1/E)",
        err=True,
    )
    if epsilon is not None:
        msg = "give --epsilon or the deprecated --temperature, not both"
        raise InputError(msg)
    if not temperature > 0:
        msg = f"--temperature must be positive, got {temperature}"
        raise InputError(msg)
    return 1.0 / temperature


def _check_targets(
    target: tuple[str, ...],
    targets_spec: str | None,
    index_paths: tuple[str, ...],
    features: str,
    plasma_pf: bool,
) -> tuple[list[str], list[str]]:
    """Check that there is something to align against, before reading any structure.

    Takes the TARGET arguments, --targets, --index, --features and --plasma-pf; returns the
    TARGET specs and the structures that --targets lists (read from its directory or list
    file). Raises InputError when no target is given at all, or --plasma-pf comes without
    embeddings.
    """
    from otbio.align import list_targets

    specs = list(target)
    listed = list_targets(targets_spec) if targets_spec else []
    if not specs and not listed and not index_paths:
        msg = "no target given; pass TARGET files, --targets DIR|LIST or --index DB"
        raise InputError(msg)
    if plasma_pf and features == "geometric":
        msg = "--plasma-pf needs embeddings; pass --features QUERY.npy and --target-features"
        raise InputError(msg)
    return specs, listed


def _read_structures(
    query: str, specs: list[str], listed: list[str], features: str, pdb_model: int
) -> tuple[Any, list]:
    """Read the query and the targets (the --jobs worker processes read several at once).

    Takes the QUERY spec, the TARGET specs, the --targets listing, --features and
    --pdb-model; returns the query structure and the targets: structures for the TARGET
    arguments, then for a geometric database search the listed paths themselves (search()
    reads each in the worker that aligns it, skipping unusable files with a warning), else
    the listed structures read here (unusable ones skipped).
    """
    from otbio._settings import settings
    from otbio.align import read_structure, read_structures

    show = not settings.quiet
    q = read_structure(query, pdb_model=pdb_model)
    targets = read_structures(specs, pdb_model=pdb_model, jobs=settings.n_jobs, progress=show)
    if features == "geometric" and len(targets) + len(listed) > 1:
        # database search: search() reads the listed files in its worker processes, each
        # file read and aligned in the same process; files that cannot be used are skipped
        # with a warning
        targets += listed
    else:
        targets += read_structures(
            listed, pdb_model=pdb_model, jobs=settings.n_jobs, skip_bad=True, progress=show
        )
    return q, targets


def _read_features(
    features: str, target_features: tuple[str, ...], q, targets: list
) -> tuple[Any, list | None]:
    """The residue embeddings of --features / --target-features (``(None, None)`` for
    geometric features).

    Takes --features ('geometric' or the query's .npy), --target-features (one .npy per
    target, or one directory of <stem>.npy), the query and the targets; returns the query's
    embedding and the list of the targets' embeddings, each checked against its structure.
    Raises InputError for another --features value or a count that does not match the
    targets.
    """
    from pathlib import Path

    from otbio.align import load_embedding

    if features == "geometric":
        return None, None
    if not features.endswith(".npy"):
        msg = f"--features must be 'geometric' or a .npy file, got '{features}'"
        raise InputError(msg)
    qf = load_embedding(features, q)
    paths = list(target_features)
    if len(paths) == 1 and Path(paths[0]).is_dir():
        d = Path(paths[0])
        paths = [str(d / (_stem(t.path) + ".npy")) for t in targets]
    if len(paths) != len(targets):
        msg = (
            f"{len(paths)} --target-features for {len(targets)} targets; give one .npy "
            "per target or a directory of <stem>.npy files"
        )
        raise InputError(msg)
    tf = [load_embedding(p, t) for p, t in zip(paths, targets, strict=True)]
    return qf, tf


def _run_alignments(
    q,
    targets: list,
    qf,
    tf: list | None,
    kw: dict[str, Any],
    index_paths: list[str],
    cands: tuple[int, int],
    pdb_model: int,
) -> list:
    """Align the query: a prefiltered search of --index, one pair, or a search of many.

    Takes the query, the targets (structures or paths), the embeddings (or None), the
    alignment options ``kw`` shared by every route, the --index shards, (--max-candidates,
    --check-candidates) and --pdb-model; returns the alignment results ranked best first (one per target aligned).
    """
    from otbio._settings import settings
    from otbio.align import align, search

    show = not settings.quiet
    if index_paths:
        return search(
            q,
            targets,
            index=index_paths,
            max_candidates=cands[0],
            check_candidates=cands[1],
            jobs=settings.n_jobs,
            progress=show,
            pdb_model=pdb_model,
            skip_bad=True,
            **kw,
        )
    if len(targets) == 1:
        return [
            align(
                q,
                targets[0],
                query_features=qf,
                target_features=None if tf is None else tf[0],
                **kw,
            )
        ]
    return search(
        q,
        targets,
        query_features=qf,
        target_features=tf,
        jobs=settings.n_jobs,
        progress=show,
        pdb_model=pdb_model,
        skip_bad=True,
        **kw,
    )


def _check_results(results: list, threshold: float):
    """The score table of ``results``, after the convergence policy and the empty-result
    warning.

    Takes the ranked results and --threshold; returns the score table (one row per target).
    Warns (one line at the end of the command) when alignments did not settle, and logs a
    warning when no residue pair passed --threshold with any target.
    """
    import numpy as np

    from otbio.align import score_table

    table = score_table(results)
    best = results[0]
    n_bad = sum(not r.converged for r in results)
    handle_convergence(
        n_bad == 0,
        f"{n_bad} of {len(results)} alignments" if len(results) > 1 else "the alignment",
        advice="the pairs still change with more iterations (converged False); raise --round-iter",
    )
    if all(r.n_pairs == 0 for r in results):
        tm = best.tm_score
        log.warning(
            "no residue pair above --threshold %g with %s; best TM-score %s (%s)",
            threshold,
            "the target" if len(results) == 1 else f"any of {len(results)} targets",
            f"{tm:.2f}" if np.isfinite(tm) else "n/a (no superposition)",
            best.target.name,
        )
    return table


def _plan_figure(best):
    """The heat map of the best-ranked target's plan (--plot), titled with its scores.

    Takes the best result; returns the matplotlib figure (not yet written).
    """
    from otbio.plot._align import alignment_figure

    return alignment_figure(
        best.plan,
        pairs=best.pairs,
        query_labels=best.query.labels(),
        target_labels=best.target.labels(),
        title=f"{best.query.name} -> {best.target.name}: TM-score {best.tm_score:.3f} "
        f"(by the query; PLASMA score {best.score:.3f}), {best.n_pairs} pairs",
    )


def _write_outputs(
    results: list,
    table,
    fig,
    output: str | None,
    save_scores: str | None,
    save_plan: str | None,
    plot_path: str | None,
    save_superposed: str | None,
) -> None:
    """Write every requested output, all computed before: the residue pairs of every target
    (-o), the score table (--save-scores, or stdout when neither -o nor --save-scores is
    given), the best target's plan (--save-plan), its figure (--plot) and the query
    superposed onto it (--save-superposed). Returns nothing.
    """
    import numpy as np

    from otbio.align import write_superposed
    from otbio.io import save_figure, write_npy, write_table

    best = results[0]
    if output:
        import pandas as pd  # after the solves: not on the path to the first kernel

        pairs = pd.concat([r.pairs_table() for r in results], ignore_index=True)
        write_table(pairs, output)
    if save_scores:
        write_table(table, save_scores)
    if save_plan:
        write_npy(np.asarray(best.plan, dtype=np.float32), save_plan)
    if fig is not None:
        save_figure(fig, plot_path)
    if save_superposed:
        write_superposed(best, save_superposed)
    if not output and not save_scores:
        table.to_csv(sys.stdout, sep="\t", index=False)


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for suffix in (".gz", ".pdb", ".ent", ".cif", ".mmcif"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name
