"""The Snakemake workflows in workflows/: dry runs of the three pipelines, config checking at
start, and a real local run of the LOT pipeline that is killed after some shards, resumed,
and compared with one `otbio embed` of the whole cohort.

Snakemake always runs in a tmp folder (``--directory``), so no ``.snakemake/`` lands in the
repository. The short snakemake runs (dry runs, bad configs, the small search runs) are
independent, so the ``runs`` fixture starts them all at once, as many side by side as there are
CPUs, and each test checks its own; the LOT run is a fixture of its own. Outside CI a missing tool (snakemake, otbio) skips the tests that need it; in CI
(the CI environment variable set) it fails them, so that CI never passes with them unrun.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

IN_CI = bool(os.environ.get("CI"))


def need(ok: bool, reason: str) -> None:
    """Skip a test whose tool or data is missing; in CI, fail it instead."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: the workflow tests must not be skipped)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import snakemake  # noqa: F401
except ImportError:
    need(False, "snakemake is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "workflows" / "Snakefile"
CONFIGS = ROOT / "workflows" / "config"
COHORT = ROOT / "test_data" / "pbmc_cohort.h5ad"
NO_SLURM = Path(__file__).resolve().parent / "no_slurm"
OTBIO = shutil.which("otbio")
# the bundled cohort is in the repository; in CI a missing file fails the tests that read it
NEEDS_COHORT = pytest.mark.skipif(
    not COHORT.exists() and not IN_CI, reason="test_data/pbmc_cohort.h5ad not built yet"
)


def _abs(path: str) -> str:
    """A test config's repository-relative path, made absolute (the run is in a tmp dir)."""
    head, sep, tail = path.partition(":")
    return str(ROOT / head) + sep + tail


def load_config(name: str) -> dict:
    cfg = yaml.safe_load((CONFIGS / "test" / f"{name}.yaml").read_text())
    cfg["otbio"] = OTBIO or "otbio"
    cfg["outdir"] = "results"
    # the tests do not depend on whether this machine is part of a SLURM cluster (see
    # test_requests_fit_the_slurm_partition for the fitting)
    cfg["fit_to_partition"] = False
    if "lot" in cfg:
        cfg["lot"]["cells"] = [_abs(p) for p in cfg["lot"]["cells"]]
    if "slices" in cfg:
        cfg["slices"]["sections"] = [_abs(p) for p in cfg["slices"]["sections"]]
    if "search" in cfg:
        cfg["search"]["structures"] = _abs(cfg["search"]["structures"])
        cfg["search"]["motifs"] = {k: _abs(v) for k, v in cfg["search"]["motifs"].items()}
    return cfg


def tool_env(*bin_dirs: Path) -> dict:
    """The environment of every snakemake run here: `bin_dirs` (fake SLURM tools), then
    no_slurm/ (an `scontrol` that fails at once: the SLURM executor plugin, when installed,
    asks `scontrol show config` each time snakemake starts, and with no controller running
    that waits for its 10 s timeout), first on PATH."""
    path = [*map(str, bin_dirs), str(NO_SLURM), os.environ["PATH"]]
    return {**os.environ, "PATH": os.pathsep.join(path)}


def snakemake_args(workdir: Path, cfg: dict | None, *extra: str) -> list[str]:
    """snakemake in `workdir` with `cfg` written to workdir/config.yaml (None: no config)."""
    config = []
    if cfg is not None:
        cfg_path = workdir / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        config = ["--configfile", str(cfg_path)]
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        *config,
        "--directory",
        str(workdir),
        "--nocolor",
        *extra,
    ]


def snakemake(workdir: Path, cfg: dict, *extra: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_args(workdir, cfg, *extra),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        env=env or tool_env(),
    )


