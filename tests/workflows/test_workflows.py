"""The Snakemake workflows in workflows/: dry runs of the three pipelines, config checking at
start, and a real local run of the LOT pipeline that is killed after some shards, resumed,
and compared with one `otbio embed` of the whole cohort.

Snakemake always runs in a tmp folder (``--directory``), so no ``.snakemake/`` lands in the
repository. Outside CI a missing tool (snakemake, otbio) skips the tests that need it; in CI
(the CI environment variable set) it fails them, so that CI never passes with them unrun.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


def snakemake_args(workdir: Path, cfg: dict, *extra: str) -> list[str]:
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--configfile",
        str(cfg_path),
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
        env=env,
    )


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake run or dry run."""
    counts: dict[str, int] = {}
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


# --------------------------------------------------------------------------------------------
# dry runs


@NEEDS_COHORT
def test_dry_run_lot(tmp_path):
    cfg = load_config("lot")
    r = snakemake(tmp_path, cfg, "-n")
    assert r.returncode == 0, r.stderr + r.stdout
    counts = job_counts(r.stdout + r.stderr)
    assert counts["lot_embed"] == 4  # 24 donors, shards of 6
    for rule in ("lot_reference", "lot_concat", "lot_distances", "lot_classify", "lot_report"):
        assert counts[rule] == 1
    assert (tmp_path / ".snakemake").is_dir()  # snakemake's state stays in the tmp dir


@NEEDS_COHORT
def test_dry_run_lot_shard_size_and_file_inputs(tmp_path):
    cfg = load_config("lot")
    cfg["lot"]["shard_size"] = 5
    cfg["lot"]["samples"] = [f"donor{i:02d}" for i in range(1, 13)]
    r = snakemake(tmp_path, cfg, "-n", "-p")
    assert r.returncode == 0, r.stderr + r.stdout
    assert job_counts(r.stdout)["lot_embed"] == 3  # 12 listed samples in shards of 5
    assert "--samples donor11,donor12 " in r.stdout
    # one file per sample: shards are chunks of files (no --samples); a dry run only needs
    # the files to exist
    files = []
    for i in range(5):
        files.append(tmp_path / f"sample{i}.h5ad")
        files[-1].touch()
    cfg["lot"].update(samples=None, cells=[str(f) for f in files], shard_size=2)
    cfg["lot"]["classify"]["celltype_key"] = None  # otbio classify --cells takes one file
    cfg["lot"]["reference"]["subsample"] = 2
    r = snakemake(tmp_path, cfg, "-n", "-p")
    assert r.returncode == 0, r.stderr + r.stdout
    assert job_counts(r.stdout)["lot_embed"] == 3
    assert "--samples" not in r.stdout
    assert f"reference {files[0]} {files[2]} --use-rep" in r.stdout  # 2 files spread over 5


def test_dry_run_slices(tmp_path):
    cfg = load_config("slices")
    r = snakemake(tmp_path, cfg, "-n", "-p")
    assert r.returncode == 0, r.stderr + r.stdout
    counts = job_counts(r.stdout)
    assert counts["slices_register"] == 3 and counts["slices_stack"] == 1
    # neighbour chain: s3 is registered onto s2 as placed in the frame of s1
    assert (
        "slices/registered/s2.h5ad --spatial-key spatial --target-spatial-key spatial_registered"
        in (r.stdout)
    )
    cfg["slices"]["mode"] = "reference"
    cfg["slices"]["reference"] = 1
    r = snakemake(tmp_path, cfg, "-n", "-p")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "--target-spatial-key spatial_registered" not in r.stdout
    assert len(re.findall(r"breast_st_slice2\.h5ad --spatial-key spatial\s+-o", r.stdout)) == 3


def test_dry_run_search(tmp_path):
    cfg = load_config("search")
    prof = ROOT / "workflows" / "profiles" / "local"
    r = snakemake(tmp_path, cfg, "--profile", str(prof), "-n")
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"Using profile {prof}" in r.stdout + r.stderr
    counts = job_counts(r.stdout)
    n_motifs = len(cfg["search"]["motifs"])
    assert counts["search_chunk"] == 3 * n_motifs  # 25 chains in chunks of 10
    assert counts["search_merge"] == n_motifs and counts["search_merge_all"] == 1


# --------------------------------------------------------------------------------------------
# bad configs fail at start, naming the key


def _fails_naming(tmp_path, cfg, *needles):
    r = snakemake(tmp_path, cfg, "-n")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for needle in needles:
        assert needle in out, out
    assert "ConfigError" in out
    assert not (tmp_path / "results").exists()
    return out


