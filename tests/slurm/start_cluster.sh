#!/usr/bin/env bash
# Start a single-node SLURM cluster (munged, slurmctld, slurmd; no accounting daemon)
# whose configuration, state, logs and PID files all live in STATE_DIR.
#
#   tests/slurm/start_cluster.sh STATE_DIR [N_FAKE_GPUS]
#
# Links /etc/slurm/slurm.conf to STATE_DIR/slurm.conf (SLURM commands read it there; the
# executor plugin's job steps drop SLURM_CONF from their environment, so it has to be the
# default path) and waits until the node is idle. Refuses to replace a real slurm.conf.
# N_FAKE_GPUS (default 2, at least 1) GPUs backed by empty files let jobs ask for --gpus without a GPU.
# Stop with tests/slurm/stop_cluster.sh STATE_DIR. Needs root (the daemons run as root).
set -euo pipefail

state_dir=${1:?usage: start_cluster.sh STATE_DIR [N_FAKE_GPUS]}
n_gpus=${2:-2}
trap 'echo "start_cluster.sh: failed at line $LINENO; logs in $state_dir" >&2' ERR
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
host=$(hostname -s)

for program in munged slurmctld slurmd sinfo; do
    command -v "$program" >/dev/null || {
        echo "start_cluster.sh: $program not found; run tests/slurm/install.sh" >&2
        exit 1
    }
done
if [[ -e "$state_dir/slurmctld.pid" ]]; then
    echo "start_cluster.sh: $state_dir already holds a cluster; stop it first" >&2
    exit 1
fi
system_conf=/etc/slurm/slurm.conf
# A link left by a cluster whose state folder is gone may be replaced; nothing else.
if [[ -e "$system_conf" || (-L "$system_conf" && -e "$(readlink "$system_conf")") ]]; then
    echo "start_cluster.sh: $system_conf exists ($(readlink -f "$system_conf")); is" \
        "another cluster running? Stop it (tests/slurm/stop_cluster.sh) first" >&2
    exit 1
fi

# munged runs as the munge user: its folder must be reachable and owned by it.
chmod 755 "$state_dir"
mkdir -p "$state_dir/munge" "$state_dir/spool" "$state_dir/state"
chown munge:munge "$state_dir/munge"
chmod 755 "$state_dir/munge"
if [[ ! -s /etc/munge/munge.key ]]; then
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
fi
munge_socket="$state_dir/munge/munge.socket"
runuser -u munge -- munged --socket="$munge_socket" \
    --pid-file="$state_dir/munge/munged.pid" --log-file="$state_dir/munge/munged.log" \
    --seed-file="$state_dir/munge/munged.seed"

# The node as slurmd sees it (CPUs, sockets, memory), minus the uptime field.
node_line=$(slurmd -C | head -n 1 | sed 's/ UpTime=.*//')
cat > "$state_dir/slurm.conf" <<CONF
ClusterName=cosmosbi
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$state_dir/state
SlurmdSpoolDir=$state_dir/spool
SlurmctldPidFile=$state_dir/slurmctld.pid
SlurmdPidFile=$state_dir/slurmd.pid
SlurmctldLogFile=$state_dir/slurmctld.log
SlurmdLogFile=$state_dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: Snakemake's status checks with
# --slurm-status-command squeue need MinJobAge >= 3 x its initial wait.
MinJobAge=600
MpiDefault=none
KillWait=5
GresTypes=gpu
$node_line NodeAddr=127.0.0.1 Gres=gpu:$n_gpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# One placeholder file per fake GPU (SLURM needs a File= per device, else the node drains).
for ((gpu = 0; gpu < n_gpus; gpu++)); do : > "$state_dir/fake_gpu$gpu"; done
echo "NodeName=$host Name=gpu File=$state_dir/fake_gpu[0-$((n_gpus - 1))]" \
    > "$state_dir/gres.conf"
mkdir -p "$(dirname "$system_conf")"
ln -sfn "$state_dir/slurm.conf" "$system_conf"
# The daemons read slurm.conf, and gres.conf beside it, from the state folder.
export SLURM_CONF=$state_dir/slurm.conf

slurmctld -i
slurmd
for _ in $(seq 1 60); do
    node_state=$(sinfo -h -o %t 2>/dev/null || true)
    case "$node_state" in
        idle) echo "SLURM cluster up: node $host idle, $system_conf -> $state_dir/slurm.conf"; exit 0 ;;
        drain* | drng) scontrol update nodename="$host" state=resume || true ;;
    esac
    sleep 0.5
done
echo "start_cluster.sh: node not idle after 30 s (state '${node_state:-}'); see" \
    "$state_dir/slurmctld.log and $state_dir/slurmd.log" >&2
exit 1