def _slurm_check():
    """.ci/slurm_check.py, whose parser of snakemake's logs the tests share."""
    spec = importlib.util.spec_from_file_location("slurm_check", ROOT / ".ci" / "slurm_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job_counts = _slurm_check().job_stats  # the 'Job stats' table of a run: rule -> jobs


# --------------------------------------------------------------------------------------------
# the short snakemake runs, started together by the `runs` fixture


@dataclass
class Run:
    """One command (snakemake unless `argv` is given) in its own folder `dir`; `proc` is its
    result once it has run; `data` what the test needs to know of its set-up."""

    dir: Path
    cfg: dict | None = None
    args: tuple = ()
    env: dict | None = None
    argv: list | None = None
    data: dict = dataclasses.field(default_factory=dict)
    proc: subprocess.CompletedProcess | None = None

    @property
    def out(self) -> str:
        return self.proc.stdout + self.proc.stderr


CASES: dict[str, tuple[str, object]] = {}


def case(test: str):
    """Register `fn(dir) -> Run` as a short run that `test` checks (the `runs` fixture starts
    the runs of the selected tests)."""

    def register(fn):
        CASES[fn.__name__] = (test, fn)
        return fn

    return register


def _execute(run: Run) -> Run:
    argv = run.argv or snakemake_args(run.dir, run.cfg, *run.args)
    run.proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, cwd=run.dir, env=run.env or tool_env()
    )
    return run


