#!/usr/bin/env bash
# CI entry point for the SLURM tests (called by .ci/run): install the Debian packages if
# needed, start a single-node cluster in a temporary folder, run `pytest -m slurm` against
# it, and always stop the daemons it started (by PID) and remove the folder.
#
#   tests/slurm/run_slurm_ci.sh [extra pytest arguments]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
"$repo/tests/slurm/install.sh"

state_dir=$(mktemp -d "${TMPDIR:-/tmp}/cosmo_sbi_slurm.XXXXXX")
cleanup() {
    "$repo/tests/slurm/stop_cluster.sh" "$state_dir" || true
    rm -rf "$state_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run the EXIT trap on Ctrl-C / kill too

"$repo/tests/slurm/start_cluster.sh" "$state_dir"
# The workflow's jobs run `cosmo-sbi` and Snakemake from this environment on the node.
export PATH="$repo/.venv/bin:$PATH"
COSMO_SBI_SLURM=1 "$repo/.venv/bin/pytest" -m slurm "$@"