def test_bad_config_unknown_key(tmp_path):
    cfg = load_config("search")
    cfg["search"]["chunksize"] = 10
    cfg["pipline"] = "search"
    cfg["resources"] = {"search_chunks": {"threads": 2}}
    out = _fails_naming(tmp_path, cfg, "unknown config key 'search.chunksize'", "chunk_size")
    assert "unknown config key 'pipline'" in out  # every bad key is named at once
    assert "unknown config key 'resources.search_chunks'" in out


@NEEDS_COHORT
def test_bad_config_unknown_sample(tmp_path):
    cfg = load_config("lot")
    cfg["lot"]["samples"] = ["donor01", "donor99"]
    _fails_naming(tmp_path, cfg, "config key 'lot.samples'", "'donor99'")


def test_bad_config_shard_size_zero(tmp_path):
    cfg = load_config("lot")
    cfg["lot"]["shard_size"] = 0
    _fails_naming(tmp_path, cfg, "config key 'lot.shard_size' must be >= 1 (got 0)")


def test_bad_config_missing_input_file(tmp_path):
    cfg = load_config("slices")
    cfg["slices"]["sections"][2] = str(tmp_path / "nope.h5ad")
    _fails_naming(tmp_path, cfg, "config key 'slices.sections[2]'", "nope.h5ad' not found")


def test_bad_config_missing_section_and_wrong_values(tmp_path):
    cfg = load_config("search")
    cfg["pipeline"] = "lot"
    _fails_naming(tmp_path, cfg, "config key 'lot' is missing")
    cfg = load_config("slices")
    cfg["slices"]["mode"] = "chain"
    cfg["slices"]["reference"] = 9
    out = _fails_naming(
        tmp_path, cfg, "config key 'slices.mode' must be one of neighbour, reference"
    )
    cfg["slices"]["mode"] = "reference"
    _fails_naming(tmp_path, cfg, "config key 'slices.reference' must be < 4")
    assert out


def test_no_config(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path), "-n"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "pass --configfile" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# real run of the LOT pipeline: killed after some shards, resumed, compared with one embed