class _Runs:
    """The short runs, started side by side (as many at once as there are CPUs)."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._pool = ThreadPoolExecutor(max_workers=min(4, max(2, os.cpu_count() or 2)))
        self._futures: dict[str, Future] = {}

    def start(self, name: str) -> None:
        if name in self._futures:
            return
        future = self._futures[name] = Future()
        try:  # set-up here, in the test's thread; a missing tool skips (fails in CI) the test
            run = CASES[name][1](self._tmp.mktemp(name))
        except (pytest.skip.Exception, pytest.fail.Exception) as e:
            future.set_exception(e)
            return
        self._futures[name] = self._pool.submit(_execute, run)

    def __getitem__(self, name: str) -> Run:
        self.start(name)
        return self._futures[name].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """runs[name]: the finished Run of case `name`. At the first request, the cases of every
    selected test of this module are started, so that they run while the tests before
    theirs are checked."""
    here = sys.modules[__name__]
    selected = {
        getattr(item, "originalname", item.name)
        for item in request.session.items
        if getattr(item, "module", None) is here
    }
    started = _Runs(tmp_path_factory)
    for name, (test, _) in CASES.items():
        if test in selected:
            started.start(name)
    yield started
    started.close()


# --------------------------------------------------------------------------------------------
# dry runs


@case("test_dry_run_lot")
def dry_lot(d):
    return Run(d, load_config("lot"), ("-n",))


@NEEDS_COHORT
def test_dry_run_lot(runs):
    run = runs["dry_lot"]
    assert run.proc.returncode == 0, run.out
    counts = job_counts(run.out)
    assert counts["lot_embed"] == 4  # 24 donors, shards of 6
    for rule in ("lot_reference", "lot_concat", "lot_distances", "lot_classify", "lot_report"):
        assert counts[rule] == 1
    assert (run.dir / ".snakemake").is_dir()  # snakemake's state stays in the tmp dir


@case("test_dry_run_lot_shard_size_and_file_inputs")
def dry_lot_shard_size(d):
    cfg = load_config("lot")
    cfg["lot"]["shard_size"] = 5
    cfg["lot"]["samples"] = [f"donor{i:02d}" for i in range(1, 13)]
    return Run(d, cfg, ("-n", "-p"))


@case("test_dry_run_lot_shard_size_and_file_inputs")
def dry_lot_file_inputs(d):
    # one file per sample: shards are chunks of files (no --samples); a dry run only needs
    # the files to exist
    files = []
    for i in range(5):
        files.append(d / f"sample{i}.h5ad")
        files[-1].touch()
    cfg = load_config("lot")
    cfg["lot"].update(samples=None, cells=[str(f) for f in files], shard_size=2)
    cfg["lot"]["classify"]["celltype_key"] = None  # otbio classify --cells takes one file
    cfg["lot"]["reference"]["subsample"] = 2
    return Run(d, cfg, ("-n", "-p"), data={"files": files})


@NEEDS_COHORT
def test_dry_run_lot_shard_size_and_file_inputs(runs):
    run = runs["dry_lot_shard_size"]
    assert run.proc.returncode == 0, run.out
    assert job_counts(run.proc.stdout)["lot_embed"] == 3  # 12 listed samples in shards of 5
    assert "--samples donor11,donor12 " in run.proc.stdout
    run = runs["dry_lot_file_inputs"]
    files = run.data["files"]
    assert run.proc.returncode == 0, run.out
    assert job_counts(run.proc.stdout)["lot_embed"] == 3
    assert "--samples" not in run.proc.stdout
    assert f"reference {files[0]} {files[2]} --use-rep" in run.proc.stdout  # 2 files spread over 5


@case("test_dry_run_slices")
def dry_slices(d):
    return Run(d, load_config("slices"), ("-n", "-p"))


@case("test_dry_run_slices")
def dry_slices_reference(d):
    cfg = load_config("slices")
    cfg["slices"]["mode"] = "reference"
    cfg["slices"]["reference"] = 1
    return Run(d, cfg, ("-n", "-p"))


def test_dry_run_slices(runs):
    run = runs["dry_slices"]
    assert run.proc.returncode == 0, run.out
    counts = job_counts(run.proc.stdout)
    assert counts["slices_register"] == 3 and counts["slices_stack"] == 1
    # neighbour chain: s3 is registered onto s2 as placed in the frame of s1
    assert (
        "slices/registered/s2.h5ad --spatial-key spatial --target-spatial-key spatial_registered"
        in (run.proc.stdout)
    )
    run = runs["dry_slices_reference"]
    assert run.proc.returncode == 0, run.out
    assert "--target-spatial-key spatial_registered" not in run.proc.stdout
    assert (
        len(re.findall(r"breast_st_slice2\.h5ad --spatial-key spatial\s+-o", run.proc.stdout)) == 3
    )


PROFILES = ROOT / "workflows" / "profiles"


@case("test_dry_run_search")
def dry_search(d):
    return Run(d, load_config("search"), ("--profile", str(PROFILES / "local"), "-n"))


def test_dry_run_search(runs):
    run = runs["dry_search"]
    assert run.proc.returncode == 0, run.out
    assert f"Using profile {PROFILES / 'local'}" in run.out
    counts = job_counts(run.proc.stdout)
    n_motifs = len(run.cfg["search"]["motifs"])
    assert counts["search_chunk"] == 3 * n_motifs  # 25 chains in chunks of 10
    assert counts["search_merge"] == n_motifs and counts["search_merge_all"] == 1


@case("test_dry_run_search_index")
def dry_search_index(d):
    return Run(d, load_config("search_index"), ("--profile", str(PROFILES / "local"), "-n"))


def test_dry_run_search_index(runs):
    run = runs["dry_search_index"]
    assert run.proc.returncode == 0, run.out
    counts = job_counts(run.proc.stdout)
    assert counts["search_index_shard"] == 3  # 25 chains in shards of 10
    assert counts["search_index_query"] == len(run.cfg["search"]["motifs"])
    assert "search_chunk" not in counts and "search_merge" not in counts
    assert "--max-candidates 5" in run.proc.stdout


# --------------------------------------------------------------------------------------------
# bad configs fail at start, naming the key


def _fails_naming(run, *needles):
    out = run.out
    assert run.proc.returncode != 0, out
    for needle in needles:
        assert needle in out, out
    assert "ConfigError" in out
    assert not (run.dir / "results").exists()
    return out


@case("test_bad_config_unknown_key")
def bad_unknown_key(d):
    cfg = load_config("search")
    cfg["search"]["chunksize"] = 10
    cfg["pipline"] = "search"
    cfg["resources"] = {"search_chunks": {"threads": 2}}
    return Run(d, cfg, ("-n",))


def test_bad_config_unknown_key(runs):
    run = runs["bad_unknown_key"]
    out = _fails_naming(run, "unknown config key 'search.chunksize'", "chunk_size")
    assert "unknown config key 'pipline'" in out  # every bad key is named at once
    assert "unknown config key 'resources.search_chunks'" in out


@case("test_bad_config_unknown_sample")
def bad_unknown_sample(d):
    cfg = load_config("lot")
    cfg["lot"]["samples"] = ["donor01", "donor99"]
    return Run(d, cfg, ("-n",))


@NEEDS_COHORT
def test_bad_config_unknown_sample(runs):
    _fails_naming(runs["bad_unknown_sample"], "config key 'lot.samples'", "'donor99'")


@case("test_bad_config_shard_size_zero")
def bad_shard_size_zero(d):
    cfg = load_config("lot")
    cfg["lot"]["shard_size"] = 0
    return Run(d, cfg, ("-n",))


def test_bad_config_shard_size_zero(runs):
    _fails_naming(runs["bad_shard_size_zero"], "config key 'lot.shard_size' must be >= 1 (got 0)")


@case("test_bad_config_missing_input_file")
def bad_missing_input_file(d):
    cfg = load_config("slices")
    cfg["slices"]["sections"][2] = str(d / "nope.h5ad")
    return Run(d, cfg, ("-n",))


def test_bad_config_missing_input_file(runs):
    run = runs["bad_missing_input_file"]
    _fails_naming(run, "config key 'slices.sections[2]'", "nope.h5ad' not found")


@case("test_bad_config_missing_section_and_wrong_values")
def bad_missing_section(d):
    cfg = load_config("search")
    cfg["pipeline"] = "lot"
    return Run(d, cfg, ("-n",))


@case("test_bad_config_missing_section_and_wrong_values")
def bad_wrong_mode(d):
    cfg = load_config("slices")
    cfg["slices"]["mode"] = "chain"
    cfg["slices"]["reference"] = 9
    return Run(d, cfg, ("-n",))


@case("test_bad_config_missing_section_and_wrong_values")
def bad_reference_out_of_range(d):
    cfg = load_config("slices")
    cfg["slices"]["mode"] = "reference"
    cfg["slices"]["reference"] = 9
    return Run(d, cfg, ("-n",))


def test_bad_config_missing_section_and_wrong_values(runs):
    _fails_naming(runs["bad_missing_section"], "config key 'lot' is missing")
    out = _fails_naming(
        runs["bad_wrong_mode"], "config key 'slices.mode' must be one of neighbour, reference"
    )
    _fails_naming(runs["bad_reference_out_of_range"], "config key 'slices.reference' must be < 4")
    assert out


@case("test_no_config")
def no_config(d):
    argv = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(d), "-n"]
    return Run(d, argv=argv)


def test_no_config(runs):
    run = runs["no_config"]
    assert run.proc.returncode != 0
    assert "pass --configfile" in run.out


# --------------------------------------------------------------------------------------------
# real run of the LOT pipeline: killed after some shards, resumed, compared with one embed


@functools.cache
def _otbio_commands() -> frozenset:
    if OTBIO is None:
        return frozenset()
    r = subprocess.run([OTBIO, "-h"], capture_output=True, text=True, timeout=120)
    return frozenset(
        ln.split()[0] for ln in r.stdout.split("Commands:")[-1].splitlines() if ln.strip()
    )


def _have_commands(*names: str) -> bool:
    return all(n in _otbio_commands() for n in names)


LOT_COMMANDS = ("reference", "embed", "concat", "distances")


@pytest.fixture(scope="module")
def lot_run(tmp_path_factory):
    """Run the LOT pipeline on 1 core, kill it (SIGKILL, as a scheduler does at the time
    limit) once two shards have been written, then unlock and resume with --rerun-incomplete
    on 2 cores.

    On 1 core the shards run one after another, so when the second shard file appears the
    first shard's job has finished in snakemake's eyes; the newest one may still be open
    (its file is written but the job not yet closed) and is then redone, as it should be.
    """
    need(COHORT.exists(), "test_data/pbmc_cohort.h5ad not built yet")
    need(_have_commands(*LOT_COMMANDS), "the otbio command with its LOT commands is not on PATH")
    work = tmp_path_factory.mktemp("lot_run")
    cfg = load_config("lot")
    assert cfg["lot"]["shard_size"] == 6  # 4 shards of the 24 donors
    if _have_commands("classify"):
        cfg["lot"]["classify"]["extra"] = "--n-repeats 2 --n-permutations 19"  # keep it short
    else:
        cfg["lot"]["classify"] = None
    shard_dir = work / "results" / "lot" / "shards"
    n_shards = 4

    proc = subprocess.Popen(
        snakemake_args(work, cfg, "--cores", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=work,
        env=tool_env(),
        start_new_session=True,  # its own process group: the kill reaches otbio too
    )
    done: list[Path] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        done = sorted(shard_dir.glob("shard_*.h5ad")) if shard_dir.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    first_log = proc.communicate(timeout=60)[0]
    done = sorted(shard_dir.glob("shard_*.h5ad"), key=lambda p: p.stat().st_mtime_ns)
    assert len(done) >= 2, first_log
    mtimes = {p.name: p.stat().st_mtime_ns for p in done}
    finished = {p.name: mtimes[p.name] for p in done[:-1]}  # all but the newest

    # one `otbio embed` of the whole cohort with the run's reference (finished before the
    # first shard started; the resumed run does not redo it), computed while the run resumes
    lot, c = work / "results" / "lot", cfg["lot"]
    single = work / "single.h5ad"
    # fmt: off
    whole = subprocess.Popen(
        [OTBIO, "--seed", str(cfg["seed"]), "--quiet", "embed", str(COHORT),
         "--sample-key", c["sample_key"], "--use-rep", c["use_rep"],
         "--reference", str(lot / "reference.h5ad"), "-o", str(single)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # fmt: on
    try:
        r = snakemake(work, cfg, "--unlock")
        assert r.returncode == 0, r.stdout + r.stderr
        r = snakemake(work, cfg, "--cores", "2", "--rerun-incomplete")
        assert r.returncode == 0, r.stdout + r.stderr
        whole_err = whole.communicate(timeout=300)[1]
    finally:
        if whole.poll() is None:
            whole.kill()
    return {
        "work": work,
        "cfg": cfg,
        "written": mtimes,
        "finished": finished,
        "n_shards": n_shards,
        "resume_log": r.stdout + r.stderr,
        "single": (single, whole.returncode, whole_err),
    }


def test_resume_does_not_redo_finished_shards(lot_run):
    shard_dir = lot_run["work"] / "results" / "lot" / "shards"
    n_shards, written, finished = lot_run["n_shards"], lot_run["written"], lot_run["finished"]
    assert 1 <= len(finished) < len(written) < n_shards, "the kill came after every shard"
    now = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard_*.h5ad")}
    assert len(now) == n_shards
    for name, mtime in finished.items():
        assert now[name] == mtime, f"{name} was recomputed"
    counts = job_counts(lot_run["resume_log"])
    assert n_shards - len(written) <= counts["lot_embed"] <= n_shards - len(finished)
    assert "lot_reference" not in counts


def test_sharded_embedding_equals_single_embed(lot_run):
    import anndata as ad

    lot = lot_run["work"] / "results" / "lot"
    single, returncode, stderr = lot_run["single"]  # one otbio embed of the whole cohort
    assert returncode == 0, stderr
    sharded = ad.read_h5ad(lot / "embedding.h5ad")
    whole = ad.read_h5ad(single)
    assert sharded.n_obs == 24
    assert sorted(sharded.obs_names) == sorted(whole.obs_names)
    x = np.asarray(sharded[whole.obs_names].X, dtype=np.float64)
    np.testing.assert_allclose(x, np.asarray(whole.X, dtype=np.float64), rtol=0, atol=1e-10)
    assert (sharded.obs.loc[whole.obs_names, "condition"] == whole.obs["condition"]).all()


def test_lot_outputs_and_report(lot_run):
    import pandas as pd

    lot = lot_run["work"] / "results" / "lot"
    dist = pd.read_csv(lot / "distances.tsv", sep="\t")
    assert len(dist) == 24 * 23 // 2
    report = (lot / "report.md").read_text()
    assert report.startswith("# otbio LOT cohort report")
    assert "24 samples embedded in 4 shards" in report
    for name in ("lot_reference", "lot_concat", "lot_distances", "lot_report"):
        assert (lot_run["work"] / "results" / "logs" / f"{name}.log").exists()
    if lot_run["cfg"]["lot"]["classify"] is not None:
        metrics = pd.read_csv(lot / "classify" / "metrics.tsv", sep="\t").set_index("features")
        assert metrics.loc["lot", "balanced_accuracy"] >= 0.9
        assert "## Classification of 'condition'" in report
        assert "![classifier weights](classify/classify.png)" in report
        # the largest weights sit on the shifted cell type, and the report shows it
        points = pd.read_csv(lot / "classify" / "reference_points.tsv", sep="\t")
        assert points["celltype_change"].head(10).eq("CD14+ Monocyte").sum() >= 5
        assert "CD14+ Monocyte" in report.split("## Reference points")[1]
    # nothing written into the repository
    assert not (ROOT / "results").exists()


@case("test_slurm_profile_parses")
def slurm_profile(d):
    args = ("--profile", str(PROFILES / "slurm"), "--executor", "local", "-n")
    return Run(d, load_config("search"), args)


def test_slurm_profile_parses(runs):
    """The slurm profile holds valid snakemake options. The SLURM executor is a plugin that
    may be missing here, so the profile is read with the local executor (which refuses
    the plugin's own options, so slurm-noacct is checked by the next test)."""
    run = runs["slurm_profile"]
    assert run.proc.returncode == 0, run.out
    assert f"Using profile {PROFILES / 'slurm'}" in run.out


def test_slurm_noacct_profile_is_slurm_with_squeue():
    """slurm-noacct is the slurm profile with job status from squeue, nothing else."""
    profiles = ROOT / "workflows" / "profiles"
    acct = yaml.safe_load((profiles / "slurm" / "config.yaml").read_text())
    noacct = yaml.safe_load((profiles / "slurm-noacct" / "config.yaml").read_text())
    assert noacct.pop("slurm-status-command") == "squeue"
    assert "slurm-status-command" not in acct  # sacct, the plugin's default
    assert noacct == acct
    assert acct["executor"] == "slurm" and acct["retries"] == 1


def _fake_sinfo(tmp_path: Path) -> dict:
    """An environment whose `sinfo` describes a cluster: partition small (default, 2 CPUs,
    7000 MB, 1 h) and partition big (nodes of 64 and 32 CPUs, no time limit)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sinfo = bin_dir / "sinfo"
    sinfo.write_text(
        "#!/bin/sh\nprintf 'small*|2|7000|1:00:00\\nbig|64|500000|infinite\\nbig|32|250000|infinite\\n'\n"
    )
    sinfo.chmod(0o755)
    return tool_env(bin_dir)


def _fit_case(d, *extra, **cfg_update):
    cfg = load_config("search")
    cfg["fit_to_partition"] = True
    cfg.update(cfg_update)
    return Run(d, cfg, ("-n", "-p", "--cores", "64", *extra), env=_fake_sinfo(d))


@case("test_requests_fit_the_slurm_partition")
def fit_default_partition(d):
    return _fit_case(d)


@case("test_requests_fit_the_slurm_partition")
def fit_partition_big(d):
    return _fit_case(d, "--default-resources", "slurm_partition=big")


@case("test_requests_fit_the_slurm_partition")
def fit_partition_unknown(d):
    return _fit_case(d, "--default-resources", "slurm_partition=gpu")


@case("test_requests_fit_the_slurm_partition")
def fit_max_threads(d):
    return _fit_case(d, max_threads=3, fit_to_partition=False)


def test_requests_fit_the_slurm_partition(runs):
    """On SLURM, a rule never asks for more than one node of the partition offers (a job
    asking for 4 CPUs on a 2-CPU partition would pend forever or be refused)."""
    run = runs["fit_default_partition"]
    out = run.out
    assert run.proc.returncode == 0, out
    assert "search_chunk threads 4 lowered to 2 (partition 'small')" in out
    assert "--jobs 2 -v align" in out and "--jobs 4" not in out
    # the partition named in the profile's default resources: its largest node counts
    run = runs["fit_partition_big"]
    out = run.out
    assert run.proc.returncode == 0, out
    assert "lowered" not in out and "--jobs 4 -v align" in out
    # a partition the cluster does not have stops the run at start, naming those it has
    run = runs["fit_partition_unknown"]
    out = run.out
    assert run.proc.returncode != 0
    assert "slurm_partition 'gpu'" in out and "sinfo lists: big, small" in out
    # config max_threads caps too; fit_to_partition: false leaves the partition out
    run = runs["fit_max_threads"]
    out = run.out
    assert run.proc.returncode == 0, out
    assert "search_chunk threads 4 lowered to 3 (max_threads)" in out
    assert "--jobs 3 -v align" in out


@case("test_retry_asks_for_twice_the_time_and_memory_within_the_partition")
def retry_once(d):
    need(_have_commands("align"), "the otbio command with `align` is not on PATH")
    flag = d / "failed_once"
    wrapper = d / "otbio-fails-once"
    wrapper.write_text(
        f'#!/bin/sh\n[ -e "{flag}" ] || {{ touch "{flag}"; exit 3; }}\nexec "{OTBIO}" "$@"\n'
    )
    wrapper.chmod(0o755)
    cfg = load_config("search")
    cfg["search"].update(motifs={"lid": cfg["search"]["motifs"]["adk_lid"]})
    cfg["search"].update(pattern="3[a-c]*.pdb.gz", chunk_size=10)
    cfg.update(otbio=str(wrapper), fit_to_partition=True)
    cfg["resources"] = {"search_chunk": {"threads": 1, "mem_mb": 4000, "runtime": 40}}
    return Run(d, cfg, ("--cores", "1", "--retries", "1"), env=_fake_sinfo(d))


def test_retry_asks_for_twice_the_time_and_memory_within_the_partition(runs):
    """A job resubmitted by `retries` (the slurm profiles set 1) asks for twice its runtime
    and mem_mb, capped by what the partition offers: here 40 min -> 60 (the partition's
    limit) and 4000 MB -> 7000 (a node's memory). otbio fails once, then runs."""
    run = runs["retry_once"]
    out = run.out
    assert run.proc.returncode == 0, out
    assert (run.dir / "failed_once").exists() and "Trying to restart job" in out
    asked = re.findall(r"resources: tmpdir=\S+ runtime=(\d+), mem_mb=(\d+)", out)
    assert asked[:2] == [("40", "4000"), ("60", "7000")], out  # first and second attempt


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("infinite", None),
        ("30", 30),
        ("45:00", 45),
        ("1:00:00", 60),
        ("2-00:00:00", 2880),
        ("0:30:01", 31),
    ],
)
def test_slurm_time_limits_in_minutes(text, minutes):
    ns = {"config": {}, "workflow": None}
    exec(
        compile((ROOT / "workflows" / "rules" / "common.smk").read_text(), "common.smk", "exec"), ns
    )
    assert ns["_slurm_minutes"](text) == minutes


