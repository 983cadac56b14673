"""otbio align vs TM-align (tmtools), side by side: motif recovery under noise, smooth
deformation, swapped segments, adenylate kinase open/closed, an NMR ensemble, ranking
agreement, and speed (per pair, and a 1,000-file search as whole processes).

Run from the repository root:

    python benchmarks/align.py [--draws 75] [--repeats 3] [--n-search 1000] [--no-append]
                               [--draw-seed 10] [--recovery-only]
    python benchmarks/align.py --ranking-only [--no-append]

``--draw-seed S`` draws the noise motifs with rng seed S, the deformed ones with S + 1 and
the swapped ones with S + 2 (default 10: the table's draws; 110 gives a second set);
``--recovery-only`` stops after the recovery table (no ranking or speed rows);
``--ranking-only`` runs only the ranking rows (Spearman with TM-align, cost).

tmtools (TM-align's Python wrapper, GPL) is a benchmark-only dependency; otbio never imports
it. Both tools get the same CA coordinates. Recovery of a motif: the share of its residues
mapped within +-1 residue of their true partner (otbio: the plan's row argmax; TM-align: its
aligned pairs, an unaligned residue counting as missed). Appends a section to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
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
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "test_data" / "protein"
CHAINS = sorted(p for p in (DATA / "chains").glob("*.pdb.gz") if p.name[0].isdigit())
NOISE = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


def med(xs):
    return float(np.median(xs))


def tm_align(q, t):
    from tmtools import tm_align as _tm

    return _tm(q.ca, t.ca, q.sequence, t.sequence)


def tmalign_mapping(res, nq):
    """Query residue -> target residue (or -1) from TM-align's aligned strings."""
    out = -np.ones(nq, dtype=int)
    i = j = 0
    for a, b in zip(res.seqxA, res.seqyA, strict=True):
        if a != "-" and b != "-":
            out[i] = j
        i += a != "-"
        j += b != "-"
    return out


def rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def smooth_field(x, rng, amplitude):
    """A random smooth displacement field over the points ``x`` (a sum of 4 plane waves of
    wavelength 15-40 A in random directions), scaled to an RMS amplitude ``amplitude``."""
    disp = np.zeros_like(x)
    for _ in range(4):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(15, 40))
        disp += np.sin(x @ k + rng.uniform(0, 2 * np.pi))[:, None] * rng.normal(size=3)
    return disp * amplitude / np.sqrt(np.mean(np.sum(disp**2, 1)))


def draw_motif(st, rng, n_seg):
    """Indices of ``n_seg`` non-overlapping segments of 20-40 residues (in chain order) and
    the segments as separate arrays."""
    n = len(st)
    for _ in range(100):
        starts = np.sort(rng.choice(np.arange(0, n - 40), n_seg, replace=False))
        segs = [np.arange(s, min(n, s + rng.integers(20, 41))) for s in starts]
        idx = np.concatenate(segs)
        if len(np.unique(idx)) == len(idx):
            return segs
    return [np.unique(np.concatenate(segs))]


def recovery_otbio(res, truth):
    return float(np.mean(np.abs(res.plan.argmax(1) - truth) <= 1))


def recovery_tm(m, st, truth):
    mp = tmalign_mapping(tm_align(m, st), len(truth))
    return float(np.mean((mp >= 0) & (np.abs(mp - truth) <= 1)))


def motif_trials(chains, draws, rng, *, noise=0.0, deform=None, swap=False):
    """Recovery of both tools over ``draws`` motifs (1-3 segments; 2-3 with ``swap``, whose
    segments are then given in reversed order), rotated and perturbed."""
    from otbio.align import align

    ot, tm, t_ot = [], [], []
    k = 0
    while len(ot) < draws:
        st = chains[k % len(chains)]
        n_seg = 2 + (k % 2) if swap else 1 + (k % 3)
        k += 1
        segs = draw_motif(st, rng, n_seg)
        if swap:
            segs = segs[::-1]
        truth = np.concatenate(segs)
        m = st.subset(truth)
        x = m.ca.copy()
        if deform is not None:
            x = x + smooth_field(x, rng, rng.uniform(*deform))
        x = x @ rotation(rng).T + rng.normal(0.0, noise, x.shape) + rng.normal(0, 20, 3)
        m = m.with_coordinates(x)
        t0 = time.perf_counter()
        res = align(m, st)
        t_ot.append(time.perf_counter() - t0)
        ot.append(recovery_otbio(res, truth))
        tm.append(recovery_tm(m, st, truth))
    return np.array(ot), np.array(tm), np.array(t_ot)


