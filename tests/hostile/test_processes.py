"""Hostile processes and signals (issue 26, items 9, 10, 12, 13, 14): forked workers die with
their parent, pools are sized by the work and the CPUs, a failed fork is one line, signals at
any moment give one line and leave nothing, a hostile environment is refused at start.

Every run is a real ``otbio`` process. The forked-worker cases use a list of 40 real structures
(``--targets``: the database-search path, which forks) with the per-chunk work replaced by a
stub that records the worker's pid and sleeps, so that a signal always finds the workers busy.
"""

from __future__ import annotations

import errno
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
