#!/usr/bin/env bash
# `make test`: the whole suite. mmcv (the MMDetection teacher's compiled ops, about 12 minutes on
# 2 cores) compiles in the background at the lowest CPU priority while every other test runs; then
# it is installed and the MMDetection tests run. A machine that built it once takes it from the
# wheel cache (tools/install_mmdet.py). Arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
MMDET_TESTS=tests/vloss/teacher/test_mmdet_teacher.py
LOG=.venv/mmcv-build.out

"$BIN/python" tools/install_mmdet.py --build-tools || exit 1
nice -n 19 "$BIN/python" tools/install_mmdet.py --build-only >"$LOG" 2>&1 &
build=$!
start=$(date +%s)
SUITE_LOG=.venv/test-suite.out
COLUMNS=300 "$BIN/python" -m pytest --ignore="$MMDET_TESTS" "$@" 2>&1 | tee "$SUITE_LOG"  # wide: whole summary lines
rc=${PIPESTATUS[0]}
echo "[test] suite without the MMDetection tests: exit $rc after $(( $(date +%s) - start )) s; waiting for the mmcv build"
if ! wait "$build"; then
  cat "$LOG"
  echo "[test] the mmcv build failed (log above)" >&2
  exit 1
fi
cat "$LOG"
"$BIN/python" tools/install_mmdet.py && touch .venv/.mmdet-installed || exit 1
"$BIN/python" -m pytest "$MMDET_TESTS" "$@"
rc2=$?
echo "[test] MMDetection tests: exit $rc2; whole make test $(( $(date +%s) - start )) s"
if [ "$rc" != 0 ]; then  # repeated last, where a log cut in the middle still shows it
  echo "[test] the suite's failures (its short summary, from $SUITE_LOG):"
  sed -n '/short test summary info/,$p' "$SUITE_LOG"
fi
exit $(( rc != 0 || rc2 != 0 ))
