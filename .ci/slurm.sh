#!/usr/bin/env bash
# The cluster path on a real SLURM: a single-node cluster from Debian's packages (slurmctld,
# slurmd, munge; with --accounting also slurmdbd + MariaDB so that `sacct` works), started by
# hand (no systemd), then
#   1. the three workflow pipelines (LOT cohort, slice series, structure search; CI-sized
#      configs in workflows/config/ci/) through `snakemake --executor slurm` with the project's
#      profile, the same with the local profile, and every output compared;
#   2. the SLURM job id of every job of every rule, checked against snakemake's job counts;
#   3. a time-limit test: a job killed by SLURM at its `runtime` (SIGTERM, then SIGKILL) while
#      snakemake itself is gone leaves no output snakemake takes as finished, and
#      `--rerun-incomplete` resumes it;
# the runs of 1. (SLURM and local) and 3. are started together (they mostly wait) and checked
# when they have finished;
# and the daemons are stopped by PID at the end (also on failure).
#
# Run it as root on a throw-away Debian 12 machine or container (it writes
# /etc/slurm/slurm.conf, the plugin's in-job srun needs that default path):
#   .ci/slurm.sh                 # no accounting: status through squeue (profile slurm-noacct)
#   .ci/slurm.sh --accounting    # slurmdbd + MariaDB: status through sacct (profile slurm)
#   .ci/slurm.sh up [--accounting] | down    # only start or stop the cluster
# Environment: OTBIO_SLURM_WORK (work folder; default a new /tmp/otbio-slurm.XXXX),
# OTBIO_SLURM_PIPELINES (default "lot slices search"), OTBIO_SLURM_SKIP_TIMELIMIT=1 (leave out
# the time-limit test, which needs the search pipeline).
# Any failure (apt, a daemon that does not come up, a pipeline, a difference) exits non-zero.
set -Eeuo pipefail
# a command that fails under set -e says which one (-E: also inside functions)
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ACCOUNTING=0
ACTION=all
for arg in "$@"; do
  case $arg in
    --accounting) ACCOUNTING=1 ;;
    up | down | all) ACTION=$arg ;;
    *) echo "usage: $0 [up|down|all] [--accounting]" >&2; exit 2 ;;
  esac
done
CONF=/etc/slurm/slurm.conf
# first status check of the SLURM plugin after a submission (its default is 40 s); MinJobAge
# (how long slurmctld keeps a finished job, i.e. how long squeue still shows it) must be at
# least 3x this, else the plugin drops back to sacct. After a check that finds no job finished
# the plugin waits 10 s more than the last time: checks at 5, 20, 45 s... after a submission
# (CI's jobs take 10-20 s each; with 15 they were found only at 40 s)
FIRST_CHECK=5
MIN_JOB_AGE=300

