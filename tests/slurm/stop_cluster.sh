#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start_cluster.sh started in STATE_DIR, by the PIDs in
# their pid files (slurmd, slurmctld, then munged), wait until they are gone, and remove
# the /etc/slurm/slurm.conf link to STATE_DIR.
#
#   tests/slurm/stop_cluster.sh STATE_DIR
set -uo pipefail

state_dir=$(cd "${1:?usage: stop_cluster.sh STATE_DIR}" && pwd)
status=0
for pid_file in "$state_dir/slurmd.pid" "$state_dir/slurmctld.pid" \
    "$state_dir/munge/munged.pid"; do
    [[ -s "$pid_file" ]] || continue
    pid=$(cat "$pid_file")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop_cluster.sh: PID $pid ($pid_file) ignored SIGTERM; sending SIGKILL" >&2
            kill -9 "$pid" 2>/dev/null || status=1
        fi
    fi
    rm -f "$pid_file"
done
system_conf=/etc/slurm/slurm.conf
if [[ -L "$system_conf" && "$(readlink "$system_conf")" == "$state_dir/slurm.conf" ]]; then
    rm -f "$system_conf"
fi
exit $status
