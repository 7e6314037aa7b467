#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine (controller and compute node are this host), for the live
# test of profiles/slurm (tests/test_slurm.py). Needs root and Debian's packages; no systemd, no accounting database.
#
#   tests/cluster/start_slurm.sh [STATE_DIR]       # default: $SELFDISTILL_SLURM_DIR or /tmp/selfdistill-slurm
#   tests/cluster/stop_slurm.sh  [STATE_DIR]       # stops exactly the daemons started here, by their pid files
#
# Idempotent: daemons already running from STATE_DIR are left alone. Everything it writes (slurm.conf, pid files,
# logs, spool and state directories) lies under STATE_DIR; /etc/slurm/slurm.conf is a symlink to STATE_DIR's copy so
# that sinfo/sbatch/squeue find it without SLURM_CONF.
#
# Exit status: 0 when the node is idle and accepts jobs; 77 when this machine cannot host SLURM at all (not root, no
# apt-get/dpkg, packages not installable), so a caller may skip; 1 for any other failure. Either way the last line
# on stderr says why.
set -euo pipefail

STATE=${1:-${SELFDISTILL_SLURM_DIR:-/tmp/selfdistill-slurm}}
STATE=$(realpath -m "$STATE")
CONF=$STATE/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_SOCKET_DIR=/run/munge # the default socket path compiled into libmunge, where slurm's auth/munge looks
MARKER="# written by selfdistill tests/cluster/start_slurm.sh"
export PATH=$PATH:/usr/sbin:/sbin # the daemons live in sbin, which a non-login root shell may lack

skip() {
	echo "start_slurm.sh: cannot host SLURM here: $*" >&2
	exit 77
}
fail() {
	echo "start_slurm.sh: $*" >&2
	exit 1
}
log() { echo "start_slurm.sh: $*"; }

# Is the process in pid file $1 alive and running program $2? (A stale pid file may name a recycled pid.)
alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}

[[ $(id -u) -eq 0 ]] || skip "must run as root (munged, slurmctld and slurmd are started directly)"
command -v dpkg-query >/dev/null || skip "not a Debian-like system (no dpkg-query)"

# The test suite runs in two processes that may install the browser and SLURM at the same time: apt and dpkg take
# one at a time, so each apt-get waits for this lock instead of failing on dpkg's.
APT_LOCK=/tmp/selfdistill-apt.lock

# --- 1. packages -------------------------------------------------------------------------------------------------
mkdir -p "$STATE"
missing=()
for pkg in munge slurmctld slurmd slurm-client; do
	dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || skip "apt-get not available to install ${missing[*]}"
	log "installing ${missing[*]} (log: $STATE/apt.log)"
	# Debian's maintainer scripts would start munge/slurm through their init scripts; a policy-rc.d that answers
	# 101 forbids that, so that the only daemons running are the ones this script starts and can stop by pid file.
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	apt_ok=0
	if DEBIAN_FRONTEND=noninteractive flock -w 900 "$APT_LOCK" apt-get update >"$STATE/apt.log" 2>&1 &&
		DEBIAN_FRONTEND=noninteractive flock -w 900 "$APT_LOCK" apt-get install -y --no-install-recommends "${missing[@]}" \
			>>"$STATE/apt.log" 2>&1; then
		apt_ok=1
	fi
	((own_policy)) && rm -f "$policy"
	((apt_ok)) || skip "apt-get could not install ${missing[*]} (see $STATE/apt.log)"
fi
for bin in munged slurmctld slurmd sinfo sbatch squeue scontrol; do
	command -v "$bin" >/dev/null || fail "$bin not found after installing the packages"
done

# --- 2. already up? ----------------------------------------------------------------------------------------------
host=$(hostname -s)
node_state() { sinfo --noheader --nodes "$host" --format %T 2>/dev/null | head -n 1; }
if alive "$STATE/munged.pid" munged && alive "$STATE/slurmctld.pid" slurmctld && alive "$STATE/slurmd.pid" slurmd &&
	[[ $(node_state) == idle || $(node_state) == mixed || $(node_state) == allocated ]]; then
	log "already running (state: $STATE, node $host $(node_state))"
	exit 0
fi

# --- 3. munge: key and daemon -------------------------------------------------------------------------------------
# munged refuses to run as root; the Debian package created the 'munge' user. It needs its own writable directory
# for the pid and log files, and the socket directory that clients expect.
id munge >/dev/null 2>&1 || fail "user 'munge' is missing although the munge package is installed"
mkdir -p /etc/munge "$MUNGE_SOCKET_DIR" "$STATE/munge" /var/lib/munge
if [[ ! -s $MUNGE_KEY ]]; then
	log "creating $MUNGE_KEY"
	if command -v mungekey >/dev/null; then
		mungekey --create --keyfile="$MUNGE_KEY"
	else
		dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
	fi
