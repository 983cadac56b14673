"""Start-up: ``import otbio`` and the command line import nothing heavy until a command needs it.

Numba, AnnData, POT, scikit-learn, matplotlib and pandas each cost 0.2-1.6 s to import; a
command imports only what it uses (timings: benchmarks/startup.py). Numba's set-up (the
``workqueue`` threading layer, the fail-soft cache of otbio._numba_cache, ``--jobs``) is
applied by an import hook when Numba is first imported, by otbio or by the user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numba", "anndata", "ot", "sklearn", "matplotlib", "pandas", "scipy", "h5py")


def _python(code: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    res = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_import_is_light_and_numba_is_set_up_when_imported_later():
    out = _python(
        "import sys, otbio, otbio.cli, otbio.ot, otbio.lot, otbio.io, otbio.plot\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')\n"
        "import numba\n"  # the user's own import, after otbio's: still configured
        "from numba.core import dispatcher\n"
        "print(numba.config.THREADING_LAYER, dispatcher.Dispatcher.enable_caching._otbio)\n"
    )
    assert out == ["none", "workqueue", "True"]


def test_jobs_reach_numba_when_it_is_imported_after_the_command_line(tmp_path):
    x = np.random.default_rng(0).random((30, 3))
    np.save(tmp_path / "x.npy", x)
    out = _python(
        "import sys\nfrom otbio.cli import cli\n"
        "cli.main(['--quiet', '--jobs', '1', 'transport', sys.argv[1], sys.argv[1]],"
        " standalone_mode=False)\n"
        "import numba\nprint('threads', numba.get_num_threads())\n".replace(
            "sys.argv[1]", repr(str(tmp_path / "x.npy"))
        ),
        NUMBA_NUM_THREADS="2",
    )
    assert out[-2:] == ["threads", "1"]


def test_jobs_stay_with_the_calling_thread_when_a_worker_imports_numba():
    # map_batch's workers may be the first to import Numba (distances --exact): the count
    # set by --jobs must still reach the thread that runs the command's parallel kernels
    out = _python(
        "import otbio\nfrom otbio._threading import use_threads\nfrom otbio.ot import map_batch\n"
        "use_threads(1)\n"
        "def f(i):\n    import numba\n    return i\n"
        "map_batch(f, [0, 1, 2, 3], jobs=2, threads=True)\n"
        "import numba\nprint('threads', numba.get_num_threads())\n",
        NUMBA_NUM_THREADS="2",
    )
    assert out[-2:] == ["threads", "1"]
