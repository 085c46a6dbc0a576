#!/usr/bin/env bash
# Create .venv (once) and install cosmo_sbi with its test, SLURM and search extras. Idempotent.
# torch==2.13.0 first: the CPU build (a plain `torch` requirement can pull a multi-GB CUDA
# build); on a GPU node install the CUDA build of your choice before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip show -q torch >/dev/null 2>&1 || .venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test,slurm,search]"