def _have_commands(*names: str) -> bool:
    if OTBIO is None:
        return False
    r = subprocess.run([OTBIO, "-h"], capture_output=True, text=True, timeout=120)
    listed = {ln.split()[0] for ln in r.stdout.split("Commands:")[-1].splitlines() if ln.strip()}
    return all(n in listed for n in names)


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

    r = snakemake(work, cfg, "--unlock")
    assert r.returncode == 0, r.stdout + r.stderr
    r = snakemake(work, cfg, "--cores", "2", "--rerun-incomplete")
    assert r.returncode == 0, r.stdout + r.stderr
    return {
        "work": work,
        "cfg": cfg,
        "written": mtimes,
        "finished": finished,
        "n_shards": n_shards,
        "resume_log": r.stdout + r.stderr,
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

    work = lot_run["work"]
    lot = work / "results" / "lot"
    single = work / "single.h5ad"
    c = lot_run["cfg"]["lot"]
    r = subprocess.run(
        [
            OTBIO,
            "--seed",
            str(lot_run["cfg"]["seed"]),
            "--quiet",
            "embed",
            str(COHORT),
            "--sample-key",
            c["sample_key"],
            "--use-rep",
            c["use_rep"],
            "--reference",
            str(lot / "reference.h5ad"),
            "-o",
            str(single),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
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


def test_slurm_profile_parses(tmp_path):
    """The slurm profile holds valid snakemake options. The SLURM executor is a plugin that
    may be missing here, so the profile is read with the local executor (which refuses
    the plugin's own options, so slurm-noacct is checked by the next test)."""
    cfg = load_config("search")
    prof = ROOT / "workflows" / "profiles" / "slurm"
    r = snakemake(tmp_path, cfg, "--profile", str(prof), "--executor", "local", "-n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Using profile {prof}" in r.stdout + r.stderr


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
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_requests_fit_the_slurm_partition(tmp_path):
    """On SLURM, a rule never asks for more than one node of the partition offers (a job
    asking for 4 CPUs on a 2-CPU partition would pend forever or be refused)."""
    env = _fake_sinfo(tmp_path)
    cfg = load_config("search")
    cfg["fit_to_partition"] = True
    run = ("-n", "-p", "--cores", "64")
    r = snakemake(tmp_path, cfg, *run, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "search_chunk threads 4 lowered to 2 (partition 'small')" in out
    assert "--jobs 2 -v align" in out and "--jobs 4" not in out
    # the partition named in the profile's default resources: its largest node counts
    r = snakemake(tmp_path, cfg, *run, "--default-resources", "slurm_partition=big", env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "lowered" not in out and "--jobs 4 -v align" in out
    # a partition the cluster does not have stops the run at start, naming those it has
    r = snakemake(tmp_path, cfg, *run, "--default-resources", "slurm_partition=gpu", env=env)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "slurm_partition 'gpu'" in out and "sinfo lists: big, small" in out
    # config max_threads caps too; fit_to_partition: false leaves the partition out
    cfg.update(max_threads=3, fit_to_partition=False)
    r = snakemake(tmp_path, cfg, *run, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "search_chunk threads 4 lowered to 3 (max_threads)" in out
    assert "--jobs 3 -v align" in out


def test_retry_asks_for_twice_the_time_and_memory_within_the_partition(tmp_path):
    """A job resubmitted by `retries` (the slurm profiles set 1) asks for twice its runtime
    and mem_mb, capped by what the partition offers: here 40 min -> 60 (the partition's
    limit) and 4000 MB -> 7000 (a node's memory). otbio fails once, then runs."""
    need(_have_commands("align"), "the otbio command with `align` is not on PATH")
    env = _fake_sinfo(tmp_path)
    flag = tmp_path / "failed_once"
    wrapper = tmp_path / "otbio-fails-once"
    wrapper.write_text(
        f'#!/bin/sh\n[ -e "{flag}" ] || {{ touch "{flag}"; exit 3; }}\nexec "{OTBIO}" "$@"\n'
    )
    wrapper.chmod(0o755)
    cfg = load_config("search")
    cfg["search"].update(motifs={"lid": cfg["search"]["motifs"]["adk_lid"]})
    cfg["search"].update(pattern="3[a-c]*.pdb.gz", chunk_size=10)
    cfg.update(otbio=str(wrapper), fit_to_partition=True)
    cfg["resources"] = {"search_chunk": {"threads": 1, "mem_mb": 4000, "runtime": 40}}
    r = snakemake(tmp_path, cfg, "--cores", "1", "--retries", "1", env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert flag.exists() and "Trying to restart job" in out
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


def test_search_merge_ranks_all_chunks(tmp_path):
    """The merge rule (shell only) ranks the rows of every chunk by score and renumbers rank.

    The chunk tables are written here in the layout of `otbio align --save-scores`, so snakemake
    runs only the merge rules."""
    cfg = load_config("search")
    rng = np.random.default_rng(0)
    scores = {}
    for motif in cfg["search"]["motifs"]:
        chunk_dir = tmp_path / "results" / "search" / motif / "chunks"
        chunk_dir.mkdir(parents=True)
        for c in range(3):
            vals = np.sort(rng.random(4))[::-1].round(4)
            rows = [f"{i + 1}\t{motif}\tt{c}_{i}\t{v}\t{i}" for i, v in enumerate(vals)]
            text = "rank\tquery\ttarget\tscore\tpairs\n" + "\n".join(rows) + "\n"
            (chunk_dir / f"chunk_{c:04d}.tsv").write_text(text)
            scores.update({(motif, f"t{c}_{i}"): v for i, v in enumerate(vals)})
    r = snakemake(tmp_path, cfg, "--cores", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "search_chunk" not in job_counts(r.stdout + r.stderr)
    import pandas as pd

    for motif in cfg["search"]["motifs"]:
        df = pd.read_csv(tmp_path / "results" / "search" / motif / "scores.tsv", sep="\t")
        assert len(df) == 12 and list(df["rank"]) == list(range(1, 13))
        assert (np.diff(df["score"]) <= 0).all()
        assert all(scores[(motif, t)] == s for t, s in zip(df["target"], df["score"]))
    both = pd.read_csv(tmp_path / "results" / "search" / "scores.tsv", sep="\t")
    assert len(both) == 12 * len(cfg["search"]["motifs"])


def test_search_real_run_equals_one_align(tmp_path):
    """A real search (one motif, 6 chains in chunks of 2) gives the rows of one `otbio align`
    over all the targets, ranked the same way."""
    need(_have_commands("align"), "the otbio command with `align` is not on PATH")
    import pandas as pd

    cfg = load_config("search")
    query = cfg["search"]["motifs"]["adk_lid"]
    cfg["search"].update(motifs={"lid": query}, pattern="3[a-i]*.pdb.gz", chunk_size=2)
    r = snakemake(tmp_path, cfg, "--cores", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert job_counts(r.stdout + r.stderr)["search_chunk"] == 3
    targets = sorted(
        str(p) for p in (ROOT / "test_data" / "protein" / "chains").glob("3[a-i]*.pdb.gz")
    )
    single = tmp_path / "single.tsv"
    r = subprocess.run(
        [OTBIO, "--quiet", "align", query, *targets, "--save-scores", str(single)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    merged = pd.read_csv(tmp_path / "results" / "search" / "lid" / "scores.tsv", sep="\t")
    whole = pd.read_csv(single, sep="\t")
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
