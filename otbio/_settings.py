"""Process-wide settings set by the command line's global options."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["default_jobs", "settings"]


def default_jobs() -> int:
    """CPUs granted to this process: the scheduler's grant when set, else the affinity mask."""
    for var in ("OTBIO_JOBS", "SLURM_CPUS_PER_TASK", "PBS_NUM_PPN", "NSLOTS", "LSB_DJOB_NUMPROC"):
        val = os.environ.get(var, "")
        if val.isdigit() and int(val) > 0:
            return int(val)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


@dataclass
class _Settings:
    verbosity: int = 0
    quiet: bool = False
    seed: int = 0
    jobs: int | None = None
    device: str = "cpu"
    debug: bool = False

    @property
    def n_jobs(self) -> int:
        return self.jobs if self.jobs and self.jobs > 0 else default_jobs()


settings = _Settings()
