"""Worker processes that never outlive their command, sized by the work and the CPUs.

:func:`process_pool` is the one way otbio forks workers (``otbio align --targets`` reads and
aligns structures in them). Its pool

- has at most :func:`worker_count` workers: no more than the pieces of work, nor than the
  CPUs this process may run on, whatever ``--jobs`` says;
- starts every worker at once, so that a failed fork (a process or memory limit) is one
  :class:`~otbio.OtbioError` naming the cause, with the workers already started killed;
- has workers that die with their parent: on Linux the kernel sends them SIGKILL when the
  parent dies (``prctl(PR_SET_PDEATHSIG)``), and a watchdog thread in each worker exits it
  when its parent is gone (other systems, or a parent that died before the worker was set up);
- has workers that leave signals to the parent: SIGINT and SIGHUP sent to the whole process
  group (Ctrl-C, a closed terminal) are ignored by the workers, so the parent alone reports the
  interrupt, once, and its exit takes the workers with it; SIGTERM kills a worker silently;
- is torn down (workers killed, queued work cancelled) when the block fails, and a worker
  that died (killed, out of memory) is one error line, never a wait without end.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from otbio._errors import OtbioError

__all__ = ["available_cpus", "process_pool", "worker_count"]

log = logging.getLogger("otbio")

_PR_SET_PDEATHSIG = 1
#: Seconds between two checks of the watchdog thread of a worker.
WATCHDOG_PERIOD = 0.5


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def worker_count(jobs: int, n_items: int) -> int:
    """Workers for ``n_items`` pieces of work with ``jobs`` asked: never more than the
    pieces nor than the available CPUs (each worker runs serial, CPU-bound work)."""
    return max(1, min(int(jobs), int(n_items), available_cpus()))


def _set_parent_death_signal() -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def _watchdog(parent: int) -> None:
    while True:
        time.sleep(WATCHDOG_PERIOD)
        if os.getppid() != parent:
            os._exit(1)


def _worker_setup(parent: int) -> None:
    """Run first in every worker (the pool's initializer)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent reports an interrupt, once
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the death signal was set
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent,), daemon=True).start()


def _teardown(pool: Any) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.kill()
        except (OSError, AttributeError, ValueError):
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # noqa: BLE001 - a broken pool: its processes are killed above
        pass
    for p in procs:
        try:
            p.join(timeout=5)
        except (OSError, AttributeError, ValueError, AssertionError):
            pass


def _fork_failed(exc: OSError, n: int) -> OtbioError:
    why = exc.strerror or str(exc)
    hint = " (a limit on processes or memory: ulimit -u, cgroups)"
    if exc.errno not in (errno.EAGAIN, errno.ENOMEM):
        hint = ""
    return OtbioError(f"cannot start {n} worker processes: {why}{hint}; lower --jobs")


@contextmanager
def process_pool(n: int, context: Any, *, what: str = "work") -> Iterator[Any]:
    """A ``ProcessPoolExecutor`` of ``n`` forked workers that die with this process.

    Every worker is started before the block runs; a failed fork raises
    :class:`OtbioError` (exit 1 on the command line) with the started workers killed. When
    the block raises, the workers are killed and queued work cancelled; a worker that dies
    mid-task is an :class:`OtbioError` too.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(
        max_workers=n, mp_context=context, initializer=_worker_setup, initargs=(os.getpid(),)
    )
    ok = False
    try:
        try:
            pool.submit(int).result()  # a fork context starts every worker on first submit
        except OSError as exc:
            raise _fork_failed(exc, n) from None
        log.info("%d worker processes for the %s", n, what)
        yield pool
        ok = True
    except BrokenProcessPool:
        msg = f"a worker process of the {what} died (killed, or out of memory?); lower --jobs"
        raise OtbioError(msg) from None
    finally:
        if ok:
            pool.shutdown(wait=True)
        else:
            _teardown(pool)
