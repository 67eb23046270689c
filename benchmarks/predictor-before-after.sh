#!/usr/bin/env bash
# The Predictor BenchmarkDotNet suite (InferenceBenchmarks: WDL and xDeepFM, bench and paper configs, batch 1–1024,
# 1 and 2 threads) for a base commit and for this checkout, run alternately in the same window, then one side-by-side
# table (before/after mean and median, ratio of medians, allocated bytes).
#
#   bash benchmarks/predictor-before-after.sh [BASE] [ROUNDS] [-- extra BenchmarkDotNet arguments]
#
# BASE (default 3d04786) is checked out into a temporary git worktree; ROUNDS (default 1) pairs of runs go
# base, this, base, this … so slow drift in machine load hits both sides; each round prints its own table.
# Extra arguments replace the default "--job short" (e.g. "-- --job medium"); --buildTimeout 900 is always added.
# Results: BenchmarkDotNet.Artifacts/predictor-before-after/<round>-{before,after}.json and table-<round>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-3d04786}; rounds=${2:-1}
shift $(( $# > 2 ? 2 : $# )); [ "${1:-}" = "--" ] && shift
extra=("$@"); [ ${#extra[@]} -eq 0 ] && extra=(--job short)
extra+=(--buildTimeout 900)   # BenchmarkDotNet's 120 s default for its generated project is too short on a busy host
out=BenchmarkDotNet.Artifacts/predictor-before-after; mkdir -p "$out"
tree=$(mktemp -d /tmp/kdengine-base-XXXXXX)
git worktree add --detach "$tree" "$base" >/dev/null
trap 'git worktree remove --force "$tree"' EXIT
dotnet build -c Release benchmarks/KdEngine.Benchmarks >/dev/null
(cd "$tree" && dotnet build -c Release benchmarks/KdEngine.Benchmarks >/dev/null)
run() { # $1 = checkout, $2 = output json
  (cd "$1" && rm -rf BenchmarkDotNet.Artifacts/results && dotnet run -c Release --no-build --project benchmarks/KdEngine.Benchmarks -- \
     --filter '*InferenceBenchmarks*' --exporters json "${extra[@]}")
  cp "$1"/BenchmarkDotNet.Artifacts/results/*InferenceBenchmarks*.json "$2"
}
for r in $(seq 1 "$rounds"); do
  run "$tree" "$out/$r-before.json"
  run "$PWD" "$out/$r-after.json"
  dotnet run -c Release --no-build --project benchmarks/KdEngine.Benchmarks -- compare-reports "$out/$r-before.json" "$out/$r-after.json" | tee "$out/table-$r.md"
done