def fmt_rec(r):
    return f"{r.mean():.3f} / {np.mean(r >= 0.95):.2f} / {r.min():.2f}"


def _pairs(chains):
    """Every pair of chains, the shorter as query (ties: the first)."""
    for i in range(len(chains)):
        for j in range(len(chains)):
            q, t = chains[i], chains[j]
            if i == j or len(q) > len(t) or (len(q) == len(t) and i > j):
                continue
            yield q, t


def ranking(chains, closed, nmr) -> dict:
    """Spearman correlations between otbio's columns and TM-align's TM-score over every pair
    of unrelated test chains and over related pairs, and the CPU time per pair of otbio
    (default, and with the sequential column) and TM-align on the same parsed pairs."""
    from otbio.align import align, read_structure

    our_tm, our_score, our_seq, our_seq_t, tms, tms_t = [], [], [], [], [], []
    c_ot, c_seq, c_tm = [], [], []
    for q, t in _pairs(chains):
        # CPU time of each call, the three alternating pair by pair (structures parsed)
        c0 = time.process_time()
        plain = align(q, t)
        c1 = time.process_time()
        rr = align(q, t, sequential=True)  # the same alignment plus the sequential column
        c2 = time.process_time()
        ref = tm_align(q, t)
        c3 = time.process_time()
        c_ot.append(c1 - c0)
        c_seq.append(c2 - c1)
        c_tm.append(c3 - c2)
        assert rr.tm_score == plain.tm_score or not np.isfinite(plain.tm_score)
        our_tm.append(np.nan_to_num(rr.tm_score))
        our_score.append(rr.score)
        our_seq.append(rr.tm_score_seq)
        our_seq_t.append(rr.tm_score_seq_target)
        tms.append(ref.tm_norm_chain1)
        tms_t.append(ref.tm_norm_chain2)
    # TM-align's own stability on these pairs: its TM-score with the query moved by 0.5 A
    # of noise (the ceiling of any ranking agreement over unrelated pairs)
    rng = np.random.default_rng(13)
    tms_noisy = []
    for q, t in _pairs(chains):
        qn = q.with_coordinates(q.ca + rng.normal(0, 0.5, q.ca.shape))
        tms_noisy.append(tm_align(qn, t).tm_norm_chain1)
    # related pairs (the realistic ranking set of a search): the same protein in another
    # state or model, and its domains, from the test data; and a smoothly deformed copy of
    # every chain (2, 4 or 6 A RMS plus 0.5 A noise) onto its original
    rel_ot, rel_seq, rel_tm = [], [], []

    def related(q, t):
        rr = align(q, t, sequential=True)
        rel_ot.append(np.nan_to_num(rr.tm_score))
        rel_seq.append(rr.tm_score_seq)
        rel_tm.append(tm_align(q, t).tm_norm_chain1)

    related(read_structure(DATA / "adk_open.pdb"), closed)
    for ranges in ("122-159", "30-59", "1-29,60-121,160-214"):
        related(read_structure(f"{DATA / 'adk_open.pdb'}::{ranges}"), closed)
    for k in range(2, 25):
        related(read_structure(f"{nmr}@1"), read_structure(f"{nmr}@{k}"))
    related(read_structure(f"{DATA / '1hvr.pdb'}:A"), read_structure(f"{DATA / '1hvr.pdb'}:B"))
    for k, st in enumerate(chains):
        x = st.ca + smooth_field(st.ca, rng, (2.0, 4.0, 6.0)[k % 3])
        related(st.with_coordinates(x + rng.normal(0, 0.5, x.shape)), st)
    diff = np.abs(np.array(our_seq) - np.array(tms))
    return dict(
        n=len(tms), n_rel=len(rel_tm), tms=tms,
        rho_tm=spearmanr(our_tm, tms).statistic,
        rho_score=spearmanr(our_score, tms).statistic,
        rho_ceiling=spearmanr(tms, tms_noisy).statistic,
        rho_rel=spearmanr(rel_ot, rel_tm).statistic,
        rho_mix=spearmanr(our_tm + rel_ot, tms + rel_tm).statistic,
        rho_seq=spearmanr(our_seq, tms).statistic,
        rho_seq_t=spearmanr(our_seq_t, tms_t).statistic,
        rho_seq_rel=spearmanr(rel_seq, rel_tm).statistic,
        rho_seq_mix=spearmanr(our_seq + rel_seq, tms + rel_tm).statistic,
        diff_mean=float(diff.mean()), within=float(np.mean(diff <= 0.05)),
        rel_diff=float(np.mean(np.abs(np.array(rel_seq) - np.array(rel_tm)))),
        c_ot=med(c_ot), c_seq=med(c_seq), c_tm=med(c_tm),
    )  # fmt: skip


