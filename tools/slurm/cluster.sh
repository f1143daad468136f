#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for testing the workflow's SLURM profile
# (tests/test_slurm.py). Debian packages slurm-wlm and munge; root; no systemd needed.
#
#   tools/slurm/cluster.sh install          apt-get install slurm-wlm munge (fast when present)
#   tools/slurm/cluster.sh start STATEDIR   write a config into STATEDIR, start munged,
#                                           slurmctld and slurmd, wait for the node to be idle
#   tools/slurm/cluster.sh stop STATEDIR    cancel jobs, stop exactly the daemons of STATEDIR
#   tools/slurm/cluster.sh status STATEDIR
#
# Then: export SLURM_CONF=STATEDIR/slurm.conf. Everything (config, munge key and socket,
# state, spool, logs, pid files) lives in STATEDIR, with one exception: while the cluster
# runs, /etc/slurm/slurm.conf is a symlink to STATEDIR/slurm.conf, because the executor
# plugin's job step drops SLURM_CONF before its inner `srun` (an existing regular file there
# is left alone, with a warning). One cluster per machine at a time.
#
# Environment: SLURM_PARTITION (default main), SLURM_CTLD_PORT / SLURM_SLURMD_PORT (default
# 6817 / 6818), SLURM_NODE_MEM_MB (memory the node advertises, default the larger of 64 GB
# and the real memory: nothing enforces it here, and it lets the profile's real per-job
# requests fit), SLURM_START_TIMEOUT (seconds, default 60).
set -euo pipefail

me=$(basename "$0")
partition=${SLURM_PARTITION:-main}
ctld_port=${SLURM_CTLD_PORT:-6817}
slurmd_port=${SLURM_SLURMD_PORT:-6818}
start_timeout=${SLURM_START_TIMEOUT:-60}
default_conf=/etc/slurm/slurm.conf
# slurmctld refuses to start unless SlurmctldHost is this host's short name
node=$(hostname -s)
daemons="munged slurmctld slurmd"