@case("test_search_merge_ranks_all_chunks")
def merge_only(d):
    cfg = load_config("search")
    rng = np.random.default_rng(0)
    scores = {}
    for motif in cfg["search"]["motifs"]:
        chunk_dir = d / "results" / "search" / motif / "chunks"
        chunk_dir.mkdir(parents=True)
        for c in range(3):
            vals = np.sort(rng.random(4))[::-1].round(4)
            rows = [f"{i + 1}\t{motif}\tt{c}_{i}\t{v}\t{i}" for i, v in enumerate(vals)]
            text = "rank\tquery\ttarget\tscore\tpairs\n" + "\n".join(rows) + "\n"
            (chunk_dir / f"chunk_{c:04d}.tsv").write_text(text)
            scores.update({(motif, f"t{c}_{i}"): v for i, v in enumerate(vals)})
    return Run(d, cfg, ("--cores", "1"), data={"scores": scores})


def test_search_merge_ranks_all_chunks(runs):
    """The merge rule (shell only) ranks the rows of every chunk by score and renumbers rank.

    The chunk tables are written by the case above in the layout of
    `otbio align --save-scores`, so snakemake runs only the merge rules."""
    run = runs["merge_only"]
    cfg, scores = run.cfg, run.data["scores"]
    assert run.proc.returncode == 0, run.out
    assert "search_chunk" not in job_counts(run.out)
    import pandas as pd

    for motif in cfg["search"]["motifs"]:
        df = pd.read_csv(run.dir / "results" / "search" / motif / "scores.tsv", sep="\t")
        assert len(df) == 12 and list(df["rank"]) == list(range(1, 13))
        assert (np.diff(df["score"]) <= 0).all()
        assert all(scores[(motif, t)] == s for t, s in zip(df["target"], df["score"]))
    both = pd.read_csv(run.dir / "results" / "search" / "scores.tsv", sep="\t")
    assert len(both) == 12 * len(cfg["search"]["motifs"])