def ranking_lines(rk: dict) -> list[str]:
    """The ranking rows of the measures table."""
    return [
        f"| Spearman with TM-align's TM-score (by the shorter chain), {rk['n']} chain "
        f"pairs: otbio tm_score column | {rk['rho_tm']:.3f} | 1 | |",
        f"| the same for otbio's PLASMA score column | {rk['rho_score']:.3f} | | |",
        f"| the same for otbio's tm_score_seq column (`sequential=True`, `--sequential`: "
        f"best sequential alignment, TM-align's recipe) | {rk['rho_seq']:.3f} | 1 | |",
        f"| the same by the target: tm_score_seq_target against TM-align's TM-score by the "
        f"longer chain | {rk['rho_seq_t']:.3f} | 1 | |",
        f"| tm_score_seq minus TM-align's TM-score over those pairs: mean absolute "
        f"difference; share within 0.05 | {rk['diff_mean']:.3f}; {rk['within']:.2f} | | |",
        f"| TM-align's TM-score over those pairs: median, max | {np.median(rk['tms']):.3f}, "
        f"{np.max(rk['tms']):.3f} | | |",
        f"| TM-align against itself with the query moved by 0.5 A of noise, same pairs "
        f"(ceiling of a ranking agreement there) | | {rk['rho_ceiling']:.3f} | |",
        f"| Spearman of the tm_score columns over {rk['n_rel']} related pairs (AdK open/closed "
        f"and its 3 domains, NMR 2JUY model 1 vs 2-24, HIV protease chain A vs B, a deformed "
        f"copy (2/4/6 A RMS) of every chain onto its original) | {rk['rho_rel']:.3f} | 1 | |",
        f"| the same for tm_score_seq (mean absolute difference {rk['rel_diff']:.3f}) | "
        f"{rk['rho_seq_rel']:.3f} | 1 | |",
        f"| the same over the unrelated and related pairs together, {rk['n'] + rk['n_rel']} "
        f"pairs: tm_score; tm_score_seq | {rk['rho_mix']:.3f}; {rk['rho_seq_mix']:.3f} | 1 | |",
        f"| CPU ms per pair over the {rk['n']} pairs (parsed structures, the calls alternating): "
        f"default; with `sequential=True` | {rk['c_ot'] * 1e3:.2f}; {rk['c_seq'] * 1e3:.2f} | "
        f"{rk['c_tm'] * 1e3:.1f} | {rk['c_tm'] / rk['c_ot']:.1f}x; "
        f"{rk['c_tm'] / rk['c_seq']:.1f}x |",
    ]


