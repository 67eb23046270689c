#!/usr/bin/env bash
# Real-size data measurements (docs/benchmarks.md, "Data at scale"): generates a synthetic CTR file of the issue's shape
# (`kdengine synth --fields 39 --vocab 100000`: label + 39 hex tokens per row, ≈ 350 bytes), then
#   1. ingest MB/s of the fit and encode passes on 1 and 2 parsing threads (benchmarks ingest-probe, wall and CPU time);
#   2. `train --model wdl --epochs 1 --batch-size 1024` under /usr/bin/time -v: wall time and peak RSS, with the RSS
#      sampled every second next to the trainer's progress (RSS when training has seen 1M, 5M, 10M … rows);
#   3. the same with `--cache`: the first run writes the encoded cache, the second reads it (its "input:" line gives the
#      share of training time spent waiting for batches);
#   4. optionally the same train command built from an older commit (BEFORE=<commit>) for before/after;
# and deletes every generated file at the end (also on failure or Ctrl-C).
#
#   ROWS=3000000 benchmarks/data-scale.sh                  # the 3M-row measurement
#   ROWS=10000000 benchmarks/data-scale.sh                 # the 10M-row, flat-memory measurement (≈ 3.5 GB of text)
#   ROWS=3000000 BEFORE=3d04786 benchmarks/data-scale.sh   # with the train run of an older build for comparison
#   ROWS=300000 NICE=19 benchmarks/data-scale.sh           # a quick check that it all works
#
# Environment: ROWS (default 3000000), BEFORE (git commit, default none), WORK (scratch folder, default a new
# folder under /tmp), NICE (niceness, default 0), SKIP_CACHE=1 / SKIP_INGEST=1 to leave steps out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROWS=${ROWS:-3000000}
NICE=${NICE:-0}
WORK=${WORK:-$(mktemp -d /tmp/kdengine-data-scale.XXXXXX)}
mkdir -p "$WORK"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cleanup() {
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

run() { nice -n "$NICE" "$@"; }
say() { echo "== $*" >&2; }

say "building the CLI and the benchmarks (Release)"
run dotnet build src/KdEngine.Cli -c Release -o "$WORK/cli" >/dev/null
run dotnet build benchmarks/KdEngine.Benchmarks -c Release -o "$WORK/bench" >/dev/null
CLI="$WORK/cli/KdEngine.Cli.dll"

DATA="$WORK/synth.tsv"
say "generating $ROWS rows"
run dotnet "$CLI" synth --rows "$ROWS" --fields 39 --vocab 100000 --seed 1 --out "$DATA" >/dev/null
BYTES=$(stat -c %s "$DATA")
echo "# Data at scale: $ROWS rows, $(awk -v b="$BYTES" 'BEGIN{printf "%.2f GB", b/1e9}') ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo

if [ "${SKIP_INGEST:-0}" != 1 ]; then
  say "ingest passes"
  echo "## Ingest (fit pass = parse + count values; encode pass = parse + ids)"
  echo '```'
  for w in 1 2; do run dotnet "$WORK/bench/KdEngine.Benchmarks.dll" ingest-probe "$ROWS" "$w" "$DATA"; done
  echo '```'
  echo
fi

# One `train` run under /usr/bin/time -v with an RSS sampler; prints a summary line and the RSS at row milestones.
train_run() {
  local label=$1 cli=$2; shift 2
  local log="$WORK/$label.log" rss="$WORK/$label.rss" timing="$WORK/$label.time"
  say "train: $label"
  ( /usr/bin/time -v -o "$timing" nice -n "$NICE" dotnet "$cli" train --model wdl --data "$DATA" --schema "$DATA.schema.json" \
      --epochs 1 --batch-size 1024 --out "$WORK/$label.kde" "$@" 2>&1 | while IFS= read -r line; do echo "$(date +%s.%N) $line"; done > "$log" ) &
  local runner=$!
  sleep 1
  # Sample the dotnet process's resident memory every second (the newest dotnet started under this runner).
  : > "$rss"
  while kill -0 "$runner" 2>/dev/null; do
    local pid
    pid=$(pgrep -n -f "KdEngine.Cli.dll train --model wdl --data $DATA" || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
      echo "$(date +%s.%N) $(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null)" >> "$rss" || true
    fi
    sleep 1
  done
  wait "$runner" || { echo "train ($label) failed; its output:"; cut -d' ' -f2- "$log"; return 1; }
  local wall peak
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$timing")
  peak=$(awk -F': ' '/Maximum resident set size/{printf "%.2f GB", $2/1e6}' "$timing")
  echo "### $label: wall $wall, peak RSS $peak"
  echo '```'
  cut -d' ' -f2- "$log" | grep -E '^(fit|read|cache|wrote cache|data:|model:|trained|validation AUC|test AUC|input:|skipped)' || true
  echo '```'
  # RSS when the trainer had seen 1M, 5M, 10M, … rows (its progress lines give the step; rows = step × 1024).
  awk -v batch=1024 'FNR==NR { t[NR]=$1; r[NR]=$2; n=NR; next }
       /step +[0-9]+\// { match($0, /step +[0-9]+/); s=substr($0, RSTART+5, RLENGTH-5)+0; rows=s*batch;
         for (m=1000000; m<=rows; m*=(m==1000000?5:2)) if (!(m in seen)) { seen[m]=1; best=0;
           for (i=1;i<=n;i++) if (t[i]<=$1) best=r[i]; printf "RSS when training had seen %d rows: %.2f GB\n", m, best/1e6 } }' "$rss" "$log"
  echo
}

echo "## train --model wdl --epochs 1 --batch-size 1024"
echo
train_run "after" "$CLI"
if [ "${SKIP_CACHE:-0}" != 1 ]; then
  train_run "cache-first-run" "$CLI" --cache "$WORK/cache"
  train_run "cache-second-run" "$CLI" --cache "$WORK/cache"
fi

if [ -n "${BEFORE:-}" ]; then
  say "building $BEFORE for the before run"
  mkdir -p "$WORK/before-src"
  git -C "$ROOT" archive "$BEFORE" | tar -x -C "$WORK/before-src"
  ( cd "$WORK/before-src" && run dotnet build src/KdEngine.Cli -c Release -o "$WORK/before-cli" >/dev/null )
  train_run "before ($BEFORE)" "$WORK/before-cli/KdEngine.Cli.dll"
fi
say "done; deleting $WORK"
