#!/usr/bin/env bash
# The ranking service's load test in one command (docs/serving.md, "Load test"). Loopback only, bounded in time and
# requests per cell:
#   1. the quickstart's models (xDeepFM teacher, DNN student alone, DNN student distilled), trained once into $OUT/models
#   2. `kdengine serve` with the distilled student and the teacher on 127.0.0.1:$PORT
#   3. per model: candidates × concurrency cells over HTTP, and the same Predictor in-process (HTTP/JSON overhead ratio)
#   4. the swap drill: 10 hot swaps under load alternating the two students, a corrupt file offered twice
#   5. SIGTERM: the service drains and must exit 0
# Results: $OUT/serve-load.md (appended; each run headed by its date, settings and load average).
#
#   bash benchmarks/serve-load.sh                      the full matrix (run it on a quiet machine)
#   QUICK=1 nice -n 10 bash benchmarks/serve-load.sh   reduced (3 s cells, the teacher at concurrency 1, 8, 32)
# Settings (environment): OUT, PORT, SECONDS_PER_CELL, WARMUP, MAX_REQUESTS, CONCURRENCY, CANDIDATES,
# TEACHER_CONCURRENCY, TEACHER_CANDIDATES, SWAP_CONCURRENCY.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

OUT=${OUT:-/tmp/kdengine-serve-load}
PORT=${PORT:-18181}
if [ "${QUICK:-0}" = 1 ]; then
  SECONDS_PER_CELL=${SECONDS_PER_CELL:-3}; WARMUP=${WARMUP:-1}; MAX_REQUESTS=${MAX_REQUESTS:-3000}
  CONCURRENCY=${CONCURRENCY:-1,8,32,128}; TEACHER_CONCURRENCY=${TEACHER_CONCURRENCY:-1,8,32}
else
  SECONDS_PER_CELL=${SECONDS_PER_CELL:-20}; WARMUP=${WARMUP:-3}; MAX_REQUESTS=${MAX_REQUESTS:-50000}
  CONCURRENCY=${CONCURRENCY:-1,8,32,128}; TEACHER_CONCURRENCY=${TEACHER_CONCURRENCY:-$CONCURRENCY}
fi
CANDIDATES=${CANDIDATES:-100,1000}
TEACHER_CANDIDATES=${TEACHER_CANDIDATES:-$CANDIDATES}
SWAP_CONCURRENCY=${SWAP_CONCURRENCY:-8}
mkdir -p "$OUT/models"
RESULTS="$OUT/serve-load.md"

dotnet build -c Release src/KdEngine.Cli/KdEngine.Cli.csproj -v q -nologo
dotnet build -c Release benchmarks/KdEngine.LoadGen/KdEngine.LoadGen.csproj -v q -nologo
CLI=(dotnet src/KdEngine.Cli/bin/Release/net10.0/KdEngine.Cli.dll)
LOADGEN=(dotnet benchmarks/KdEngine.LoadGen/bin/Release/net10.0/KdEngine.LoadGen.dll)

if [ ! -f "$OUT/models/student.kde" ]; then
  echo "== training the quickstart's models into $OUT/models"
  "${CLI[@]}" quickstart --out "$OUT/models" | tee "$OUT/quickstart.log"
fi
# The service reads the student from a file the swap drill replaces; a corrupt copy has one data byte flipped.
cp "$OUT/models/student.kde" "$OUT/serving-student.kde"
cp "$OUT/models/student.kde" "$OUT/corrupt.kde"
size=$(stat -c %s "$OUT/corrupt.kde"); at=$((size - 5))
byte=$(od -An -tu1 -j "$at" -N1 "$OUT/corrupt.kde" | tr -d ' ')
printf "\\x$(printf %02x $((byte ^ 64)))" | dd of="$OUT/corrupt.kde" bs=1 seek="$at" conv=notrunc status=none

echo "== starting kdengine serve on 127.0.0.1:$PORT"
"${CLI[@]}" serve --model student="$OUT/serving-student.kde" --model teacher="$OUT/models/teacher.kde" --port "$PORT" \
  --max-queue 1024 --max-candidates 1000 --timeout-ms 600000 > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$OUT/server.log"; echo "the service did not start" >&2; exit 1; fi
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null || { echo "the service is not ready after 120 s" >&2; exit 1; }

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "cells: ${SECONDS_PER_CELL} s each after ${WARMUP} s warm-up, at most ${MAX_REQUESTS} requests; service defaults (max batch 1,024 rows, max wait 200 µs, one scoring thread per core); load generator on the same machine"
  echo
} >> "$RESULTS"
common=(--url "http://127.0.0.1:$PORT" --seconds "$SECONDS_PER_CELL" --warmup "$WARMUP" --max-requests "$MAX_REQUESTS" --out "$RESULTS")
echo "== DNN student (distilled)"
"${LOADGEN[@]}" measure "${common[@]}" --model student --checkpoint "$OUT/models/student.kde" --label "DNN student" \
  --concurrency "$CONCURRENCY" --candidates "$CANDIDATES"
echo "== xDeepFM teacher"
"${LOADGEN[@]}" measure "${common[@]}" --model teacher --checkpoint "$OUT/models/teacher.kde" --label "xDeepFM teacher" \
  --concurrency "$TEACHER_CONCURRENCY" --candidates "$TEACHER_CANDIDATES"
echo "== swap drill"
echo >> "$RESULTS"
"${LOADGEN[@]}" swap --url "http://127.0.0.1:$PORT" --model student --serving "$OUT/serving-student.kde" \
  --a "$OUT/models/student.kde" --b "$OUT/models/student-alone.kde" --corrupt "$OUT/corrupt.kde" \
  --concurrency "$SWAP_CONCURRENCY" --candidates 100 --out "$RESULTS"

echo "== SIGTERM"
kill -TERM "$SERVER"
trap - EXIT
status=0; wait "$SERVER" || status=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); kdengine serve exit code after SIGTERM: $status" | tee -a "$RESULTS"
echo "results: $RESULTS"
[ "$status" -eq 0 ]