say() { printf '\n=== %s  [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }
die() { echo "FAIL: $*" >&2; exit 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "$what did not come up within ${t}s"
    sleep 0.2
  done
}

slurm_down() {
  # newest first, by the PID files the daemons wrote; wait until each has exited
  local f p
  for f in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid \
    /run/munge/munged.pid; do
    [ -s "$f" ] || continue
    p=$(cat "$f")
    if kill "$p" 2>/dev/null; then
      for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$p" 2>/dev/null && { echo "pid $p ($f) ignores SIGTERM, sending SIGKILL"; kill -9 "$p" || true; }
      echo "stopped $(basename "$f" .pid) (pid $p)"
    fi
    rm -f "$f"
  done
  # put back a slurm.conf that was there before `up`
  if [ -e "$CONF.otbio-saved" ]; then mv -f "$CONF.otbio-saved" "$CONF"; fi
}

slurm_up() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
  command -v apt-get >/dev/null || die "needs Debian/Ubuntu (apt-get)"
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    die "slurmctld or slurmd is already running; stop it first ($0 down)"
  fi
  say "install SLURM from the distribution (accounting=$ACCOUNTING)"
  local pkgs="slurmctld slurmd slurm-client munge"
  [ "$ACCOUNTING" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  # update the package lists only when a package is not installed yet
  # shellcheck disable=SC2086
  if ! dpkg -s $pkgs >/dev/null 2>&1; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends $pkgs >/dev/null || die "apt-get install $pkgs failed"
  fi
  echo "slurm-wlm $(dpkg-query -W -f '${Version}' slurmctld)"

  local host cpus mem acct
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(($(free -m | awk '/^Mem:/{print $2}') * 85 / 100))
  if [ "$ACCOUNTING" = 1 ]; then
    acct=$'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoreFlags=job_comment\nJobAcctGatherType=jobacct_gather/linux'
  else
    acct=$'AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none'
  fi
  mkdir -p /etc/slurm
  [ -e "$CONF" ] && [ ! -e "$CONF.otbio-saved" ] && cp "$CONF" "$CONF.otbio-saved"
  cat >"$CONF" <<EOF
# written by otbio's .ci/slurm.sh: one node, no cgroups, no systemd
ClusterName=otbioci
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# a job asking for more than a node has is refused at sbatch, not left pending forever
EnforcePartLimits=ALL
ReturnToService=2
MpiDefault=none
# >= 3x the plugin's first status check (slurm-init-seconds-before-status-checks)
MinJobAge=$MIN_JOB_AGE
# SIGTERM at the time limit, SIGKILL KillWait seconds later
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
  chown slurm:slurm /var/spool/slurmctld /var/log/slurm
  chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key missing (the munge package creates it)"

  say "start munge, $([ "$ACCOUNTING" = 1 ] && echo "MariaDB, slurmdbd, ")slurmctld, slurmd"
  runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  wait_for 20 munge sh -c 'munge -n </dev/null | unmunge'
  if [ "$ACCOUNTING" = 1 ]; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    nohup /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
      >/var/log/slurm/mariadb.log 2>&1 &
    wait_for 60 MariaDB mariadb -e 'select 1'
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
EOF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf
    slurmdbd || die "slurmdbd did not start (see /var/log/slurm/slurmdbd.log)"
    wait_for 60 slurmdbd sacctmgr -n list cluster
  fi
  slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
  slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"
  wait_for 60 "the node (sinfo idle)" sh -c 'sinfo -h -o %T | grep -qx idle'
  if [ "$ACCOUNTING" = 1 ]; then  # the plugin checks slurm_account against sacctmgr
    # (non-zero when they exist already, from an earlier run on this machine)
    sacctmgr -i add account otbio Description=otbio-ci Organization=otbio >/dev/null || true
    sacctmgr -i add user "$(id -un)" Account=otbio >/dev/null || true
    sacctmgr -n -P show assoc user="$(id -un)" account=otbio format=account | grep -qx otbio ||
      die "sacctmgr: account otbio for $(id -un) not set up"
  fi
  sinfo
  scontrol show config | grep -E '^(MinJobAge|AccountingStorageType|KillWait|EnforcePartLimits) '
  # the smallest check that the cluster runs jobs
  local out
  out=$(srun -N1 -n1 -t 1 hostname) || die "srun hostname failed"
  echo "srun hostname: $out"
}

case $ACTION in
  up) slurm_up; exit 0 ;;
  down) slurm_down; exit 0 ;;
esac

export PYTHONPATH=${PYTHONPATH:-$ROOT}
OTBIO=$(command -v otbio) || die "otbio is not on PATH (pip install -e '.[test]')"
command -v snakemake >/dev/null || die "snakemake is not on PATH (pip install -e '.[test]')"
WORK=${OTBIO_SLURM_WORK:-$(mktemp -d /tmp/otbio-slurm.XXXX)}
mkdir -p "$WORK"
trap 'rc=$?; say "stop the daemons"; slurm_down; [ $rc = 0 ] || echo "FAILED (exit $rc); logs under $WORK and /var/log/slurm" >&2; exit $rc' EXIT
trap 'exit 143' TERM INT HUP  # so that the EXIT trap stops the daemons

say "install the SLURM executor plugin"
# (pip only when it is missing: pip's resolver alone takes seconds)
if ! python -c "import importlib.metadata as m, sys
v = tuple(int(x) for x in m.version('snakemake-executor-plugin-slurm').split('.')[:2])
sys.exit(not (2, 8) <= v < (3, 0))" 2>/dev/null; then
  python -m pip install -q "snakemake-executor-plugin-slurm>=2.8,<3" ||
    die "pip install snakemake-executor-plugin-slurm failed"
fi
python -m pip list 2>/dev/null | grep -iE '^(snakemake|snakemake-executor-plugin-slurm) '

slurm_up

if [ "$ACCOUNTING" = 1 ]; then
  PROFILE=$ROOT/workflows/profiles/slurm
  # the account the cluster knows (a site sets slurm_account in the profile instead)
  SITE=(--default-resources slurm_account=otbio)
else
  PROFILE=$ROOT/workflows/profiles/slurm-noacct
  SITE=()
fi
# CI only: first status check 5 s after a submission (sites keep the plugin's 40 s) and keep the
# SLURM log of every job (the plugin deletes those of successful jobs)
FAST=(--slurm-init-seconds-before-status-checks "$FIRST_CHECK" --slurm-keep-successful-logs)

smk() {  # smk DIR CONFIG ARGS...: snakemake in DIR (test_data linked in)
  local dir=$1 cfg=$2; shift 2
  mkdir -p "$dir"
  ln -sfn "$ROOT/test_data" "$dir/test_data"
  (cd "$dir" && snakemake -s "$ROOT/workflows/Snakefile" --configfile "$cfg" \
    --config otbio="$OTBIO" --nocolor "$@")
}

