#!/usr/bin/env bash
# One prepared run on a lent GPU: the CUDA tests and every GPU benchmark, each table written
# to $OUT (the device tool brings back at most 8 files: keep to 8 steps). At most ~8.5 minutes; each step has
# its own time limit so a slow one cannot eat the lease.
#
# Here, first:   ../shared/tools/gpu-wheels.sh      (kornia, lightly, ... and augplug's own wheel)
# Then the device tool's run with carry [".whl"] and the command:
#                bash benchmarks/gpu_session.sh
# and copy the tables into benchmarks/results/*.md and RESULTS.md with the date and versions.
set -uo pipefail
OUT=${OUT:-/tmp/augplug-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site

step() {
    local name=$1 limit=$2
    shift 2
    echo "## $name: $*" | tee "$OUT/$name.md"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.md"
    echo "(exit ${PIPESTATUS[0]})" | tee -a "$OUT/$name.md"
}

# The device and versions head the first file.
step cuda-tests 120 bash -c "nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
    python3 -c \"import torch, kornia, triton; print('torch', torch.__version__, 'kornia', kornia.__version__, 'triton', triton.__version__)\"
    python3 -m pytest -m cuda -p no:cacheprovider tests"
step infonce 100 python3 benchmarks/bench_infonce.py --device cuda
step image-views 100 python3 benchmarks/bench_image_views.py --device cuda --sizes 512x32 256x224 \
    --dtypes float32 bfloat16 --compile --train-step
step viewmaker 50 python3 benchmarks/bench_viewmaker.py --device cuda
step nn-queue 40 python3 benchmarks/bench_nn_queue.py --device cuda
step invariance 40 python3 benchmarks/bench_invariance.py step --device cuda --dtype bfloat16
step audio 30 python3 benchmarks/bench_audio.py --device cuda
step kernels 30 python3 benchmarks/count_kernels.py --device cuda --shape 512x32