def ranking_only(args) -> None:
    """``--ranking-only``: the ranking rows alone (no recovery, no speed sections)."""
    from otbio._threading import tune_malloc
    from otbio.align import align, read_structure

    tune_malloc()
    chains = [read_structure(p) for p in CHAINS]
    align(chains[0], chains[1], sequential=True)  # compile the Numba kernels before timing
    tm_align(chains[0], chains[1])
    rk = ranking(chains, read_structure(DATA / "adk_closed.pdb"), DATA / "nmr_2juy.pdb.gz")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = "python benchmarks/align.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        "## otbio align vs TM-align (tmtools): ranking",
        "",
        f"Command: `{cmd.strip()}` (from the repository root). Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other sessions (load average {load:.1f} at the "
        f"end). {len(CHAINS)} chains from test_data/protein/chains, every pair with the "
        "shorter chain as query; TM-scores by the query unless said.",
        "",
        "| measure | otbio align | TM-align (tmtools) | ratio |",
        "|---|---|---|---|",
        *ranking_lines(rk),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        from _results import write_section

        write_section("align.ranking", text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=75)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-search", type=int, default=1000)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--draw-seed", type=int, default=10)
    ap.add_argument("--recovery-only", action="store_true")
    ap.add_argument(
        "--ranking-only", action="store_true", help="only the ranking rows (Spearman, cost)"
    )
    args = ap.parse_args()
    seed = args.draw_seed
    if args.ranking_only:
        ranking_only(args)
        return

    from otbio._threading import tune_malloc
    from otbio.align import align, read_structure

    tune_malloc()  # as the command line does (keeps 16 MiB of freed heap; glibc only)

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    chains = [read_structure(p) for p in CHAINS]
    align(chains[0], chains[1])  # compile the Numba kernels before timing
    tm_align(chains[0], chains[1])
    rows = []

    # 1. motif recovery against coordinate noise
    for noise in NOISE:
        ot, tm, t = motif_trials(chains, args.draws, np.random.default_rng(seed), noise=noise)
        rows.append((f"motif, {noise:g} A noise", ot, tm))
        log(f"noise {noise}: otbio {fmt_rec(ot)}, TM-align {fmt_rec(tm)}, {med(t) * 1e3:.1f} ms")
    # 2. smooth deformation 1-3 A (plus 0.25 A noise)
    ot, tm, _ = motif_trials(
        chains, args.draws, np.random.default_rng(seed + 1), noise=0.25, deform=(1.0, 3.0)
    )
    rows.append(("motif, smooth deformation 1-3 A RMS + 0.25 A noise", ot, tm))
    log(f"deformation: otbio {fmt_rec(ot)}, TM-align {fmt_rec(tm)}")
    # 3. multi-segment motifs given in swapped (reversed) segment order
    for noise in (0.5, 1.0):
        ot, tm, _ = motif_trials(
            chains, args.draws, np.random.default_rng(seed + 2), noise=noise, swap=True
        )
        rows.append((f"2-3 segments in swapped order, {noise:g} A noise", ot, tm))
        log(f"swapped {noise}: otbio {fmt_rec(ot)}, TM-align {fmt_rec(tm)}")

    # 4. adenylate kinase open -> closed: LID, NMP, CORE as motifs, truth = identity
    closed = read_structure(DATA / "adk_closed.pdb")
    for name, ranges in (("LID", "122-159"), ("NMP", "30-59"), ("CORE", "1-29,60-121,160-214")):
        m = read_structure(f"{DATA / 'adk_open.pdb'}::{ranges}")
        truth = np.flatnonzero(np.isin(closed.resnum, m.resnum))
        r_ot = np.array([recovery_otbio(align(m, closed), truth)])
        r_tm = np.array([recovery_tm(m, closed, truth)])
        rows.append((f"AdK open -> closed, {name} ({len(m)} residues)", r_ot, r_tm))
    op = read_structure(DATA / "adk_open.pdb")
    whole = align(op, closed)
    rows.append(
        (
            "AdK open -> closed, whole chain",
            np.array([recovery_otbio(whole, np.arange(len(op)))]),
            np.array([recovery_tm(op, closed, np.arange(len(op)))]),
        )
    )

    # 5. NMR ensemble (2JUY, 24 models): motif of model 1 onto every other model
    nmr = DATA / "nmr_2juy.pdb.gz"
    for ranges in ("3-24", "5-14,18-26"):
        r_ot, r_tm = [], []
        for k in range(2, 25):
            m = read_structure(f"{nmr}@1::{ranges}")
            tg = read_structure(f"{nmr}@{k}")
            truth = np.flatnonzero(np.isin(tg.resnum, m.resnum))
            r_ot.append(recovery_otbio(align(m, tg), truth))
            r_tm.append(recovery_tm(m, tg, truth))
        rows.append(
            (f"NMR 2JUY model 1 residues {ranges} -> models 2-24", np.array(r_ot), np.array(r_tm))
        )
    log("AdK and NMR done")
    if args.recovery_only:
        _write(args, _recovery_lines(args, rows, "motif recovery only (--recovery-only)"))
        return

    # 6. ranking: every pair of test chains (the shorter as query), and related pairs
    rk = ranking(chains, closed, nmr)
    # 7. speed per pair (in process, parsing and features included; 20 fixed pairs, each
    # tool running them back to back, the repeats alternating between the tools)
    rng = np.random.default_rng(0)
    pair_idx = [tuple(rng.choice(len(CHAINS), 2, replace=False)) for _ in range(20)]
    t_ot, t_ot0, t_tm = [], [], []
    c_ot, c_ot0, c_tm = [], [], []  # CPU seconds of the same calls (less load-sensitive)
    cpu_of = {id(t_ot): c_ot, id(t_ot0): c_ot0, id(t_tm): c_tm}

    def timed(tool, i, j, out, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        tool(read_structure(CHAINS[i]), read_structure(CHAINS[j]), **kw)
        out.append(time.perf_counter() - t0)
        cpu_of[id(out)].append(time.process_time() - c0)

    for _ in range(args.repeats):
        for i, j in pair_idx:
            timed(align, i, j, t_ot)
        for i, j in pair_idx:
            timed(align, i, j, t_ot0, n_fragments=0)
        for i, j in pair_idx:
            timed(tm_align, i, j, t_tm)
    log(f"pair: otbio {med(t_ot) * 1e3:.2f} ms (n_fragments=0 {med(t_ot0) * 1e3:.2f}), "
        f"TM-align {med(t_tm) * 1e3:.1f} ms")  # fmt: skip

    # 8. whole processes: one pair, and one motif against N files (CLI, end to end)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    tm_script = (
        "import sys; from otbio.align import read_structure as r; from tmtools import tm_align;"
        "q=r(sys.argv[1]); "
        "[tm_align(q.ca, t.ca, q.sequence, t.sequence) for t in map(r, sys.argv[2:])]"
    )

    cpu = {}

    def run(cmd):
        """Wall-clock seconds of a whole process; its CPU seconds (user + system, with its
        worker processes) go to ``cpu[cmd[-1]]``: on a loaded machine wall time mostly
        measures the wait for a core."""
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.setdefault(cmd[-1], []).append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        return wall

    a, b = str(CHAINS[3]), str(CHAINS[8])
    otbio_cmd = [sys.executable, "-c", "from otbio.cli import main; main()", "--quiet", "align"]
    run([*otbio_cmd, a, b])  # fill Numba's on-disk cache (a fresh checkout compiles once)
    proc_ot = med([run([*otbio_cmd, a, b]) for _ in range(args.repeats)])
    proc_tm = med([run([sys.executable, "-c", tm_script, a, b]) for _ in range(args.repeats)])
    tmp = Path(tempfile.mkdtemp(prefix="otbio_bench_"))
    try:
        for k in range(args.n_search):
            src = CHAINS[k % len(CHAINS)]
            shutil.copyfile(src, tmp / f"{k:05d}_{src.name}")
        motif_spec = f"{CHAINS[7]}:A:{chains[7].resnum[20]}-{chains[7].resnum[54]}"
        out = tmp / "scores.tsv"
        t_search = med(
            [
                run([*otbio_cmd, motif_spec, "--targets", str(tmp), "--save-scores"
                     if _has_save_scores() else "--scores", str(out)])
                for _ in range(args.repeats)
            ]
        )  # fmt: skip
        import pandas as pd

        top = pd.read_csv(out, sep="\t").head(5)["target"]
        top_ok = all(str(t).endswith(CHAINS[7].name) for t in top)
        n_tm = min(200, args.n_search)
        files = sorted(str(f) for f in tmp.glob("*.pdb.gz"))[:n_tm]
        t_tm_search = run([sys.executable, "-c", tm_script, motif_spec, *files])
        t_tm_search *= args.n_search / n_tm
        c_search = med(cpu[str(out)])
        c_tm_search = cpu[files[-1]][-1] * args.n_search / n_tm
    finally:
        shutil.rmtree(tmp)
    log(f"search {args.n_search}: otbio {t_search:.2f} s, TM-align {t_tm_search:.1f} s")

    lines = _recovery_lines(args, rows, "recovery under variation, ranking, speed")
    lines += [
        "",
        "| measure | otbio align | TM-align (tmtools) | ratio |",
        "|---|---|---|---|",
        *ranking_lines(rk),
        f"| time per pair in process (ms, median of {args.repeats} x 20 pairs, parsing "
        f"included), default | {med(t_ot) * 1e3:.2f} | {med(t_tm) * 1e3:.1f} | "
        f"{med(t_tm) / med(t_ot):.1f}x |",
        f"| the same in CPU ms (process time; less sensitive to the load) | "
        f"{med(c_ot) * 1e3:.2f} | {med(c_tm) * 1e3:.1f} | {med(c_tm) / med(c_ot):.1f}x |",
        f"| time per pair in process (ms), --n-fragments 0 | {med(t_ot0) * 1e3:.2f} | "
        f"{med(t_tm) * 1e3:.1f} | {med(t_tm) / med(t_ot0):.1f}x |",
        f"| one pair as a whole process (s wall; CPU s), `otbio align A B` vs python "
        f"+ tmtools (both mostly interpreter start and imports) | {proc_ot:.2f}; "
        f"{med(cpu[b][1 : 1 + args.repeats]):.2f} | {proc_tm:.2f}; {med(cpu[b][-args.repeats :]):.2f} | "
        f"{proc_tm / proc_ot:.2f}x |",
        f"| one 35-residue motif vs {args.n_search} files, whole process (s, `otbio align "
        f"MOTIF --targets DIR`, jobs = all cores) | {t_search:.2f} | {t_tm_search:.1f} "
        f"(extrapolated from {n_tm}) | {t_tm_search / t_search:.1f}x |",
        f"| the same search, CPU seconds (user + system, workers included) | "
        f"{c_search:.2f} | {c_tm_search:.1f} | {c_tm_search / c_search:.1f}x |",
        f"| search: true parent in the top 5 | {top_ok} | - | |",
        "",
    ]
    _write(args, lines)