fi
chown munge:munge "$MUNGE_KEY" "$MUNGE_SOCKET_DIR" "$STATE/munge" /var/lib/munge
chmod 0400 "$MUNGE_KEY"
chmod 0700 "$STATE/munge"
chmod 0755 "$MUNGE_SOCKET_DIR"
if ! alive "$STATE/munged.pid" munged; then
	log "starting munged"
	rm -f "$MUNGE_SOCKET_DIR/munge.socket.2" "$MUNGE_SOCKET_DIR/munge.socket.2.lock"
	runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" ||
		fail "munged did not start (see $STATE/munge/munged.log)"
	# The pid file lives in the munge-owned directory; keep a root-visible link next to the others.
	ln -sfn munge/munged.pid "$STATE/munged.pid"
fi
for _ in $(seq 50); do
	munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
	sleep 0.1
done
munge -n </dev/null | unmunge >/dev/null 2>&1 || fail "munge round trip failed (see $STATE/munge/munged.log)"

# --- 4. slurm.conf ------------------------------------------------------------------------------------------------
# `slurmd -C` prints this machine's node line (NodeName=<host> CPUs=… Boards=… SocketsPerBoard=… CoresPerSocket=…
# ThreadsPerCore=… RealMemory=…): exactly what the node really has, so slurmd never registers as "too small".
node_line=$(slurmd -C | grep '^NodeName=' | head -n 1) || fail "slurmd -C could not describe this machine"
[[ $node_line == "NodeName=$host "* ]] || node_line="NodeName=$host ${node_line#NodeName=* }"
mkdir -p "$STATE/ctld" "$STATE/slurmd"
cat >"$CONF.new" <<EOF
$MARKER
# A single-node test cluster: this host ($host) is controller and only compute node. No accounting database:
# sacct has nothing to report, so the Snakemake plugin must use squeue for job status (--slurm-status-command squeue).
ClusterName=selfdistill
# Addresses pinned to loopback: works whether or not the hostname resolves.
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
# No cgroups in containers: track job processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
# Cores and memory are consumable, so jobs share the node as far as their requests allow.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A node that was down (e.g. slurmd restarted) comes back by itself.
ReturnToService=2
# Finished jobs stay visible to squeue (--states=all) this many seconds; the plugin trusts squeue only when this is
# at least 3 x its --slurm-init-seconds-before-status-checks.
MinJobAge=300
SlurmctldDebug=info
SlurmdDebug=info
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"

# The client commands (and the Snakemake plugin, which calls them) read /etc/slurm/slurm.conf. Never replace a
# configuration this script did not write.
mkdir -p /etc/slurm
if [[ -e $ETC_CONF || -L $ETC_CONF ]] && [[ $(readlink -f "$ETC_CONF") != "$CONF" ]]; then
	if ! head -n 1 "$ETC_CONF" 2>/dev/null | grep -qxF "$MARKER"; then
		fail "$ETC_CONF exists and was not written by this script; refusing to replace it"
	fi
fi
ln -sfn "$CONF" "$ETC_CONF"

# --- 5. daemons ---------------------------------------------------------------------------------------------------
# Started directly (no systemd in containers); each daemonises and writes the pid file named in slurm.conf.
if ! alive "$STATE/slurmctld.pid" slurmctld; then
	log "starting slurmctld"
	slurmctld -f "$CONF" || fail "slurmctld did not start (see $STATE/slurmctld.log)"
fi
for _ in $(seq 100); do
	scontrol ping 2>/dev/null | grep -q 'is UP' && break
	sleep 0.2
done
scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld does not answer (see $STATE/slurmctld.log)"
if ! alive "$STATE/slurmd.pid" slurmd; then
	log "starting slurmd"
	slurmd -f "$CONF" || fail "slurmd did not start (see $STATE/slurmd.log)"
fi

# --- 6. wait for the node -----------------------------------------------------------------------------------------
state=""
for _ in $(seq 120); do
	state=$(node_state)
	case $state in
	idle | mixed | allocated) break ;;
	drain* | down)
		# e.g. left drained by an earlier run with another configuration: give it back to the scheduler.
		scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
		;;
	esac
	sleep 0.5
done
[[ $state == idle || $state == mixed || $state == allocated ]] ||
	fail "node $host is '${state:-unknown}' after 60 s, not idle (see $STATE/slurmctld.log, $STATE/slurmd.log)"
log "up: node $host $state, partition debug (state: $STATE)"
