#!/usr/bin/env bash
# The paper workload on one GPU node (one H100/H200, 16 cores), in one prepared run of
# at most 9.6 minutes (start-up excluded); every stage runs under `timeout`, so the script
# always ends and prints what it measured.
#
#   bash benchmarks/gpu_check.sh               # on the GPU node, from the repository root
#   bash benchmarks/gpu_check.sh --cpu-smoke   # the same code paths, tiny, on CPU (< 60 s)
#
# Python: $PYTHON, else .venv/bin/python if present, else python3. It needs a CUDA build
# of torch and the package's dependencies (snakemake, astropy, jsonschema, h5py, scipy,
# matplotlib, pyyaml, tqdm; the toy histograms come from cosmo_sbi/toy.py); nothing is
# installed, nothing is fetched. On a node without internet whose python lacks some of
# them, set WHEELHOUSE to a folder of wheels (pip download --only-binary=:all: ... on a
# machine with internet): they are installed with pip --no-index --no-deps into a
# temporary folder first. The package itself is used from this working tree (PYTHONPATH;
# a `cosmo-sbi` shim is put on PATH for the workflow's jobs).
#
# Environment: GPU_CHECK_EPOCHS (10) epochs per network in the pipeline, GPU_CHECK_WORK
# (a temporary folder) for the data, GPU_CHECK_OUT (unset) a folder that receives
# gpu_check.tar.gz (training summaries, histories, metrics, report, logs, stage times),
# GPU_CHECK_OVERLAY (unset) one more config overlay for the pipeline (e.g. a simulation
# block size), CORES (all) for the simulations.
#
# What it prints, in this order (seconds are each stage's budget):
#   0. device and versions
#   1. [150 s, GPU, beside 2] forward+backward+clip+AdamW samples/s, TFLOP/s, MFU (dense
#      bf16 peak) and peak memory of both paper networks at 64^3, batch 16, with every fast
#      path on and each one off (bf16, fused AdamW, channels_last_3d), torch.compile, and
#      the ViT's SDPA kernels (math / flash / efficient / cudnn);
#   2. [150 s, GPU, beside 1..3] train_model on 1000 synthetic 64^3 histograms (device-
#      resident data), 3 epochs per paper network, and the projection to 100 epochs;
#   3. [295 s, CPU, from t=0 beside 1 and 2] the pipeline's first half through snakemake
#      on all but two cores: the paper design (1000 + 100) with the embedded simulator at
#      128^3, 64^3 histograms, the dataset file: wall time and files per stage;
#   4. [265 s, GPU] the pipeline's second half: both paper networks for GPU_CHECK_EPOCHS
#      epochs on the pipeline's dataset, evaluation, report; wall time per stage, the
#      training summaries and the test-split slopes.
# The sections 1 and 2 run while 3 simulates on the other cores, as a node would be used.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SMOKE=0
[[ "${1:-}" == "--cpu-smoke" ]] && SMOKE=1
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
WORK=${GPU_CHECK_WORK:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$WORK/bin" "$WORK/logs"
WORK=$(cd "$WORK" && pwd)
if [[ -n "${WHEELHOUSE:-}" ]]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" \
        "$WHEELHOUSE"/*.whl || { echo "gpu_check: installing $WHEELHOUSE failed"; exit 1; }
    export PYTHONPATH="$WORK/site"
    export PATH="$WORK/site/bin:$PATH"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
printf '#!/usr/bin/env bash\nexec "%s" -m cosmo_sbi "$@"\n' "$PYTHON" > "$WORK/bin/cosmo-sbi"
chmod +x "$WORK/bin/cosmo-sbi"
export PATH="$WORK/bin:$PATH"
CORES=${CORES:-$(nproc)}
STAGES="$WORK/stages.tsv"
printf 'stage\tseconds\tstatus\n' > "$STAGES"

if ((SMOKE)); then
    DEVICE=cpu EPOCHS=1 SIM_CORES=2
    THROUGHPUT=(--device cpu --preset small --grid-size 16 --batch-size 2 --steps 1
                --warmup-steps 1 --variants default,sdpa-math)
    SYNTHETIC=(--device cpu --preset small --grid-size 8 --samples 12 --epochs 2
               --batch-size 4)
    T_THROUGHPUT=120 T_SYNTHETIC=120 T_SIMULATE=120 T_HISTOGRAM=120 T_DATASET=120
    T_TRAIN=120 T_EVALUATE=120 T_REPORT=120
else
    DEVICE=cuda EPOCHS=${GPU_CHECK_EPOCHS:-10} SIM_CORES=$((CORES > 4 ? CORES - 2 : CORES))
    THROUGHPUT=(--device cuda --variants
                default,no-bf16,no-fused,no-channels-last,sdpa-math,sdpa-flash,sdpa-efficient,sdpa-cudnn,compile)
    SYNTHETIC=(--device cuda --epochs 3 --data-on-device true)
    T_THROUGHPUT=150 T_SYNTHETIC=150 T_SIMULATE=180 T_HISTOGRAM=90 T_DATASET=25 T_TRAIN=100
    T_EVALUATE=45 T_REPORT=20
fi

# run NAME SECONDS COMMAND...: time a stage under `timeout`, its output in logs/NAME.log
# (the last lines shown unless it succeeded), record it in stages.tsv; never abort
run() {
    local name=$1 limit=$2 start status seconds word=ok
    shift 2
    local log="$WORK/logs/${name// /_}.log"
    start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    status=$?
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    ((status == 124 || status == 137)) && word="timeout (${limit} s)"
    ((status != 0 && status != 124 && status != 137)) && word="failed ($status)"
    printf '%s\t%s\t%s\n' "$name" "$seconds" "$word" >> "$STAGES"
    echo "-- $name: $seconds s, $word"
    [[ $word == ok ]] || tr '\r' '\n' < "$log" | grep -v "it/s\|s/it" | tail -n 15
    return "$status"
}

# finish: the stage times and, with GPU_CHECK_OUT, the archive; also when cut short
finish() {
    echo "== stage times"
    column -t -s $'\t' "$STAGES" 2>/dev/null || cat "$STAGES"
    [[ -n "${GPU_CHECK_OUT:-}" ]] || return 0
    mkdir -p "$GPU_CHECK_OUT"
    (cd "$WORK" && tar -czf "$GPU_CHECK_OUT/gpu_check.tar.gz" --ignore-failed-read \
        stages.tsv overlay.yaml logs synthetic/*/history.csv \
        synthetic/*/training_summary.json pipeline/results/models/*/history.csv \
        pipeline/results/models/*/training_summary.json \
        pipeline/results/evaluation/*/metrics.json pipeline/results/report/summary.md \
        pipeline/results/logs/train pipeline/results/logs/evaluate 2>/dev/null)
    echo "results in $GPU_CHECK_OUT/gpu_check.tar.gz"
}
trap finish EXIT
trap 'exit 143' TERM INT

echo "== 0. device and versions (work folder $WORK)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
echo "$(nproc) CPU cores; simulations on $SIM_CORES"
"$PYTHON" - "$DEVICE" <<'EOF' || exit 1
import importlib.util
import sys

modules = ("torch", "numpy", "scipy", "astropy", "h5py", "yaml", "jsonschema", "tqdm",
           "matplotlib", "snakemake")
missing = [name for name in modules if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: missing Python modules {missing}; expected the package's "
             "dependencies next to a CUDA build of torch (or WHEELHOUSE, see the header)")
import torch

if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device")
name = torch.cuda.get_device_name() if sys.argv[1] == "cuda" else "cpu"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {name}")
EOF

# --- the pipeline's configuration: paper scale (config.yaml), embedded 128^3, E epochs
OVERLAY="$WORK/overlay.yaml"
if ((SMOKE)); then
    cat > "$OVERLAY" <<EOF
design: {latin_hypercube: {n_simulations: 3}, fiducial: {n_simulations: 1}}
posterior: {methods: []}
learning_curve: {fractions: []}
histogram: {bins: [16, 16, 16]}
simulator: {embedded: {grid_size: 32}}
models: {cnn: {preset: small}, vit: {preset: small}}
training: {epochs: $EPOCHS, batch_size: 2, warmup_epochs: 0, device: cpu, gpus: 0,
           early_stopping_patience: $EPOCHS, data_on_device: true}
EOF
else
    cat > "$OVERLAY" <<EOF
simulator: {embedded: {grid_size: 128, threads: 1}}
learning_curve: {fractions: []}
training: {epochs: $EPOCHS, warmup_epochs: 1, device: cuda, gpus: 1,
           early_stopping_patience: $EPOCHS, data_on_device: true}
EOF
fi
CONFIGS=("$REPO/config.yaml" "$OVERLAY")
[[ -n "${GPU_CHECK_OVERLAY:-}" ]] && CONFIGS+=("$(realpath "$GPU_CHECK_OVERLAY")")
SNAKEMAKE=("$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" --directory "$WORK/pipeline"
           --configfile "${CONFIGS[@]}" --keep-going --nolock --rerun-incomplete --quiet rules --resources gpu=1)
# a stage's log: snakemake's, and the jobs' own under pipeline/results/logs
mkdir -p "$WORK/pipeline"

first_half() {
    # no BLAS oversubscription; each block job holds simulator.embedded.threads cores
    # (1 at 128^3: SIM_CORES blocks at once, each one FFT thread)
    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    local start=$SECONDS
    run "3a simulate" "$T_SIMULATE" "${SNAKEMAKE[@]}" --cores "$SIM_CORES" --until lightcones
    local made
    made=$(find "$WORK/pipeline/results/sims" -name lightcone.h5 | wc -l)
    echo "light cones made: $made ($(awk -v n="$made" -v t=$((SECONDS - start)) \
        'BEGIN {printf "%.2f", n / (t > 0 ? t : 1)}') per second on $SIM_CORES cores)"
    run "3b histograms" "$T_HISTOGRAM" "${SNAKEMAKE[@]}" --cores "$SIM_CORES" --until histogram
    echo "histograms made: $(find "$WORK/pipeline/results/histograms" -name '*.h5' | wc -l)"
    run "3c dataset" "$T_DATASET" "${SNAKEMAKE[@]}" --cores "$SIM_CORES" \
        results/dataset.h5
    ls -l "$WORK/pipeline/results/dataset.h5" 2>/dev/null
}

echo "== 3. pipeline, first half (in the background, log $WORK/logs/first_half.log)"
first_half > "$WORK/logs/first_half.log" 2>&1 &
FIRST_HALF=$!

echo "== 1. throughput per model and fast path"
run "1 throughput" "$T_THROUGHPUT" "$PYTHON" benchmarks/bench_models.py throughput \
    "${THROUGHPUT[@]}"
grep -v "^torch" "$WORK/logs/1_throughput.log"

echo "== 2. train_model on synthetic 64^3 histograms, device-resident data"
run "2 synthetic training" "$T_SYNTHETIC" "$PYTHON" benchmarks/bench_models.py train \
    "${SYNTHETIC[@]}" --directory "$WORK/synthetic"
grep "^synthetic\|^cnn\|^vit" "$WORK/logs/2_synthetic_training.log"

echo "== 3. pipeline, first half (waiting for it)"
wait "$FIRST_HALF"
cat "$WORK/logs/first_half.log"

echo "== 4. pipeline, second half: training, evaluation, report"
if [[ ! -f "$WORK/pipeline/results/dataset.h5" ]]; then
    echo "no dataset: the first half did not finish within its budget (see its stage times);"
    echo "section 4 is skipped"
    exit 1
fi
run "4a train cnn" "$T_TRAIN" "${SNAKEMAKE[@]}" --cores "$CORES" results/models/cnn/model.pt
run "4b train vit" "$T_TRAIN" "${SNAKEMAKE[@]}" --cores "$CORES" results/models/vit/model.pt
run "4c evaluate" "$T_EVALUATE" "${SNAKEMAKE[@]}" --cores "$CORES" \
    results/evaluation/cnn/metrics.json results/evaluation/vit/metrics.json
run "4d report" "$T_REPORT" "${SNAKEMAKE[@]}" --cores "$CORES" results/report/summary.md
"$PYTHON" - "$WORK/pipeline/results" "$EPOCHS" <<'EOF'
import json
import sys
from pathlib import Path

results, epochs = Path(sys.argv[1]), int(sys.argv[2])
for model in ("cnn", "vit"):
    summary_path = results / "models" / model / "training_summary.json"
    if not summary_path.exists():
        print(f"{model}: no training summary")
        continue
    summary = json.loads(summary_path.read_text())
    rows = (results / "models" / model / "history.csv").read_text().splitlines()[1:]
    wall = [float(row.split(",")[-1]) for row in rows]
    epoch_seconds = [b - a for a, b in zip([0.0, *wall], wall)]
    steady = epoch_seconds[1:] or epoch_seconds
    per_epoch = sum(steady) / len(steady)
    mfu = summary["mfu"]
    print(f"{model}: {summary['train_samples']} training samples, {epochs} epochs in "
          f"{summary['wall_time_s']:.1f} s (epoch {per_epoch:.2f} s after the first "
          f"{epoch_seconds[0]:.1f} s), {summary['samples_per_second']:.0f} samples/s, MFU "
          f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%'}, data on device "
          f"{summary.get('data_on_device')}; 100 epochs: {100 * per_epoch / 60:.2f} min")
    metrics_path = results / "evaluation" / model / "metrics.json"
    if metrics_path.exists():
        test = json.loads(metrics_path.read_text()).get("test", {}).get("parameters", {})
        print(f"{model} test slopes: " + ", ".join(
            f"{name} {values['slope']:.2f}" for name, values in test.items()
            if values.get("slope") is not None))
EOF

awk -F'\t' 'NR > 1 && $3 != "ok" {bad = 1} END {exit bad}' "$STAGES"
