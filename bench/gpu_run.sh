#!/usr/bin/env bash
# Run every section of the GPU check on the lent GPU machine, Ray included (docs/PERFORMANCE.md).
#
# Here:   .venv/bin/python bench/gpu_bundle.py        (builds .gpu_bundle/, about 33 MiB)
# Device: run(command="bash bench/gpu_run.sh", carry=[".gpu_bundle"], timeout_s=480)
#
# Unpacks the bundle for the device's python3 into a temporary site folder, puts it and the
# checkout on PYTHONPATH, checks that ray, ray.train and ray.data import, and runs
# bench/gpu_check.py with its CUDA defaults. Results: $OUT/gpu_check/ (JSON, logs), the table on
# stdout. Extra arguments go to gpu_check.py (e.g. --sections train_step).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-.gpu_bundle}
SITE=${SITE:-/tmp/vloss_site}
OUTDIR=${OUT:-/tmp/vloss_gpu_out}/gpu_check
PY=${PY:-python3}

want=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["python"])' "$BUNDLE/bundle.json")
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want" != "$have" ]; then
  echo "gpu_run: error: the bundle is for Python $want, $PY is $have (bench/gpu_bundle.py --python $have)" >&2
  exit 2
fi
t0=$(date +%s)
rm -rf "$SITE" && mkdir -p "$SITE"
tar -xJf "$BUNDLE"/ray-*.tar.xz -C "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$BUNDLE"/wheels/*.whl
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c 'import ray, ray.train, ray.data, open_clip, pycocotools; print("bundle ok: ray", ray.__version__)'
echo "unpacked in $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p "$OUTDIR"
"$PY" bench/gpu_check.py --out "$OUTDIR" --work /tmp/vloss_gpu_work "$@"