say() { echo "$me: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

have_binaries() {
  local b
  for b in munged munge slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
  done
}

cmd_install() {
  if have_binaries; then
    say "slurm-wlm and munge present ($(dpkg-query -W -f '${Version}' slurm-wlm 2>/dev/null || echo '?'))"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "installing slurm-wlm and munge needs root"
  command -v apt-get >/dev/null || die "no apt-get: install slurm-wlm and munge by hand"
  export DEBIAN_FRONTEND=noninteractive
  # keep the packages' scripts from starting system-wide daemons of their own
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && added=1
  fi
  local rc=0
  { apt-cache show slurm-wlm >/dev/null 2>&1 || apt-get update -qq; } \
    && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; } \
    || rc=$?
  [ "$added" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get install slurm-wlm munge failed (exit $rc)"
  have_binaries || die "slurm-wlm and munge installed, but some of their programs are missing"
  say "installed slurm-wlm $(dpkg-query -W -f '${Version}' slurm-wlm)"
}

# --- processes -----------------------------------------------------------------------------

alive() {  # PID: running and not a zombie (daemons are reaped late by PID 1 here)
  local state
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

pid_of() {  # STATEDIR DAEMON: the daemon's pid if its pid file names a live process of that name
  local file pid
  file=$(pidfile "$1" "$2")
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' < "$file")
  [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  echo "$pid"
}

pidfile() { echo "$1/run/$2.pid"; }

wait_until() {  # SECONDS COMMAND...: poll every 0.2 s
  local i
  for ((i = 0; i < $1 * 5; i++)); do
    "${@:2}" && return 0
    sleep 0.2
  done
  return 1
}

# slurmstepd daemons that run our jobs outlive slurmd by design; they carry our config
stepds_of() {
  local p
  for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$1/slurm.conf" && echo "$p"
  done
  return 0
}

descendants() {  # PID: every process below it
  local c
  for c in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$c"
    descendants "$c"
  done
}

# --- start ---------------------------------------------------------------------------------

write_conf() {  # STATEDIR
  local d=$1 cpus mem
  cpus=$(nproc --all)
  mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.95 }' /proc/meminfo)
  mem=${SLURM_NODE_MEM_MB:-$((mem > 65536 ? mem : 65536))}
  cat > "$d/slurm.conf.tmp" <<EOF
# Written by tools/slurm/cluster.sh for a single-node test cluster; rewritten on each start.
ClusterName=overdeq-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket
StateSaveLocation=$d/ctld
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$(pidfile "$d" slurmctld)
SlurmdPidFile=$(pidfile "$d" slurmd)
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
# no cgroups, no accounting database: plain process tracking, nothing enforced or recorded
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
InactiveLimit=0
KillWait=5
# finished jobs stay visible to squeue this long: the executor plugin polls with squeue
# (no accounting) and only trusts it when MinJobAge >= 3 x its first-poll delay
MinJobAge=1800
# the node advertises the memory configured below, not what it measures (see header)
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv -f "$d/slurm.conf.tmp" "$d/slurm.conf"
}

link_default_conf() {  # STATEDIR
  if [ -L "$default_conf" ] || [ ! -e "$default_conf" ]; then
    mkdir -p "$(dirname "$default_conf")"
    ln -sfn "$1/slurm.conf" "$default_conf"
  else
    say "warning: $default_conf is a regular file and is left alone; srun inside jobs will read it"
  fi
}

node_ready() {
  case "$(sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n1)" in
    idle | mixed | allocated) return 0 ;;
    down* | drain* | fail*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
  esac
  return 1
}

cmd_start() {
  [ $# = 1 ] || usage
  [ "$(id -u)" = 0 ] || die "starting slurmd needs root"
  have_binaries || die "slurm-wlm and munge are not installed: run '$0 install' first"
  mkdir -p "$1"
  local d
  d=$(cd "$1" && pwd -P)
  export SLURM_CONF=$d/slurm.conf
  local running=0 n
  for n in $daemons; do pid_of "$d" "$n" >/dev/null && running=$((running + 1)); done
  if [ "$running" = 3 ]; then
    say "cluster of $d already running"
    link_default_conf "$d"
    return 0
  fi
  [ "$running" = 0 ] || { say "stopping the leftovers of an earlier start"; cmd_stop "$d"; }
  mkdir -p "$d"/{run,log,ctld,spool,munge}
  # munged insists on a socket folder nobody else may write, and a private key
  chmod 755 "$d" "$d/run" "$d/log"
  chmod 711 "$d/munge"
  # from here on a failed start stops whatever it had started
  trap 'rc=$?; [ $rc = 0 ] || { say "start failed (logs in $d/log)"; cmd_stop "$d" >/dev/null 2>&1 || true; }' EXIT
  [ -s "$d/munge/munge.key" ] || dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$d/munge/munge.key"
  write_conf "$d"
  link_default_conf "$d"

  munged --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" \
    --pid-file="$(pidfile "$d" munged)" --log-file="$d/log/munged.log" \
    --seed-file="$d/munge/munged.seed" || die "munged did not start (see $d/log/munged.log)"
  wait_until 10 pid_of "$d" munged >/dev/null || die "munged is not running (see $d/log/munged.log)"
  munge -n -S "$d/munge/munge.socket" | unmunge -S "$d/munge/munge.socket" >/dev/null \
    || die "munge cannot decode its own credential (see $d/log/munged.log)"

  # -c: forget jobs and node states of an earlier cluster in this folder
  slurmctld -c -f "$SLURM_CONF" || die "slurmctld did not start (see $d/log/slurmctld.log)"
  wait_until 20 pid_of "$d" slurmctld >/dev/null || die "slurmctld is not running (see $d/log/slurmctld.log)"
  slurmd -f "$SLURM_CONF" || die "slurmd did not start (see $d/log/slurmd.log)"
  wait_until 20 pid_of "$d" slurmd >/dev/null || die "slurmd is not running (see $d/log/slurmd.log)"
  if ! wait_until "$start_timeout" node_ready; then
    sinfo -N -l >&2 || true
    tail -n 20 "$d/log/slurmctld.log" "$d/log/slurmd.log" >&2 || true
    die "node $node did not become idle within $start_timeout s"
  fi
  trap - EXIT
  say "cluster up: partition $partition, node $node ($(nproc --all) CPUs); export SLURM_CONF=$SLURM_CONF"
}

# --- stop ----------------------------------------------------------------------------------

stop_daemon() {  # STATEDIR DAEMON
  local pid
  pid=$(pid_of "$1" "$2") || { rm -f "$(pidfile "$1" "$2")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 30 eval "! alive $pid"; then
    say "$2 (pid $pid) ignored SIGTERM for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 eval "! alive $pid" || { say "$2 (pid $pid) survived SIGKILL"; return 1; }
  fi
  rm -f "$(pidfile "$1" "$2")"
}

cmd_stop() {
  [ $# = 1 ] || usage
  [ -d "$1" ] || die "no such state folder: $1"
  local d rc=0 p
  d=$(cd "$1" && pwd -P)
  export SLURM_CONF=$d/slurm.conf
  if pid_of "$d" slurmctld >/dev/null; then
    scancel --quiet --partition="$partition" >/dev/null 2>&1 || true
    wait_until 15 test -z "$(squeue -h -t PD,CF,R,CG -o %i 2>/dev/null)" || true
  fi
  stop_daemon "$d" slurmd || rc=1
  stop_daemon "$d" slurmctld || rc=1
  for p in $(stepds_of "$d"); do
    say "killing leftover slurmstepd $p and the job processes under it"
    kill -KILL $(descendants "$p") "$p" 2>/dev/null || true
  done
  stop_daemon "$d" munged || rc=1
  if [ -L "$default_conf" ] && [ "$(readlink "$default_conf")" = "$d/slurm.conf" ]; then
    rm -f "$default_conf"
  fi
  [ "$rc" = 0 ] || die "some daemons of $d could not be stopped"
  say "cluster of $d stopped"
}

cmd_status() {
  [ $# = 1 ] || usage
  local d n pid rc=0
  d=$(cd "$1" && pwd -P)
  export SLURM_CONF=$d/slurm.conf
  for n in $daemons; do
    if pid=$(pid_of "$d" "$n"); then echo "$n: running (pid $pid)"; else echo "$n: stopped"; rc=3; fi
  done
  [ "$rc" = 0 ] && { sinfo -N -o '%N %P %T %c %m'; squeue; }
  return $rc
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