PIPELINES=${OTBIO_SLURM_PIPELINES:-lot slices search}
TIMELIMIT=1
if [ "${OTBIO_SLURM_SKIP_TIMELIMIT:-0}" = 1 ]; then TIMELIMIT=0; fi
case " $PIPELINES " in *" search "*) ;; *) TIMELIMIT=0 ;; esac # it compares with local search

# The runs below mostly wait (for the scheduler, for the plugin's status checks, for the time
# limit), so they are started together in the background and awaited in turn: each pipeline
# on SLURM, the same pipelines with the local profile (one after another) and the time-limit
# test. Each task writes its own log, $WORK/<task>.log; a failed task shows its tail.
declare -A TASK=()
start() { # start NAME COMMAND...: COMMAND in the background, output to $WORK/NAME.log
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  TASK[$name]=$!
}
finish() { # finish NAME: wait for the task; on failure show its log and stop
  local name=$1 rc=0
  wait "${TASK[$name]}" || rc=$?
  unset "TASK[$name]"
  [ $rc = 0 ] || { tail -n 60 "$WORK/$name.log"; die "$name failed (exit $rc)"; }
}
kill_tree() { # kill_tree PID: a task and the processes it started, by PID
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
stop_tasks() { # the tasks still running (after a failure)
  local pid
  for pid in "${TASK[@]}"; do kill_tree "$pid"; done
}
trap 'rc=$?; stop_tasks; say "stop the daemons"; slurm_down; [ $rc = 0 ] || echo "FAILED (exit $rc); logs under $WORK and /var/log/slurm" >&2; exit $rc' EXIT

slurm_pipeline() { # slurm_pipeline P: pipeline P on SLURM
  smk "$WORK/slurm/$1" "$ROOT/workflows/config/ci/$1.yaml" --profile "$PROFILE" "${SITE[@]}" \
    "${FAST[@]}"
}
local_pipelines() { # every pipeline with --profile local, one after another
  local p
  for p in $PIPELINES; do
    echo "=== $p  [$(date -u +%T)]"
    smk "$WORK/local/$p" "$ROOT/workflows/config/ci/$p.yaml" \
      --profile "$ROOT/workflows/profiles/local" --cores "$(nproc)"
  done
}

timelimit_test() { # the time-limit test, up to the resumed run (checked at the end)
  # otbio behind a wrapper that, for chunk 0001 and while $TL/hold exists, stays on after otbio
  # has written its output and ignores SIGTERM: SLURM must SIGKILL it at the time limit, and
  # the output file on disk is complete, so only snakemake's bookkeeping can tell it apart
  cat >"$TL/otbio-linger" <<WRAPPER
#!/bin/bash
"$OTBIO" "\$@"
rc=\$?
case "\$*" in *chunk_0001*) ;; *) exit \$rc ;; esac
[ -e "$TL/hold" ] || exit \$rc
echo "\$SLURM_JOB_ID" > "$TL/lingering"
trap 'echo "SIGTERM \$(date +%s)" >> "$TL/signals"' TERM
for _ in \$(seq 600); do sleep 1; done
echo "not killed" >> "$TL/signals"
exit \$rc
WRAPPER
  chmod +x "$TL/otbio-linger"
  touch "$TL/hold"
  # a second config file on top of the CI one: the wrapper, and 1 minute for search_chunk
  cat >"$TL/timelimit.yaml" <<CONFIG
otbio: $TL/otbio-linger
resources:
  search_chunk: {threads: 1, mem_mb: 1000, runtime: 1}
