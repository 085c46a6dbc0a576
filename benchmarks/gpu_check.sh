#!/usr/bin/env bash
# One prepared check of the networks and the training loop on a GPU machine (H100 / H200).
#
#   bash benchmarks/gpu_check.sh [EPOCHS]         # default 3 epochs per model
#   GPU_CHECK_COMPILE=1 bash benchmarks/gpu_check.sh   # also with torch.compile (+ minutes)
#
# Installs nothing: $PYTHON (default .venv/bin/python if present, else python3) must have a
# CUDA build of torch and the package's dependencies (numpy, scipy, astropy, h5py, pyyaml,
# jsonschema, tqdm; the toy histograms come from cosmo_sbi/toy.py). It prints
#   1. forward+backward+AdamW samples/s, TFLOP/s and MFU of both paper presets at 64^3, bf16;
#   2. a real train_model run (bf16, TF32) on 1000 synthetic 64^3 histograms made by the real
#      histogram and dataset writers, EPOCHS epochs per model, and the projected time of the
#      paper workload (1000 samples x 100 epochs; target <= 10 min per model on one H100).
# Expected wall time: ~1 min of data preparation plus ~1-2 min per model.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
EPOCHS=${1:-3}
COMPILE=()
[[ "${GPU_CHECK_COMPILE:-0}" == 1 ]] && COMPILE=(--compile)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" - <<'EOF'
import importlib.util
import sys

modules = ("torch", "numpy", "scipy", "astropy", "h5py", "yaml", "jsonschema", "tqdm", "pytest")
missing = [name for name in modules if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: missing Python modules {missing}; expected the package's "
             "dependencies next to a CUDA build of torch")
import torch

if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
EOF

echo "== throughput: paper presets, 64^3, bf16, batch 16"
"$PYTHON" benchmarks/bench_models.py throughput --device cuda "${COMPILE[@]}"

echo "== training: 1000 synthetic 64^3 histograms x $EPOCHS epochs per model, bf16"
LOG=$(mktemp -t gpu_check_train.XXXXXX)  # progress bars and per-epoch log lines
status=0
"$PYTHON" benchmarks/bench_models.py train --device cuda --epochs "$EPOCHS" "${COMPILE[@]}" \
    2> "$LOG" || status=$?
tr '\r' '\n' < "$LOG" | grep -v "it/s" | tail -n 40
rm -f "$LOG"
exit "$status"
