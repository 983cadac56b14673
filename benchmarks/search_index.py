"""Motif search at database scale: ``otbio index`` + ``otbio align --index`` against
exhaustive ``otbio align --targets`` (and TM-align on a subset).

The database is rebuilt offline, never committed (``--db DIR``, default
$TMPDIR/otbio-search-index). Real chains: the 25 chains of test_data/protein/chains, AdK
open and closed, HIV-1 protease chain A, and the chains shipped by Debian's
``theseus-examples`` (``apt-get install theseus-examples``: lactate/malate dehydrogenases,
trypsin-like proteases, cytochromes c; files gemmi cannot read are cut at column 72). Three
motif sources are taken out of that pool (test chains 2, 13 and 22): their motifs are
residues 40-89 of each. Every database structure is written as a CA-only PDB file:

- planted (``--planted`` per motif, default 20): the motif's source chain, rotated, moved
  by 0.3 A of noise and a smooth deformation of 0.5 A RMS, truncated outside the motif, and
  recombined with a fragment (30-120 residues) of another real chain placed 25 A away and
  numbered after it; the motif's residue numbers are known;
- background: a real chain (not a motif source) perturbed the same way, truncated at
  either end (up to 20%), and in half of them recombined with a fragment of another chain;
- the real chains themselves, unchanged (no motif).

Queries: each motif (50 residues) rotated with 0.5 A and with 1.0 A of noise, and split into
two segments given in swapped order (0.5 A). Reported: query wall time of whole
processes (``otbio align --index``; medians of 3 motifs x 3 runs), CPU time, peak memory,
the recall of exhaustive search's top 10 (on the first ``--exhaustive`` structures, where
exhaustive search is affordable), the recall of the planted structures in the top
``--planted`` rows, index build rate and size.

Run from the repository root:

    python benchmarks/search_index.py [--n 20000] [--exhaustive 5000] [--no-append]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "test_data" / "protein"
THESEUS = Path("/usr/share/doc/theseus/examples")
MOTIF_SOURCES = (2, 13, 22)
MOTIF = (40, 90)
OTBIO = [sys.executable, "-c", "from otbio.cli import main; main()"]

from align import rotation, smooth_field, tm_align  # noqa: E402  (benchmarks/align.py: the same motifs' warps)


def real_chains(cache: Path):
    from otbio._errors import InputError
    from otbio.align import read_structure

    chains = [read_structure(p) for p in sorted((DATA / "chains").glob("*.pdb.gz"))
              if p.name[0].isdigit()]  # fmt: skip
    chains += [read_structure(DATA / "adk_open.pdb"), read_structure(DATA / "adk_closed.pdb"),
               read_structure(f"{DATA}/1hvr.pdb:A")]  # fmt: skip
    for sub in ("ldh", "trypsins", "cytochromes"):
        for f in sorted((THESEUS / sub).glob("*.pdb.gz")) if THESEUS.exists() else []:
            try:
                chains.append(read_structure(str(f)))
            except InputError:
                out = cache / f.name.replace(".gz", "")
                lines = gzip.open(f, "rt").read().splitlines()
                out.write_text("\n".join(x[:72] for x in lines) + "\n")
                try:
                    chains.append(read_structure(str(out)))
                except InputError:
                    pass
    return chains


def write_ca_pdb(path: Path, ca: np.ndarray, resname, resnum, chain="A") -> None:
    lines = []
    for k, (x, r, n) in enumerate(zip(ca, resname, resnum, strict=True)):
        lines.append(
            f"ATOM  {k + 1:5d}  CA  {r:>3s} {chain}{int(n):4d}    "
            f"{x[0]:8.3f}{x[1]:8.3f}{x[2]:8.3f}  1.00  0.00           C"
        )
    path.write_text("\n".join(lines) + "\nEND\n")


def perturbed(st, rng, keep=None):
    """CA coordinates of ``st`` rotated, deformed (0.5 A RMS) and noised (0.3 A), and the
    kept residue indices (a truncation at either end, never inside ``keep``)."""
    n = len(st)
    lo = rng.integers(0, max(1, n // 5))
    hi = n - rng.integers(0, max(1, n // 5))
    if keep is not None:
        lo, hi = min(lo, keep[0]), max(hi, keep[1])
    idx = np.arange(lo, hi)
    x = st.ca[idx]
    x = x + smooth_field(x, rng, 0.5) + rng.normal(0, 0.3, x.shape)
    return x @ rotation(rng).T, idx


def build_db(db: Path, n: int, planted: int, seed: int = 0):
    """Write the database; returns the list of files and {motif: [planted file names]}."""
    rng = np.random.default_rng(seed)
    cache = db / "_src"
    cache.mkdir(parents=True, exist_ok=True)
    chains = real_chains(cache)
    sources = [chains[k] for k in MOTIF_SOURCES]
    pool = [c for k, c in enumerate(chains) if k not in MOTIF_SOURCES]
    files, truth = [], {}
    out = db / "structures"
    out.mkdir(exist_ok=True)

    def fragment(exclude):
        other = pool[rng.integers(len(pool))]
        while other is exclude:
            other = pool[rng.integers(len(pool))]
        m = len(other)
        ln = int(rng.integers(min(30, m), min(120, m) + 1))
        a = int(rng.integers(0, m - ln + 1))
        return other, np.arange(a, a + ln)

    def write(name, parts):
        """parts: (coordinates, residue names); joined, numbered 1.., fragments 25 A apart."""
        xs, names = [], []
        shift = np.zeros(3)
        for x, rn in parts:
            x = x - x.mean(0) + shift
            shift = shift + np.array([25.0 + np.ptp(x[:, 0]), 0.0, 0.0])
            xs.append(x)
            names += list(rn)
        x = np.concatenate(xs)
        p = out / name
        write_ca_pdb(p, x, names, np.arange(1, len(x) + 1))
        files.append(str(p))

    for m, src in enumerate(sources):
        truth[m] = []
        for r in range(planted):
            x, idx = perturbed(src, rng, keep=MOTIF)
            other, fidx = fragment(src)
            fx = other.ca[fidx] @ rotation(rng).T
            parts = [(x, src.resname[idx]), (fx, other.resname[fidx])]
            if r % 2:
                parts = parts[::-1]
            name = f"planted_m{m}_{r:03d}.pdb"
            write(name, parts)
            truth[m].append(name)
    for c in pool:
        write(f"real_{len(files):06d}.pdb", [(c.ca, c.resname)])
    while len(files) < n:
        c = pool[rng.integers(len(pool))]
        x, idx = perturbed(c, rng)
        parts = [(x, c.resname[idx])]
        if rng.random() < 0.5:
            other, fidx = fragment(c)
            parts.append((other.ca[fidx] @ rotation(rng).T, other.resname[fidx]))
        write(f"bg_{len(files):06d}.pdb", parts)
    rng.shuffle(files)
    return files, truth, sources


def queries(sources, seed=1):
    """(label, motif index, Structure) for every motif: 0.5 A, 1.0 A, swapped (0.5 A)."""
    rng = np.random.default_rng(seed)
    out = []
    a, b = MOTIF
    for m, src in enumerate(sources):
        for label, noise, swap in (("0.5 A", 0.5, False), ("1.0 A", 1.0, False),
                                   ("swapped, 0.5 A", 0.5, True)):  # fmt: skip
            idx = np.arange(a, b)
            if swap:
                h = (a + b) // 2
                idx = np.r_[np.arange(h, b), np.arange(a, h)]
            q = src.subset(idx, name=f"motif{m}")
            x = q.ca @ rotation(rng).T + rng.normal(0, noise, q.ca.shape)
            out.append((label, m, q.with_coordinates(x)))
    return out


def run(cmd):
    """Wall s, CPU s (the process and its workers), peak memory MB of the process (GNU time
    when present: RUSAGE_CHILDREN's maximum would be that of every earlier child too)."""
    timer = ["/usr/bin/time", "-f", "MAXRSS_KB %M"] if Path("/usr/bin/time").exists() else []
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([*timer, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    rss = r1.ru_maxrss / 1024
    for line in p.stderr.splitlines()[::-1]:
        if line.startswith("MAXRSS_KB "):
            rss = int(line.split()[1]) / 1024
            break
    return wall, cpu, rss, p


def table_rows(path: str) -> list[str]:
    import pandas as pd

    df = pd.read_csv(path, sep="\t")
    return [Path(str(t).split(":")[0]).name for t in df["target"]]


def top10_with_ties(ex: str, via: str, tie: float = 0.001) -> float:
    """Share of the index's top 10 that is in the exhaustive top 10, where targets whose
    exhaustive TM-score is within ``tie`` of the exhaustive 10th count as tied with it (the
    stored int16 coordinates move TM-scores by a few 1e-4, which reorders such ties)."""
    import pandas as pd

    e = pd.read_csv(ex, sep="\t")
    names = [Path(str(t).split(":")[0]).name for t in e["target"]]
    tm = e["tm_score"].to_numpy()
    tied = {n for n, x in zip(names, tm, strict=True) if x >= tm[min(9, len(tm) - 1)] - tie}
    return len(set(table_rows(via)[:10]) & tied) / 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="structures in the database")
    ap.add_argument("--planted", type=int, default=20, help="planted copies per motif")
    ap.add_argument("--exhaustive", type=int, default=5000,
                    help="structures of the subset searched exhaustively (and by the index)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--db", default=os.path.join(tempfile.gettempdir(), "otbio-search-index"))
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the database and indexes of an earlier run in --db")  # fmt: skip
    ap.add_argument("--reuse-db", action="store_true",
                    help="reuse the structures of an earlier run in --db (its all.txt) and "
                         "rebuild the indexes with the current code")  # fmt: skip
    ap.add_argument("--db-only", action="store_true",
                    help="only write the database's structures (then --reuse-db)")  # fmt: skip
    ap.add_argument("--motifs", default="0,1,2", help="motifs to query (comma-separated)")
    ap.add_argument("--tmalign", type=int, default=0, metavar="N",
                    help="only TM-align (tmtools) on the planted copies and N other structures of "
                         "the subset, for the queries of an earlier run in --db")  # fmt: skip
    ap.add_argument("--report", action="store_true",
                    help="only write the table from the rows saved in --db")  # fmt: skip
    args = ap.parse_args()
    db = Path(args.db)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    os.environ.update(env)
    if args.tmalign:
        lines = tmalign_rows(args, db)
        print("\n".join(lines))
        if not args.no_append:
            from _results import write_section

            write_section("search_index.tmalign", "\n".join(lines))
        return
    if args.report:
        import json

        info = json.loads((db / "build.json").read_text())
        rows = [json.loads(x) for x in (db / "rows.jsonl").read_text().splitlines() if x]
        lines = report(args, rows, info["build"], info["rate"], info["per_kb"], info["n"])
        print("\n".join(lines))
        if not args.no_append:
            from _results import write_section

            write_section("search_index", "\n".join(lines))
        return
    if args.reuse:
        files = (db / "all.txt").read_text().split()
        truth = {m: sorted(Path(f).name for f in files if Path(f).name.startswith(f"planted_m{m}_"))
                 for m in range(len(MOTIF_SOURCES))}  # fmt: skip
        sources = [real_chains(db / "_src")[k] for k in MOTIF_SOURCES]
        return query_rows(args, db, files, truth, sources)
    t0 = time.perf_counter()
    lst = db / "all.txt"
    if args.reuse_db and lst.exists():
        files = lst.read_text().split()
        if len(files) != args.n:
            sys.exit(f"--reuse-db: {lst} lists {len(files)} structures, not --n {args.n}")
        truth = {m: sorted(Path(f).name for f in files if Path(f).name.startswith(f"planted_m{m}_"))
                 for m in range(len(MOTIF_SOURCES))}  # fmt: skip
        sources = [real_chains(db / "_src")[k] for k in MOTIF_SOURCES]
        for old in ("shards", "subset.idx", "rows.jsonl", "build.json", "queries"):
            if (db / old).is_dir():
                shutil.rmtree(db / old)
            elif (db / old).exists():
                (db / old).unlink()
        print(f"database: {len(files)} structures reused from {db}", flush=True)
    else:
        if db.exists():
            shutil.rmtree(db)
        db.mkdir(parents=True)
        files, truth, sources = build_db(db, args.n, args.planted)
        print(f"database: {len(files)} structures written in {time.perf_counter() - t0:.0f} s",
              flush=True)  # fmt: skip
        lst.write_text("\n".join(files) + "\n")
        if args.db_only:
            return
    # the subset: every planted structure and the first structures of the shuffled list
    planted = {n for v in truth.values() for n in v}
    sub = [f for f in files if Path(f).name in planted]
    sub += [f for f in files if Path(f).name not in planted][: args.exhaustive - len(sub)]
    sub_lst = db / "subset.txt"
    sub_lst.write_text("\n".join(sub) + "\n")
    g = ["--jobs", str(args.jobs), "--quiet"]
    # index builds: whole database in two shards (as two cluster jobs would), and the subset
    half = len(files) // 2
    (db / "a.txt").write_text("\n".join(files[:half]) + "\n")
    (db / "b.txt").write_text("\n".join(files[half:]) + "\n")
    build = []
    for part, out in (("a.txt", "shards/a.idx"), ("b.txt", "shards/b.idx"),
                      ("subset.txt", "subset.idx")):  # fmt: skip
        w, c, rss, _ = run([*OTBIO, *g, "index", f"@{db / part}", "-o", str(db / out)])
        n_part = len((db / part).read_text().split())
        build.append((part, n_part, w, c, rss))
        print(f"index {part}: {n_part} structures, {w:.1f} s wall, {c:.1f} s CPU", flush=True)
    size = sum(f.stat().st_size for f in (db / "shards").rglob("*") if f.is_file())
    rate = sum(b[1] for b in build[:2]) / sum(b[2] for b in build[:2])
    per_kb = size / len(files) / 1024
    import json

    (db / "build.json").write_text(
        json.dumps(dict(build=build, rate=rate, per_kb=per_kb, n=len(files)))
    )
    rows = query_rows(args, db, files, truth, sources)
    lines = report(args, rows, build, rate, per_kb, len(files))
    print("\n".join(lines))
    if not args.no_append:
        from _results import write_section

        write_section("search_index", "\n".join(lines))


def query_rows(args, db, files, truth, sources):
    """Run the queries of ``--motifs``; each row is also appended to db/rows.jsonl."""
    import json

    g = ["--jobs", str(args.jobs), "--quiet"]
    sub_lst = db / "subset.txt"
    qdir = db / "queries"
    qdir.mkdir(exist_ok=True)
    want = {int(m) for m in args.motifs.split(",")}
    qs = [x for x in queries(sources) if x[1] in want]
    rows = []
    for label, m, q in qs:
        tag = f"m{m}_{label.replace(' ', '_').replace(',', '')}"
        qf = qdir / f"{tag}.pdb"
        write_ca_pdb(qf, q.ca, q.resname, q.resnum)
        walls, cpus, rsss = [], [], []
        for _ in range(args.repeats):
            out = qdir / f"{tag}_idx.tsv"
            w, c, rss, _ = run([*OTBIO, *g, "align", str(qf), "--index", str(db / "shards"),
                                "--save-scores", str(out)])  # fmt: skip
            walls.append(w)
            cpus.append(c)
            rsss.append(rss)
        hits = table_rows(str(out))
        rec_idx = len(set(hits[: args.planted]) & set(truth[m])) / len(truth[m])
        # exhaustive vs index on the subset
        ex = qdir / f"{tag}_ex.tsv"
        we, ce, _, _ = run([*OTBIO, *g, "align", str(qf), "--targets", str(sub_lst),
                            "--save-scores", str(ex)])  # fmt: skip
        sx = qdir / f"{tag}_sx.tsv"
        run([*OTBIO, *g, "align", str(qf), "--index", str(db / "subset.idx"), "--save-scores",
             str(sx)])  # fmt: skip
        ex_hits, sx_hits = table_rows(str(ex)), table_rows(str(sx))
        top10 = len(set(ex_hits[:10]) & set(sx_hits[:10])) / 10
        top10_tie = top10_with_ties(str(ex), str(sx))
        rec_ex = len(set(ex_hits[: args.planted]) & set(truth[m])) / len(truth[m])
        rec_sx = len(set(sx_hits[: args.planted]) & set(truth[m])) / len(truth[m])
        rows.append(dict(label=label, m=m, wall=walls, cpu=cpus, rss=max(rsss), rec_idx=rec_idx,
                         top10=top10, top10_tie=top10_tie, rec_ex=rec_ex, rec_sx=rec_sx, ex_wall=we, ex_cpu=ce))  # fmt: skip
        print(rows[-1], flush=True)
        with open(db / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(rows[-1]) + "\n")
    return rows


def _tm_batch(job):
    """TM-align (tmtools) of one query against files; (TM-scores by the query, CPU s)."""
    from otbio.align import read_structure

    qf, paths = job
    q = read_structure(qf)
    c0 = time.process_time()
    tms = [tm_align(q, read_structure(p)).tm_norm_chain1 for p in paths]
    return tms, time.process_time() - c0


def tmalign_rows(args, db) -> list[str]:
    """TM-align beside otbio on a subset it can afford: every planted copy and the first
    ``--tmalign`` other structures of subset.txt, each query of an earlier run; TM-align
    ranks by the TM-score normalised by the query. Reported: planted copies in the top
    ``--planted`` for TM-align and for otbio's exhaustive table (ex.tsv of that run)
    restricted to the same structures, and TM-align's CPU per structure, extrapolated to
    the whole database on ``--jobs`` cores."""
    from importlib.metadata import version
    from multiprocessing import Pool

    sub = (db / "subset.txt").read_text().split()
    n_all = len((db / "all.txt").read_text().split())
    planted = [f for f in sub if Path(f).name.startswith("planted_")]
    others = [f for f in sub if not Path(f).name.startswith("planted_")][: args.tmalign]
    paths = planted + others
    names = {Path(f).name for f in paths}
    rows, cpu, n_pairs = [], 0.0, 0
    for qf in sorted((db / "queries").glob("m*.pdb")):
        tag = qf.stem
        m = int(tag[1])
        truth = {Path(f).name for f in planted if Path(f).name.startswith(f"planted_m{m}_")}
        chunks = [paths[k :: args.jobs] for k in range(args.jobs)]
        with Pool(args.jobs) as pool:
            res = pool.map(_tm_batch, [(str(qf), c) for c in chunks])
        tms = {Path(p).name: t for c, (ts, _) in zip(chunks, res) for p, t in zip(c, ts)}
        cpu += sum(r[1] for r in res)
        n_pairs += len(paths)
        tm_top = sorted(tms, key=lambda k: -tms[k])[: args.planted]
        ex_names = table_rows(str(db / "queries" / f"{tag}_ex.tsv"))
        ot_top = [x for x in ex_names if x in names][: args.planted]
        rows.append(
            (tag, len(truth & set(tm_top)) / len(truth), len(truth & set(ot_top)) / len(truth))
        )
        print(rows[-1], flush=True)
    per = cpu / n_pairs
    out = [
        "",
        f"### TM-align beside otbio on {len(paths):,} structures of the subset",
        "",
        f"Command: `python benchmarks/search_index.py --db {args.db} --tmalign {args.tmalign}` "
        f"(after the run above; tmtools {version('tmtools')}"
        f"). Structures: the {len(planted)} planted copies and {len(others):,} others of the "
        "subset; each query of the run above; TM-align ranks by the TM-score normalised by "
        f"the query, otbio by its exhaustive table restricted to the same structures. Load "
        f"average {os.getloadavg()[0]:.1f} at the end.",
        "",
        f"| query | planted copies in the top {args.planted}: TM-align | otbio exhaustive |",
        "|---|---|---|",
        *[f"| {t} | {a:.3f} | {b:.3f} |" for t, a, b in rows],
        "",
        f"TM-align: {per * 1000:.1f} ms of CPU per structure (parsing included, {n_pairs:,} "
        f"pairs); {n_all:,} structures would take {per * n_all:.0f} s of CPU, about "
        f"{per * n_all / args.jobs:.0f} s of wall on {args.jobs} cores, per query.",
        "",
    ]
    return out


def report(args, rows, build, rate, per_kb, n) -> list[str]:
    def med(xs):
        return float(np.median(xs))

    load = os.getloadavg()[0]
    plain = [r for r in rows if r["label"] != "swapped, 0.5 A"]
    out = [
        f"## otbio align --index: motif search in {n:,} structures",
        "",
        f"Command: `python benchmarks/search_index.py --n {args.n} --exhaustive "
        f"{args.exhaustive}` (from the repository root). Machine: {platform.machine()}, 2 "
        f"cores shared with other sessions (load average {load:.1f} at the end), "
        f"`--jobs {args.jobs}`. Database: CA-only PDB files made from real chains "
        "(test_data, Debian's theseus-examples) by perturbation, truncation and "
        f"recombination, {args.planted} planted copies of each of 3 motifs (50 residues) "
        "(see the script's docstring); index in two shards built as two jobs.",
        "",
        "| measure | otbio --index | exhaustive --targets | goal |",
        "|---|---|---|---|",
        f"| query wall s, whole process, median of 3 motifs x {args.repeats} runs "
        f"(0.5 / 1.0 A): {n:,} structures | {med([w for r in plain for w in r['wall']]):.2f} "
        f"| | <= 10 s at 100,000 |",
        f"| query CPU s (same runs) | {med([c for r in plain for c in r['cpu']]):.2f} | | |",
        f"| query peak memory MB (max over the runs measured by GNU time) | "
        f"{max((r['rss'] for r in rows if r.get('rss') is not None), default=float('nan')):.0f}"
        " | | <= 2048 |",
        f"| exhaustive search of the {args.exhaustive:,}-structure subset: wall s; CPU s "
        f"(median) | | {med([r['ex_wall'] for r in rows]):.1f}; "
        f"{med([r['ex_cpu'] for r in rows]):.1f} | |",
    ]
    for label in ("0.5 A", "1.0 A", "swapped, 0.5 A"):
        rs = [r for r in rows if r["label"] == label]
        out.append(
            f"| motif {label}: recall of exhaustive top 10 on the subset (mean of 3) | "
            f"{np.mean([r['top10'] for r in rs]):.2f} | 1 | >= 0.95 |"
        )
        if all("top10_tie" in r for r in rs):
            out.append(
                f"| motif {label}: the same, targets within 0.001 of the exhaustive 10th's "
                f"TM-score counted as tied | {np.mean([r['top10_tie'] for r in rs]):.2f} | 1 | |"
            )
        out.append(
            f"| motif {label}: planted copies in the top {args.planted}, subset (mean of 3) | "
            f"{np.mean([r['rec_sx'] for r in rs]):.3f} | {np.mean([r['rec_ex'] for r in rs]):.3f}"
            " | index >= exhaustive - 0.02 |"
        )
        out.append(
            f"| motif {label}: planted copies in the top {args.planted}, all {n:,} (mean of 3; "
            f"exhaustive: on the subset) | {np.mean([r['rec_idx'] for r in rs]):.3f} | "
            f"{np.mean([r['rec_ex'] for r in rs]):.3f} (subset) | |"
        )
    for part, n_part, w, c, rss in build:
        peak = "n/a" if rss is None else f"{rss:.0f}"
        out.append(
            f"| index build {part}: {n_part:,} structures, wall s; CPU s; structures per wall s;"
            f" per CPU s; peak MB | {w:.1f}; {c:.1f}; {n_part / w:.0f}; {n_part / c:.0f}; {peak}"
            " | | >= 200 /s on 2 cores |"
        )
    out.append(f"| index build rate over the two shards, structures/s | {rate:.0f} | | >= 200 |")
    out.append(f"| index size per structure, KB | {per_kb:.1f} | | <= 30 |")
    return out


if __name__ == "__main__":
    main()