SEARCH_QUERY = load_config("search")["search"]["motifs"]["adk_lid"]
SEARCH_TARGETS = "3[a-i]*.pdb.gz"


@case("test_search_real_run_equals_one_align")
def search_real_run(d):
    need(_have_commands("align"), "the otbio command with `align` is not on PATH")
    cfg = load_config("search")
    cfg["search"].update(motifs={"lid": SEARCH_QUERY}, pattern=SEARCH_TARGETS, chunk_size=2)
    return Run(d, cfg, ("--cores", "2"))


@case("test_search_real_run_equals_one_align")
def search_one_align(d):
    need(_have_commands("align"), "the otbio command with `align` is not on PATH")
    targets = sorted(
        str(p) for p in (ROOT / "test_data" / "protein" / "chains").glob(SEARCH_TARGETS)
    )
    argv = [OTBIO, "--quiet", "align", SEARCH_QUERY, *targets]
    return Run(d, argv=[*argv, "--save-scores", str(d / "single.tsv")])


def test_search_real_run_equals_one_align(runs):
    """A real search (one motif, 6 chains in chunks of 2) gives the rows of one `otbio align`
    over all the targets, ranked the same way."""
    import pandas as pd

    run = runs["search_real_run"]
    assert run.proc.returncode == 0, run.out
    assert job_counts(run.out)["search_chunk"] == 3
    single = runs["search_one_align"]
    assert single.proc.returncode == 0, single.proc.stderr
    merged = pd.read_csv(run.dir / "results" / "search" / "lid" / "scores.tsv", sep="\t")
    whole = pd.read_csv(single.dir / "single.tsv", sep="\t")
    assert len(merged) == 6 and list(merged["rank"]) == list(range(1, 7))
    # ranked like otbio align: by TM-score, ties by the PLASMA score
    key = list(zip(merged["tm_score"].fillna(-1.0), merged["score"]))
    assert key == sorted(key, reverse=True)
    # every target's row is what one otbio align over all targets gives
    by_target = merged.drop(columns="rank").set_index("target").sort_index()
    expected = whole.drop(columns="rank").set_index("target").sort_index()
    pd.testing.assert_frame_equal(by_target, expected)


def test_every_rule_declares_threads_resources_log_and_no_python():
    """Every rule that does work has threads, mem_mb, runtime and a log, and runs a shell
    command (no run:/script:/notebook: blocks)."""
    rules = {}
    for smk in sorted((ROOT / "workflows" / "rules").glob("*.smk")):
        text = smk.read_text()
        assert not re.search(r"^\s+(run|script|notebook|wrapper):", text, re.M), smk
        for block in re.split(r"^\s*rule ", text, flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            body = block.split("\nrule ", 1)[0]
            rules[name] = body
    assert {"lot_embed", "slices_register", "search_chunk"} <= set(rules)
    for name, body in rules.items():
        for field in ("threads:", "mem_mb=", "runtime=", "log:", "shell:"):
            assert field in body, f"rule {name} lacks {field}"
    calls = "\n".join(rules.values())
    assert calls.count("otbio_cmd()") >= 8  # each compute rule calls the otbio command line
