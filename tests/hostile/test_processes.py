"""Hostile processes and signals (issue 26, items 9, 10, 12, 13, 14): forked workers die with
their parent, pools are sized by the work and the CPUs, a failed fork is one line, signals at
any moment give one line and leave nothing, a hostile environment is refused at start.

Every run is a real ``otbio`` process. The forked-worker cases use a list of 40 real structures
(``--targets``: the database-search path, which forks) with the per-chunk work replaced by a
stub that records the worker's pid and sleeps, so that a signal always finds the workers busy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_hostile import names_a_fix

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "test_data"
CHAINS = sorted((DATA / "protein" / "chains").glob("*.pdb.gz"))
QUERY = DATA / "protein" / "adk_open.pdb"
SLICE1 = DATA / "spatial" / "breast_st_slice1.h5ad"
SLICE2 = DATA / "spatial" / "breast_st_slice2.h5ad"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
LINUX = sys.platform.startswith("linux")


def files(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("Error") or "Traceback" in ln]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an init that does not reap is common in
    containers)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


# a wrapper around the command line: counts the forks of the parent (pids to $FORKS) and, with
# $STUB_SECONDS, replaces the per-chunk work of the search by a sleep that records its pid
_WRAP = textwrap.dedent(
    """
    import os, sys, time
    _real_fork = os.fork
    _fail_after = int(os.environ.get("FAIL_FORK_AFTER", "-1"))
    _n = [0]
    def _fork():
        if _n[0] == _fail_after:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        pid = _real_fork()
        if pid:
            _n[0] += 1
            with open(os.environ["FORKS"], "a") as fh:
                fh.write(f"{pid}\\n")
        return pid
    os.fork = _fork
    if os.environ.get("STUB_SECONDS"):
        import otbio.align._search as S
        def _stub(idx):
            with open(os.environ["WORKERS"], "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            time.sleep(float(os.environ["STUB_SECONDS"]))
            return []
        S._search_chunk = _stub
    from otbio.cli import main
    sys.argv[0] = "otbio"
    main()
    """
)


@pytest.fixture
def search_dir(tmp_path):
    """A query, 40 real target structures in a list file, and nothing else."""
    (tmp_path / "db").mkdir()
    for f in CHAINS:
        shutil.copy(f, tmp_path / "db" / f.name)
    names = [f.name for f in CHAINS if "wrong" not in f.name]
    (tmp_path / "db" / "list.txt").write_text("".join(f"{n}\n" for n in (names * 3)[:40]))
    shutil.copy(QUERY, tmp_path / "q.pdb")
    return tmp_path


def start(d: Path, *args, stub: float | None = None, fail_after: int = -1, **kw):
    env = {**ENV, "FORKS": str(d / "forks.txt"), "WORKERS": str(d / "workers.txt"),
           "FAIL_FORK_AFTER": str(fail_after), "TMPDIR": str(d / "tmp")}  # fmt: skip
    (d / "tmp").mkdir(exist_ok=True)
    if stub is not None:
        env["STUB_SECONDS"] = str(stub)
    return subprocess.Popen(
        [sys.executable, "-c", _WRAP, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=d, **kw,
    )  # fmt: skip


def pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def wait_for_workers(d: Path, proc, n: int, timeout: float = 60.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pids(d / "workers.txt")
        if len(got) >= n:
            return got
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the workers did not start: {proc.communicate()[1][-2000:]}")


SEARCH = ["--jobs", "2", "align", "q.pdb::122-159", "--targets", "db/list.txt",
          "--save-scores", "out/scores.tsv"]  # fmt: skip


# 9 and 14. workers die with their parent; one interrupt line per command --------------------


@pytest.mark.skipif(not LINUX, reason="parent-death signal and /proc: Linux")
@pytest.mark.parametrize(
    ("sig", "group", "code"),
    [
        (signal.SIGTERM, False, 143),
        (signal.SIGKILL, False, -9),
        (signal.SIGINT, True, 130),  # Ctrl-C: the whole foreground process group
        (signal.SIGHUP, True, 129),  # the terminal closed
        (signal.SIGTERM, True, 143),
    ],
)
def test_workers_die_with_their_parent(search_dir, sig, group, code):
    d = search_dir
    before = files(d)
    proc = start(d, *SEARCH, stub=300, start_new_session=True)
    try:
        workers = wait_for_workers(d, proc, 2)
        assert sorted(workers) == sorted(pids(d / "forks.txt"))  # the stubs ran in the pool
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert wait_gone(workers) == [], "a worker outlived its parent"
    lines = error_lines(err)
    if sig == signal.SIGKILL:
        assert lines == [], err
    else:
        name = signal.Signals(sig).name
        assert lines == [f"Error: interrupted by {name}; no output written"], err
    for leftover in ("workers.txt", "forks.txt"):
        (d / leftover).unlink(missing_ok=True)
    assert files(d) == before and not (d / "out").exists()
    assert list((d / "tmp").iterdir()) == []


# 10. pools sized by the work and the CPUs; a failed fork is one line, nothing waits ---------


def test_pool_is_sized_by_targets_and_cpus(search_dir):
    from otbio._workers import available_cpus

    d = search_dir
    proc = start(d, "--jobs", "1000", *SEARCH[2:], "-v")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    forks = pids(d / "forks.txt")
    assert 1 <= len(forks) <= min(40, available_cpus()), len(forks)
    assert f"{min(40, available_cpus())} worker processes" in err or available_cpus() == 1
    rows = (d / "out" / "scores.tsv").read_text().splitlines()
    assert len(rows) == 1 + 40 and rows[0].startswith("rank\t")
    assert wait_gone(forks) == []


@pytest.mark.skipif(not LINUX, reason="/proc: Linux")
def test_failed_fork_is_one_line_and_tears_the_pool_down(search_dir):
    from otbio._workers import available_cpus

    if available_cpus() < 2:
        pytest.skip("one CPU: the search runs without worker processes")
    d = search_dir
    before = files(d)
    proc = start(d, *SEARCH, stub=300, fail_after=1)
    _, err = proc.communicate(timeout=120)  # never a wait without end
    assert proc.returncode == 1, err
    lines = error_lines(err)
    assert len(lines) == 1 and "Resource temporarily unavailable" in lines[0], err
    assert lines[0].startswith("Error: cannot start 2 worker processes") and "--jobs" in lines[0]
    forks = pids(d / "forks.txt")
    assert len(forks) == 1 and wait_gone(forks) == []
    (d / "forks.txt").unlink()
    assert files(d) == before and not (d / "out").exists()


def test_a_worker_killed_mid_task_is_one_line(search_dir):
    d = search_dir
    proc = start(d, *SEARCH, stub=300)
    workers = wait_for_workers(d, proc, 2)
    os.kill(workers[0], signal.SIGKILL)  # the OOM killer, say
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    lines = error_lines(err)
    assert len(lines) == 1 and "worker process" in lines[0] and "died" in lines[0], err
    assert wait_gone(workers) == [] and not (d / "out").exists()


# 12. Numba's cache fallback is stable; library temporaries and SIGHUP leave nothing -------

_KERNEL = "import numba\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"


def test_numba_cache_fallback_is_reused_when_the_name_is_taken(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a folder owned by another user needs root to make")
    (tmp_path / "kmod.py").write_text(_KERNEL)
    (tmp_path / "afile").write_text("")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    taken = tmp / f"otbio-numba-cache-{os.getuid()}"
    taken.mkdir()
    os.chown(taken, 65534, 65534)  # another user's
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "TMPDIR": str(tmp),
           "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator",
           "NUMBA_CACHE_DIR": str(tmp_path / "afile" / "sub")}  # fmt: skip
    code = "import otbio, kmod; print(kmod.twice(21))"
    seen = []
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
        assert f"{taken}-1" in r.stderr, r.stderr
        seen.append(sorted(p.name for p in tmp.iterdir()))
    assert seen[0] == seen[1] == seen[2] == [taken.name, f"{taken.name}-1"]
    assert list(Path(f"{taken}-1").rglob("*.nbi")), "the kernel was not cached"
    assert list(taken.iterdir()) == []  # the other user's folder is left alone


_SLOW_SAVE = textwrap.dedent(
    """
    import sys, time
    from otbio.cli import main  # first, as the console script does: then matplotlib
    import matplotlib.figure
    import anndata
    real_fig, real_h5 = matplotlib.figure.Figure.savefig, anndata.AnnData.write_h5ad
    def slow_fig(self, path, *a, **k):
        real_fig(self, path, *a, **k)
        print("WRITING", path, flush=True)
        time.sleep(60)
    def slow_h5(self, path, *a, **k):
        real_h5(self, path, *a, **k)
        print("WRITING", path, flush=True)
        time.sleep(60)
    matplotlib.figure.Figure.savefig, anndata.AnnData.write_h5ad = slow_fig, slow_h5
    sys.argv[0] = "otbio"
    main()
    """
)


@pytest.mark.parametrize(
    ("sig", "code", "args"),
    [
        (signal.SIGTERM, 143, ["align", "q.pdb::122-159", "t.pdb", "--plot", "out/plan.png"]),
        (signal.SIGHUP, 129, ["stack", "s1.h5ad", "s2.h5ad", "-o", "out/st.h5ad"]),
    ],
)
def test_signal_mid_write_leaves_no_library_temporaries(tmp_path, sig, code, args):
    d = tmp_path
    shutil.copy(QUERY, d / "q.pdb")
    shutil.copy(DATA / "protein" / "adk_closed.pdb", d / "t.pdb")
    shutil.copy(SLICE1, d / "s1.h5ad")
    shutil.copy(SLICE2, d / "s2.h5ad")
    (d / "afile").write_text("")
    (d / "tmp").mkdir()
    before = files(d)
    env = {**ENV, "TMPDIR": str(d / "tmp"), "MPLCONFIGDIR": str(d / "afile" / "mpl")}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, "--quiet", *args], cwd=d,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("WRITING") and ".otbio-tmp-" in line, proc.stderr.read()
        if sig == signal.SIGTERM:  # matplotlib made its temporary config folder in $TMPDIR
            assert [p.name[:11] for p in (d / "tmp").iterdir()] == ["matplotlib-"]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    name = signal.Signals(sig).name
    assert error_lines(err) == [f"Error: interrupted by {name}; no output written"], err
    assert files(d) == before and not (d / "out").exists()
    assert list((d / "tmp").iterdir()) == []


# 13. signals from the first line; a hostile environment refused at start -----------------

_ENTRY = textwrap.dedent(
    """
    import sys
    from otbio._entry import main   # the console script's first line
    print("READY", flush=True)
    sys.argv[0] = "otbio"
    main()
    """
)


@pytest.mark.parametrize(
    ("sig", "delay"),
    [(signal.SIGINT, 0.0), (signal.SIGINT, 0.02), (signal.SIGINT, 0.05), (signal.SIGINT, 0.1),
     (signal.SIGHUP, 0.0), (signal.SIGHUP, 0.05)],
)  # fmt: skip
def test_signal_at_start_is_one_line(tmp_path, sig, delay):
    d = tmp_path
    shutil.copy(SLICE1, d / "s1.h5ad")
    before = files(d)
    proc = subprocess.Popen([sys.executable, "-c", _ENTRY, "stack", "s1.h5ad", "-o", "st.h5ad"],
                            cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:  # the command finished before the signal: nothing to check
        return
    name, code = signal.Signals(sig).name, 128 + sig
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        f"Error: interrupted by {name}; no output written"
    ], err
    assert files(d) == before


@pytest.mark.parametrize(
    ("var", "value", "text"),
    [
        ("NUMBA_NUM_THREADS", "0", "NUMBA_NUM_THREADS must be a positive whole number"),
        ("NUMBA_NUM_THREADS", "garbage", "got 'garbage'"),
        ("NUMBA_THREADING_LAYER", "garbage", "is not a Numba threading layer"),
        ("NUMBA_THREADING_LAYER", "tbb", "needs Intel TBB"),
    ],
)
def test_hostile_numba_environment_is_refused_at_start(tmp_path, var, value, text):
    from click.testing import CliRunner

    from otbio._threading import _backend_loads
    from otbio.cli import cli

    if value == "tbb" and _backend_loads("tbb"):
        pytest.skip("TBB is installed here")
    shutil.copy(SLICE1, tmp_path / "s1.h5ad")
    before = files(tmp_path)
    res = CliRunner().invoke(
        cli, ["stack", str(tmp_path / "s1.h5ad"), "-o", str(tmp_path / "st.h5ad")],
        env={var: value},
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], res.stderr
    assert names_a_fix(lines[0]), lines[0]
    assert files(tmp_path) == before


# 14. a signal after the outputs are in place; a workflow's missing samples ----------------

_AFTER_COMMIT = textwrap.dedent(
    """
    import sys, time
    import otbio.io as io
    real = io.Staging.commit
    def commit(self):
        real(self)
        print("COMMITTED", flush=True)
        time.sleep(60)
    io.Staging.commit = commit
    from otbio.cli import main
    sys.argv[0] = "otbio"
    main()
    """
)


def test_sigterm_after_the_outputs_are_written_says_so(tmp_path):
    import anndata as ad

    d = tmp_path
    proc = subprocess.Popen(
        [sys.executable, "-c", _AFTER_COMMIT, "stack", str(SLICE1), str(SLICE2), "-o", "st.h5ad"],
        cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "COMMITTED"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert error_lines(err) == [
        "Error: interrupted by SIGTERM after the outputs were written (they are complete)"
    ], err
    n = ad.read_h5ad(SLICE1).n_obs + ad.read_h5ad(SLICE2).n_obs
    assert ad.read_h5ad(d / "st.h5ad").n_obs == n
    assert sorted(p.name for p in d.iterdir()) == ["st.h5ad"]


def test_workflow_samples_missing_from_the_files_fail_the_dry_run(tmp_path):
    import importlib.util

    import yaml

    if importlib.util.find_spec("snakemake") is None:
        pytest.skip("snakemake is not installed")
    shutil.copy(SLICE1, tmp_path / "a.h5ad")
    shutil.copy(SLICE1, tmp_path / "b.h5ad")
    cfg = {"pipeline": "lot", "outdir": "out", "otbio": sys.executable,
           "lot": {"cells": [str(tmp_path / "a.h5ad"), str(tmp_path / "b.h5ad")],
                   "use_rep": "X", "samples": ["a", "c"]}}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflows" / "Snakefile"),
         "--configfile", "config.yaml", "--directory", str(tmp_path), "--nocolor", "-n"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0, r.stdout
    assert "config key 'lot.samples': 1 sample(s) not in the stems of the lot.cells files, " \
           "e.g. 'c'" in r.stdout + r.stderr, r.stdout  # fmt: skip
    assert not (tmp_path / "out").exists()
