#!/usr/bin/env bash
# The README's test command: set up, lint, run the test suite, then (as root with apt, e.g.
# in CI) the tests against a real single-node SLURM cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check cosmo_sbi tests benchmarks
echo "== snakemake --lint"
lint_dir=$(mktemp -d)
(cd "$lint_dir" && snakemake -s "$OLDPWD/Snakefile" --lint)
rm -rf "$lint_dir"
echo "== pytest"
pytest -m "not slurm" "$@"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -f tests/slurm/run_slurm_ci.sh ]; then
  echo "== SLURM"
  bash tests/slurm/run_slurm_ci.sh
else
  echo "== SLURM tests skipped (they need root and apt-get to install a single-node cluster)"
fi
