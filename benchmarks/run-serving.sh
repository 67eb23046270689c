#!/usr/bin/env bash
# Every serving measurement of docs/benchmarks.md and docs/serving.md in one command, for a quiet machine:
#   bash benchmarks/run-serving.sh            # ≈ 60–75 min on 2 quiet cores
#   bash benchmarks/run-serving.sh --reduced  # ≈ 12–15 min (estimated): the targets only — peers inference (step 2 without the
#                                             # training suites) and the precision suite on the student (step 3)
#   bash benchmarks/run-serving.sh --quick    # smoke test (short jobs, 2 training epochs): proves every step runs, numbers not for the write-up
# Steps (each prints the 1-minute load average before it; the results land under BenchmarkDotNet.Artifacts/serving/):
#  1. Predictor, old vs new: benchmarks/predictor-before-after.sh — the BenchmarkDotNet InferenceBenchmarks suite (WDL and
#     xDeepFM, bench and paper configs, batch 1–1024, 1 and 2 threads) for the baseline commit BASE (default 938a46c: the
#     predictor before it ran on every core) and for this tree, then a side-by-side table (predictor-old-vs-new.md).
#  2. Peers: benchmarks/run-peers.sh (KdEngine vs ONNX Runtime vs TorchSharp; rewrites the peers block of docs/benchmarks.md
#     and docs/img/peer-latency.png).
#  3. Precision: the ServingPrecisionBenchmarks suite (fp32 / bf16 / int8 predictors: the distilled student's shape and the
#     bench WDL and xDeepFM, batch 1 / 100 / 1,000, 1 and 2 threads).
#  4. Trade-off table: serving-tradeoff (trains the Criteo teacher and every method's student and the synthetic set's, one
#     seed; rewrites the tradeoff block of docs/serving.md).
# Run a single step: STEPS="1 3" bash benchmarks/run-serving.sh
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""
job="--job short --buildTimeout 1200"
peers_filter=()
if [[ "${1:-}" == "--quick" ]]; then
  quick="--quick"
  job="--job dry --buildTimeout 1200"
fi
if [[ "${1:-}" == "--reduced" ]]; then
  # Peers: the inference suite only (the report keeps whatever training results are already under
  # BenchmarkDotNet.Artifacts/results, or leaves the training table out). Precision: the distilled student only.
  peers_filter=(--filter '*PeerInference*')
  export KDENGINE_PRECISION_MODELS=student
  STEPS=${STEPS:-"2 3"}
fi
BASE=${BASE:-938a46c}
STEPS=${STEPS:-"1 2 3 4"}
out="$(pwd)/BenchmarkDotNet.Artifacts/serving"
mkdir -p "$out"
load() { echo "[$(date -u +%H:%M:%S)] load average: $(cut -d' ' -f1-3 /proc/loadavg) — $1"; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet build -c Release benchmarks/KdEngine.Benchmarks -v quiet -nologo
bench() { dotnet run -c Release --no-build --project benchmarks/KdEngine.Benchmarks -- "$@"; }

if [[ " $STEPS " == *" 1 "* ]]; then
  load "step 1: InferenceBenchmarks, baseline $BASE vs this tree ($(git rev-parse --short HEAD)) — predictor-before-after.sh"
  bash benchmarks/predictor-before-after.sh "$BASE" 1 -- $job
  cp BenchmarkDotNet.Artifacts/predictor-before-after/table-1.md "$out/predictor-old-vs-new.md"
fi

if [[ " $STEPS " == *" 2 "* ]]; then
  load "step 2: peers (run-peers.sh)"
  bash benchmarks/run-peers.sh $quick "${peers_filter[@]}"
fi

if [[ " $STEPS " == *" 3 "* ]]; then
  load "step 3: ServingPrecisionBenchmarks"
  rm -rf "$out/precision"
  bench --filter '*ServingPrecisionBenchmarks*' $job --exporters json --artifacts "$out/precision"
fi

if [[ " $STEPS " == *" 4 "* ]]; then
  load "step 4: serving-tradeoff"
  bench serving-tradeoff $quick
fi
load "done"
