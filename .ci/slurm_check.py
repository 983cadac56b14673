"""Checks for .ci/slurm.sh (run there; also usable by hand on its work folder).

    python .ci/slurm_check.py jobs WORK lot slices search      # a SLURM job id for every job
    python .ci/slurm_check.py compare WORK lot slices search   # SLURM outputs == local outputs
    python .ci/slurm_check.py timelimit RUNDIR CONFIG...       # after the time-limit kill
    python .ci/slurm_check.py resumed RUNDIR LOCALDIR          # after --rerun-incomplete

Outputs are compared file by file: text files (.tsv, .md, ...) must be byte-identical;
.h5ad files must hold the same arrays, tables and metadata, numbers equal within
|a - b| <= 1e-12 + 1e-9 |b| (they are equal to the last bit in practice; HDF5 files are not
compared byte by byte as the library may lay them out differently); .png figures must have
identical pixels.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ATOL, RTOL = 1e-12, 1e-9
ROOT = Path(__file__).resolve().parents[1]


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def job_stats(text: str) -> Counter:
    """The 'Job stats' table of a snakemake run (rule -> number of jobs)."""
    counts: Counter = Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Job stats:"):
            for row in lines[i + 3 :]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                counts[parts[0]] = int(parts[1])
            break
    return counts


def submitted_jobs(text: str) -> list[tuple[str, str, str]]:
    """(rule, wildcards, SLURM job id) of every job snakemake submitted to SLURM."""
    rule_of: dict[str, tuple[str, str]] = {}
    rule = jobid = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule, jobid = m.group(1), None
            continue
        s = line.strip()
        if rule is not None and s.startswith("jobid:"):
            jobid = s.split(":", 1)[1].strip()
            rule_of[jobid] = (rule, "")
        if jobid is not None and s.startswith("wildcards:"):
            rule_of[jobid] = (rule, s.split(":", 1)[1].strip())
    out = []
    for m in re.finditer(
        r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: ([^)]*)\)", text
    ):
        rule, wc = rule_of.get(m.group(1), ("?", ""))
        out.append((rule, wc, m.group(2), m.group(3)))
    return out


def local_rules(text: str) -> set[str]:
    return set(re.findall(r"^localrule (\w+):", text, flags=re.M))


def cmd_jobs(work: Path, pipelines: list[str]) -> None:
    print(f"{'pipeline':9} {'rule':18} {'wildcards':28} slurm_job_id")
    total = 0
    ids: list[str] = []
    for p in pipelines:
        text = (work / f"slurm-{p}.log").read_text()
        jobs = submitted_jobs(text)
        stats = job_stats(text)
        local = local_rules(text)
        for rule, wc, jid, log in jobs:
            print(f"{p:9} {rule:18} {wc or '-':28} {jid}")
            if not Path(log).is_file():
                fail(f"{p}: no SLURM log {log} for job {jid}")
        per_rule = Counter(rule for rule, *_ in jobs)
        for rule, n in stats.items():
            if rule == "total":
                continue
            want = 0 if rule in local else n
            if per_rule.get(rule, 0) != want:
                fail(
                    f"{p}: rule {rule} ran {n} job(s), {per_rule.get(rule, 0)} with a SLURM job id"
                )
        remote = sum(n for r, n in stats.items() if r != "total" and r not in local)
        if remote == 0 or len(jobs) != remote:
            fail(f"{p}: {len(jobs)} SLURM jobs for {remote} non-local jobs")
        if len({jid for _, _, jid, _ in jobs}) != len(jobs):
            fail(f"{p}: a SLURM job id is repeated")
        print(
            f"{p}: {len(jobs)} SLURM jobs for {len(per_rule)} rules; run where snakemake runs "
            f"(localrules): {', '.join(sorted(local)) or 'none'}"
        )
        total += len(jobs)
        ids += [jid for _, _, jid, _ in jobs]
    print(f"all pipelines: {total} SLURM jobs, one per non-local job")
    (work / "slurm-jobids.txt").write_text(",".join(ids) + "\n")


def _same(a, b, where: str) -> None:
    """Recursive comparison of two values read from .h5ad files."""
    import pandas as pd
    import scipy.sparse as sp

    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
            fail(f"{where}: keys differ")
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
        return
    if isinstance(a, pd.DataFrame):
        if not isinstance(b, pd.DataFrame):
            fail(f"{where}: type differs")
        if list(a.columns) != list(b.columns) or list(a.index) != list(b.index):
            fail(f"{where}: columns or index differ")
        for c in a.columns:
            _same(a[c].to_numpy(), b[c].to_numpy(), f"{where}[{c}]")
        return
    if sp.issparse(a) or sp.issparse(b):
        a, b = sp.csr_matrix(a).toarray(), sp.csr_matrix(b).toarray()
    if isinstance(a, (list, tuple)):
        a = np.asarray(a)
    if isinstance(b, (list, tuple)):
        b = np.asarray(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            fail(f"{where}: shape {a.shape} != {b.shape}")
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            if not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
                fail(f"{where}: max |diff| {np.nanmax(np.abs(a - b)):.3g}")
        elif not np.array_equal(a.astype(object), b.astype(object)):
            fail(f"{where}: values differ")
        return
    if isinstance(a, float) or isinstance(b, float):
        if not np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
            fail(f"{where}: {a} != {b}")
        return
    if a != b:
        fail(f"{where}: {a!r} != {b!r}")


def same_h5ad(a: Path, b: Path) -> None:
    import anndata as ad

    x, y = ad.read_h5ad(a), ad.read_h5ad(b)
    for attr in ("X", "obs", "var", "uns"):
        _same(getattr(x, attr), getattr(y, attr), f"{b.name}:{attr}")
    for attr in ("obsm", "varm", "obsp", "varp", "layers"):
        _same(dict(getattr(x, attr)), dict(getattr(y, attr)), f"{b.name}:{attr}")


def same_png(a: Path, b: Path) -> None:
    import matplotlib.image as mpimg

    if a.read_bytes() == b.read_bytes():
        return
    pa, pb = mpimg.imread(a), mpimg.imread(b)
    if pa.shape != pb.shape or not np.array_equal(pa, pb):
        fail(f"{b}: pixels differ")


def compare_dirs(a: Path, b: Path) -> int:
    """Every file under a/ and b/ except logs: the same names, the same contents."""

    def files(d: Path) -> set[Path]:
        return {
            p.relative_to(d)
            for p in d.rglob("*")
            if p.is_file() and "logs" not in p.relative_to(d).parts
        }

    fa, fb = files(a), files(b)
    if fa != fb:
        fail(f"{a} and {b} hold different files: {sorted(map(str, fa ^ fb))}")
    for rel in sorted(fa):
        pa, pb = a / rel, b / rel
        if pa.suffix == ".h5ad":
            same_h5ad(pa, pb)
            how = "equal arrays" if pa.read_bytes() != pb.read_bytes() else "byte-identical"
        elif pa.suffix == ".png":
            same_png(pa, pb)
            how = "byte-identical" if pa.read_bytes() == pb.read_bytes() else "equal pixels"
        else:
            if pa.read_bytes() != pb.read_bytes():
                fail(f"{rel}: SLURM and local outputs differ")
            how = "byte-identical"
        print(f"  {rel}: {how}")
    return len(fa)


def cmd_compare(work: Path, pipelines: list[str]) -> None:
    n = 0
    for p in pipelines:
        print(f"{p}:")
        n += compare_dirs(work / "slurm" / p / "results", work / "local" / p / "results")
    print(f"all {n} output files of the SLURM runs equal the local runs'")


def _incomplete_markers(run: Path) -> set[str]:
    out = set()
    d = run / ".snakemake" / "incomplete"
    for f in d.rglob("*") if d.exists() else []:
        if f.is_file():
            try:
                out.add(base64.b64decode(f.name.replace("@", "/")).decode())
            except ValueError:
                out.add(f.name)
    return out


def cmd_timelimit(run: Path, configs: list[str]) -> None:
    """After SLURM killed chunk 0001 at its time limit (and snakemake itself was gone): its
    output is either gone (the in-job snakemake removes the outputs of a job whose command
    was terminated) or marked incomplete, so a new snakemake does not take it as finished;
    chunk 0000, which had finished, is kept."""
    chunk = "results/search/adk_lid/chunks/chunk_0001.tsv"
    marked = _incomplete_markers(run)
    exists = (run / chunk).exists()
    print(f"{chunk}: {'on disk' if exists else 'absent'}; marked incomplete: {sorted(marked)}")
    if exists and chunk not in marked:
        fail(f"{chunk} is on disk and not marked incomplete: snakemake would take it as finished")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "workflows" / "Snakefile"),
            "--configfile",
            *configs,
            "--nocolor",
            "-n",
            "--cores",
            "1",
        ],
        cwd=run,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = r.stdout + r.stderr
    if r.returncode != 0:  # only acceptable reason: the incomplete file
        if "incomplete" not in text.lower() or chunk not in text:
            fail(f"dry run failed:\n{text}")
        print("dry run without --rerun-incomplete: refuses the incomplete chunk 0001")
        return
    todo = job_stats(text)
    outputs = re.findall(r"^\s+output: (\S+)", text, flags=re.M)
    if todo.get("search_chunk") != 1 or chunk not in outputs:
        fail(f"a dry run should redo chunk 0001 and only it:\n{text}")
    print("dry run: chunk 0001 is to be computed again, chunk 0000 is kept")


def cmd_resumed(run: Path, local: Path) -> None:
    text = (run.parent / "resume.log").read_text()
    stats = job_stats(text)
    print(f"resumed run: {dict(stats)}")
    if stats.get("search_chunk") != 1:
        fail("the resumed run should redo exactly the killed chunk")
    redone = [j for j in submitted_jobs(text) if j[0] == "search_chunk"]
    if len(redone) != 1 or "chunk=0001" not in redone[0][1]:
        fail(f"the resumed run redid {redone}, not chunk 0001")
    print(f"chunk 0001 redone as SLURM job {redone[0][2]}; chunk 0000 kept")
    print("outputs of the resumed run vs the local run:")
    compare_dirs(run / "results", local / "results")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "jobs":
        cmd_jobs(Path(args[0]), args[1:])
    elif cmd == "compare":
        cmd_compare(Path(args[0]), args[1:])
    elif cmd == "timelimit":
        cmd_timelimit(Path(args[0]), args[1:])
    elif cmd == "markers":
        print(f"marked incomplete by snakemake: {sorted(_incomplete_markers(Path(args[0])))}")
    elif cmd == "resumed":
        cmd_resumed(Path(args[0]), Path(args[1]))
    else:
        fail(f"unknown command {cmd}")