CONFIG
  local tl_smk=(-s "$ROOT/workflows/Snakefile" --nocolor
    --configfile "$ROOT/workflows/config/ci/search.yaml" "$TL/timelimit.yaml")
  mkdir -p "$TL/run"
  ln -sfn "$ROOT/test_data" "$TL/run/test_data"
  echo "+ snakemake ... --configfile workflows/config/ci/search.yaml timelimit.yaml --profile ${PROFILE#"$ROOT"/}"
  (cd "$TL/run" && exec snakemake "${tl_smk[@]}" --profile "$PROFILE" "${SITE[@]}" "${FAST[@]}") \
    >"$TL/first.log" 2>&1 &
  local smk_pid=$! end jid state
  # wait until chunk 0001 lingers and snakemake has seen chunk 0000 finish
  end=$((SECONDS + 300))
  until [ -s "$TL/lingering" ] && grep -q "Finished jobid.*search_chunk" "$TL/first.log"; do
    kill -0 "$smk_pid" 2>/dev/null || { tail -n 40 "$TL/first.log"; die "snakemake ended early"; }
    [ $SECONDS -lt $end ] || { tail -n 40 "$TL/first.log"; die "chunk 0001 did not start"; }
    sleep 1
  done
  jid=$(cat "$TL/lingering")
  grep -E "SLURM jobid" "$TL/first.log"
  python "$ROOT/.ci/slurm_check.py" markers "$TL/run"
  # the login session dies: snakemake is killed, the SLURM job runs on to its time limit
  kill -9 "$smk_pid"
  wait "$smk_pid" 2>/dev/null || true
  echo "snakemake killed (SIGKILL) at $(date -u +%T); SLURM job $jid runs on until its 1-minute limit"
  end=$((SECONDS + 240))
  while squeue -h -j "$jid" -t PD,R,CG 2>/dev/null | grep -q .; do
    [ $SECONDS -lt $end ] || die "job $jid was not stopped at its time limit"
    sleep 1
  done
  if [ "$ACCOUNTING" = 1 ]; then
    # slurmdbd records the job's end a moment after slurmctld has ended it
    end=$((SECONDS + 30))
    until state=$(sacct -n -X -j "$jid" -o State%20 | tr -d ' ') && [ "$state" = TIMEOUT ]; do
      [ $SECONDS -lt $end ] || break
      sleep 1
    done
  else
    sleep 1
    state=$(squeue -h -j "$jid" -t all -o %T 2>/dev/null || true)
  fi
  echo "job $jid ended at $(date -u +%T): state ${state:-?}; signals the job saw: $(tr '\n' ' ' <"$TL/signals" 2>/dev/null)"
  [ "$state" = TIMEOUT ] || die "job $jid ended in state '${state:-?}', not TIMEOUT"
  grep -q SIGTERM "$TL/signals" || die "job $jid got no SIGTERM before the kill"
  if grep -q "not killed" "$TL/signals"; then die "job $jid was not killed"; fi
  rm -f "$TL/hold"
  python "$ROOT/.ci/slurm_check.py" timelimit "$TL/run" \
    "$ROOT/workflows/config/ci/search.yaml" "$TL/timelimit.yaml"
  (cd "$TL/run" && snakemake "${tl_smk[@]}" --unlock) >/dev/null 2>&1
  echo "+ snakemake --unlock; snakemake ... --profile ${PROFILE#"$ROOT"/} (rerun-incomplete: true)"
  (cd "$TL/run" && snakemake "${tl_smk[@]}" --profile "$PROFILE" "${SITE[@]}" "${FAST[@]}") \
    >"$TL/resume.log" 2>&1 || { tail -n 40 "$TL/resume.log"; die "the resumed run failed"; }
}

say "started together: the pipelines ($PIPELINES) on SLURM, the same locally$([ $TIMELIMIT = 1 ] && echo ", the time-limit test")"
for p in $PIPELINES; do
  echo "+ snakemake -s workflows/Snakefile --configfile workflows/config/ci/$p.yaml --profile ${PROFILE#"$ROOT"/} ${SITE[*]} ${FAST[*]}"
  start "slurm-$p" slurm_pipeline "$p"
done
echo "+ snakemake -s workflows/Snakefile --configfile workflows/config/ci/<pipeline>.yaml --profile workflows/profiles/local --cores $(nproc)   # one after another"
start local local_pipelines
if [ $TIMELIMIT = 1 ]; then
  # a job killed by SLURM at its runtime (SIGTERM, then SIGKILL) while snakemake is gone too
  TL=$WORK/timelimit
  mkdir -p "$TL"
  start timelimit timelimit_test
fi

for p in $PIPELINES; do
  finish "slurm-$p"
  say "$p on SLURM: finished"
  grep -E 'lowered to|Using profile|status quer' "$WORK/slurm-$p.log" || true
  tail -n 3 "$WORK/slurm-$p.log"
done
finish local
say "the same with --profile local: finished"
grep -E '^=== |steps \(100%\) done' "$WORK/local.log"

say "SLURM job id of every job (from snakemake's log), checked against its job counts"
python "$ROOT/.ci/slurm_check.py" jobs "$WORK" $PIPELINES
if [ "$ACCOUNTING" = 1 ]; then
  say "sacct: the jobs above, as SLURM accounting recorded them"
  sacct -X -j "$(cat "$WORK/slurm-jobids.txt")" \
    --format=JobID,State,Elapsed,AllocCPUS,ReqMem,Timelimit,Comment%45
fi

say "compare every output of the SLURM runs with the local runs"
python "$ROOT/.ci/slurm_check.py" compare "$WORK" $PIPELINES

if [ $TIMELIMIT = 1 ]; then
  finish timelimit
  say "time limit: a job killed by SLURM at its runtime, snakemake killed too, then resumed"
  cat "$WORK/timelimit.log"
  python "$ROOT/.ci/slurm_check.py" resumed "$TL/run" "$WORK/local/search"
fi

say "SLURM CI passed (accounting=$ACCOUNTING); work folder $WORK"
