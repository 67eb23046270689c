#!/usr/bin/env bash
# One BenchmarkDotNet suite of benchmarks/KdEngine.Benchmarks for a base commit and for this checkout, run alternately in
# the same window, then one side-by-side table per round (before/after mean and median, ratio of medians, allocated
# bytes). For a change that must not cost speed (a kernel rewrite): every ratio should be ≈ 1 within the run-to-run noise.
#
#   bash benchmarks/before-after.sh FILTER BASE [ROUNDS] [-- extra BenchmarkDotNet arguments]
#
# FILTER is BenchmarkDotNet's --filter (e.g. '*KernelBenchmarks*', '*TrainingBenchmarks*'); BASE is checked out into a
# temporary git worktree and must contain the suite; ROUNDS (default 1) pairs of runs go base, this, base, this … so
# slow drift in machine load hits both sides. Results: BenchmarkDotNet.Artifacts/before-after/<round>-{before,after}.json
# and table-<round>.md. (benchmarks/predictor-before-after.sh is this for the Predictor suite.)
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:?FILTER, e.g. '*KernelBenchmarks*'}; base=${2:?BASE commit}; rounds=${3:-1}
shift $(( $# > 3 ? 3 : $# )); [ "${1:-}" = "--" ] && shift
extra=("$@"); [ ${#extra[@]} -eq 0 ] && extra=(--job short)
out=BenchmarkDotNet.Artifacts/before-after; mkdir -p "$out"
tree=$(mktemp -d /tmp/kdengine-base-XXXXXX)
git worktree add --detach "$tree" "$base" >/dev/null
trap 'git worktree remove --force "$tree"' EXIT
dotnet build -c Release benchmarks/KdEngine.Benchmarks >/dev/null
(cd "$tree" && dotnet build -c Release benchmarks/KdEngine.Benchmarks >/dev/null)
run() { # $1 = checkout, $2 = output prefix
  (cd "$1" && rm -rf BenchmarkDotNet.Artifacts/results && dotnet run -c Release --no-build --project benchmarks/KdEngine.Benchmarks -- \
     --filter "$filter" --exporters json "${extra[@]}")
  for f in "$1"/BenchmarkDotNet.Artifacts/results/*.json; do cp "$f" "$2-$(basename "$f")"; done
}
for r in $(seq 1 "$rounds"); do
  rm -f "$out/$r"-before-*.json "$out/$r"-after-*.json
  run "$tree" "$out/$r-before"
  run "$PWD" "$out/$r-after"
  : >"$out/table-$r.md"
  for b in "$out/$r"-before-*.json; do
    a=${b/-before-/-after-}
    dotnet run -c Release --no-build --project benchmarks/KdEngine.Benchmarks -- compare-reports "$b" "$a" | tee -a "$out/table-$r.md"
  done
done
