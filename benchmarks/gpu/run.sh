#!/usr/bin/env bash
# One call: build, run the backend-parity suite on CUDA (plus the ILGPU-CPU suite), run the GPU benchmark, and
# write everything into a results folder. On a machine without CUDA the CUDA fixture is ignored with a message
# and the benchmark records the device as unavailable — the script still succeeds.
#
#   benchmarks/gpu/run.sh [OUT_DIR]            (default OUT_DIR: gpu-results/)
#
# Environment knobs: DEVICES (default "cpu,cuda"), BATCHES, TRAIN_BATCHES, MAX_SECONDS (default 4: a ladder stops
# at the first batch whose single run takes longer), BUCKETS (default 65536), SKIP_ILGPU_CPU_TESTS=1 (skip the slow
# simulator suite when time is short), CONFIGURATION (default Release), PREBUILT=1 (skip the build and run the
# binaries under tests/KdEngine.Gpu.Tests/bin/Release and benchmarks/KdEngine.GpuBench/bin/Release — for an offline
# machine, build them here first and carry those two bin/ folders, ~19 MB).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-gpu-results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
CONFIGURATION="${CONFIGURATION:-Release}"
status=0
log() { echo "[run.sh $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

log "output folder: $OUT"
{ command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found (no NVIDIA driver on this machine)"; } > "$OUT/nvidia-smi.txt" 2>&1
if ! command -v dotnet >/dev/null; then
  log "ERROR: the .NET SDK (dotnet) is not on PATH; nothing can be built or run."
  exit 2
fi
dotnet --info > "$OUT/dotnet-info.txt" 2>&1

TEST_DLL="tests/KdEngine.Gpu.Tests/bin/$CONFIGURATION/net10.0/KdEngine.Gpu.Tests.dll"
BENCH_DLL="benchmarks/KdEngine.GpuBench/bin/$CONFIGURATION/net10.0/KdEngine.GpuBench.dll"
# An offline machine without the NuGet packages cannot build; it can run binaries built elsewhere if the two bin/
# folders were carried (PREBUILT=1 forces that; a failed build falls back to them when they exist).
if [ "${PREBUILT:-0}" = "1" ]; then
  log "PREBUILT=1: using $TEST_DLL and $BENCH_DLL"
else
  log "build ($CONFIGURATION)"
  if ! dotnet build tests/KdEngine.Gpu.Tests -c "$CONFIGURATION" > "$OUT/build-tests.log" 2>&1 ||
     ! dotnet build benchmarks/KdEngine.GpuBench -c "$CONFIGURATION" > "$OUT/build-bench.log" 2>&1; then
    if [ -f "$TEST_DLL" ] && [ -f "$BENCH_DLL" ]; then
      log "build failed (see $OUT/build-*.log); falling back to the prebuilt binaries"
    else
      log "ERROR: build failed and no prebuilt binaries exist; see $OUT/build-*.log"
      tail -30 "$OUT"/build-*.log
      exit 3
    fi
  fi
fi
if [ ! -f "$TEST_DLL" ] || [ ! -f "$BENCH_DLL" ]; then log "ERROR: $TEST_DLL or $BENCH_DLL is missing"; exit 3; fi

filter="FullyQualifiedName~CudaParity"
if [ "${SKIP_ILGPU_CPU_TESTS:-0}" != "1" ]; then filter="$filter|FullyQualifiedName~IlgpuCpuParity|FullyQualifiedName~DeviceTraining"; fi
log "parity tests: $filter"
dotnet test "$TEST_DLL" --filter "$filter" \
  --logger "trx;LogFileName=$OUT/parity.trx" --logger "console;verbosity=normal" > "$OUT/parity-tests.log" 2>&1
rc=$?
grep -E "Passed!|Failed!|Skipped CudaParity|No CUDA device" "$OUT/parity-tests.log" | head -5 | tee -a "$OUT/run.log"
if [ $rc -ne 0 ]; then log "parity tests FAILED (exit $rc); see $OUT/parity-tests.log"; status=4; fi

log "benchmark"
args=(--out "$OUT" --devices "${DEVICES:-cpu,cuda}" --max-seconds "${MAX_SECONDS:-4}" --buckets "${BUCKETS:-65536}")
[ -n "${BATCHES:-}" ] && args+=(--batches "$BATCHES")
[ -n "${TRAIN_BATCHES:-}" ] && args+=(--train-batches "$TRAIN_BATCHES")
if ! dotnet "$BENCH_DLL" "${args[@]}" 2>&1 | tee "$OUT/benchmark.log"; then
  log "benchmark FAILED; see $OUT/benchmark.log"; status=5
fi
log "done (status $status); results: $OUT/results.md, $OUT/results.csv, $OUT/parity-tests.log"
exit $status