def _recovery_lines(args, rows, title: str) -> list[str]:
    """The section header, the command and the recovery table."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = "python benchmarks/align.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        f"## otbio align vs TM-align (tmtools): {title}",
        "",
        f"Command: `{cmd.strip()}` (from the repository root). Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other sessions (load average {load:.1f} at the "
        f"end: timings are noisy). {len(CHAINS)} chains from test_data/protein/chains "
        "(the same set as /work/shared/data/protein/chains). Motifs: 1-3 segments of 20-40 "
        f"residues cut from a chain, {args.draws} draws per row (rng seeds {args.draw_seed}, "
        f"{args.draw_seed + 1}, {args.draw_seed + 2}), rotated and moved. Recovery: "
        "share of motif residues within +-1 of their true partner; cells give mean / share "
        "of draws >= 0.95 / worst draw.",
        "",
        "| test | otbio align | TM-align (tmtools) |",
        "|---|---|---|",
    ]
    for name, ot, tm in rows:
        lines.append(f"| {name} | {fmt_rec(ot)} | {fmt_rec(tm)} |")
    return lines


def _write(args, lines: list[str]) -> None:
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        from _results import write_section

        write_section("align.recovery" if args.recovery_only else "align", text)


def _has_save_scores() -> bool:
    """Whether this checkout's CLI spells the score-table option --save-scores (the naming
    convention) rather than --scores."""
    from otbio.cli.align import align_command

    return any("--save-scores" in p.opts for p in align_command.params)


if __name__ == "__main__":
    main()
