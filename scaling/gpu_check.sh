#!/usr/bin/env bash
# All GPU checks in one run (< 8 minutes on one H100/H200): the GPU tests, then scaling/gpu_check.py.
#
#   bash scaling/gpu_check.sh --download   # here, once: the wheels the device image lacks, into .whl/
#   bash scaling/gpu_check.sh              # on the GPU machine, from the repository root
#
# The device image has torch, numpy, scipy, scikit-learn, xarray, h5py, tqdm and the rest; zarr, numcodecs,
# dask and distributed (and their own needs) travel as wheels in .whl/ (ignored by git). Results: one JSON,
# $OUT/gpu_check.json (or scaling/results/gpu_check.json), plus the pytest log beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS="zarr==3.1.6 numcodecs==0.17.1 google-crc32c==1.9.0 donfig==0.8.1.post1 dask==2026.8.0
        distributed==2026.8.0 tblib==3.2.2 zict==3.0.0 locket==1.0.0 partd==1.4.2 tornado==6.6.1
        platformdirs==4.14.9"
if [ "${1:-}" = "--download" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    for w in $WHEELS; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$w" || exit 1
    done
    du -sh .whl
    exit 0
fi
OUT="${OUT:-scaling/results}"
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/nvidia_smi.txt"
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -5
timeout 330 python3 scaling/gpu_check.py --out "$OUT"
