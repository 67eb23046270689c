#!/usr/bin/env bash
# Reproduces the GBDT-teacher table of docs/results.md in one command, from anywhere:
#   bash benchmarks/run-gbdt-teacher.sh              # Criteo sample + synthetic set, 5 seeds each
#   bash benchmarks/run-gbdt-teacher.sh --quick      # smoke test: 1 seed, a small synthetic set, numbers not for the write-up
#   ROWS=200000 bash benchmarks/run-gbdt-teacher.sh  # the synthetic set at the distillation table's size
# Steps: build benchmarks/KdEngine.GbdtTeacher (restores Microsoft.ML and Microsoft.ML.LightGbm 5.0.1 the first time)
# and the CLI; run the example on the bundled Criteo sample and on a `kdengine synth` set (it trains LightGBM with native
# categorical splits chosen on validation, writes its scores as a side file aligned by row, distils them into a DNN
# student and scores both students through the compiled Predictor); then run the same distillation through the CLI
# (`kdengine distill --teacher-file`, the table's student and α, T) and load the saved student back (`kdengine eval`).
# Outputs: the logs and tables under $OUT (default: a fresh folder in /tmp), the synthetic data deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; fi
OUT=${OUT:-$(mktemp -d /tmp/kdengine-gbdt.XXXXXX)}
mkdir -p "$OUT"
# 50,000 synthetic rows (40,000 to train) is the table's size; ROWS=200000 gives the size of the distillation table.
seeds=5; rows=${ROWS:-50000}
if [ $quick = 1 ]; then seeds=1; rows=20000; fi
echo "output: $OUT; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release benchmarks/KdEngine.GbdtTeacher -v quiet -nologo
dotnet build -c Release src/KdEngine.Cli -v quiet -nologo
gbdt() { nice -n 19 dotnet run -c Release --no-build --project benchmarks/KdEngine.GbdtTeacher -- "$@"; }
kdengine() { nice -n 19 dotnet run -c Release --no-build --project src/KdEngine.Cli -- "$@"; }

criteo=data/criteo-sample/criteo_sampled_data_10k.csv
echo "== Criteo sample"
gbdt --data "$criteo" --out "$OUT/criteo" --seeds $seeds | tee "$OUT/criteo.log"

echo "== synthetic"
# The synthetic set of the distillation table (40 third-order terms over 20 fields of 10 uniform ids), without the
# privileged fields: every model sees the same 20 fields here.
kdengine synth --rows $rows --fields 20 --vocab 10 --zipf 0 --first-order-scale 0.5 --pairwise-scale 0.5 \
  --third-order-terms 40 --third-order-scale 2 --seed 42 --out "$OUT/synth.tsv"
gbdt --data "$OUT/synth.tsv" --schema "$OUT/synth.tsv.schema.json" --out "$OUT/synth" --seeds $seeds --lr 0.003 \
  --leaves 31,127 --gbdt-lr 0.1 --min-leaf 50,200 | tee "$OUT/synth.log"

echo "== the same distillation through the CLI (seed 1's GBDT scores, Criteo)"
echo '{"student": {"model": "dnn", "embeddingDim": 10, "dnn": [32]}, "alpha": 0.5, "temperature": 2}' > "$OUT/kd.json"
kdengine distill --method logits --config "$OUT/kd.json" --data "$criteo" --min-count 2 --seed 1 \
  --teacher-file "$OUT/criteo/criteo_sampled_data_10k.gbdt-seed1.teacher.csv" --out "$OUT/criteo-student.kde" | tee "$OUT/cli.log"
kdengine eval --model "$OUT/criteo-student.kde" --data "$criteo" | tee -a "$OUT/cli.log"

rm -f "$OUT/synth.tsv" "$OUT/synth.tsv.schema.json"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tables: $OUT/criteo.log, $OUT/synth.log"
