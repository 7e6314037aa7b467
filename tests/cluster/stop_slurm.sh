#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by start_slurm.sh: exactly the daemons named by the pid files in
# STATE_DIR (slurmd, slurmctld, munged, in that order), nothing found by name. Logs and state stay for inspection;
# `rm -rf STATE_DIR` removes them.
#
#   tests/cluster/stop_slurm.sh [STATE_DIR]        # default: $SELFDISTILL_SLURM_DIR or /tmp/selfdistill-slurm
set -euo pipefail

STATE=${1:-${SELFDISTILL_SLURM_DIR:-/tmp/selfdistill-slurm}}
STATE=$(realpath -m "$STATE")

# Stop the process in pid file $1 if it is alive and still runs program $2 (a stale pid may have been recycled).
stop() {
	local file=$1 name=$2 pid
	if [[ ! -s $file ]]; then
		echo "stop_slurm.sh: $name: no pid file ($file)"
		return 0
	fi
	pid=$(<"$file")
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) != "$name" ]]; then
		echo "stop_slurm.sh: $name: not running (stale pid file $file)"
		rm -f "$file"
		return 0
	fi
	kill -TERM "$pid"
	# The daemons shut down cleanly on SIGTERM within a few seconds; SIGKILL only if one hangs.
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "stop_slurm.sh: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$file"
	echo "stop_slurm.sh: $name (pid $pid) stopped"
}

# slurmd first (it reports to slurmctld), munged last (both daemons authenticate through it).
stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munge/munged.pid" munged
rm -f "$STATE/munged.pid"
