#!/usr/bin/env bash
# Install the single-node SLURM cluster's Debian packages (slurmctld, slurmd, the client
# commands and munge; no accounting daemon). Does nothing when they are already there.
# Needs root and apt-get.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge)
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: installing ${packages[*]} needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
# The package lists may be missing or stale: update them only when the first try fails.
install 2>/dev/null || { apt-get update -qq >/dev/null && install; }
echo "install.sh: installed ${packages[*]}"
