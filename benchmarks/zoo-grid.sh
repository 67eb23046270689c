#!/usr/bin/env bash
# A validation-only hyper-parameter grid for one zoo model on the Criteo sample: for each line of GRID, trains the model
# for seeds 1..SEEDS (`experiment zoo`) and prints the mean validation AUC and logloss — never the test split's numbers,
# which the runs also compute but this script drops — then the grid sorted by validation AUC.
#
#   bash benchmarks/zoo-grid.sh MODEL SEEDS GRID [KDENGINE]
#
# GRID: one candidate per line, "<training JSON>|<model JSON>" (blank lines and lines starting with # are skipped), e.g.
#   {"optimizer": "adagrad", "learningRate": 0.05, "epochs": 30, "patience": 3}|{"model": "ffm", "embeddingDim": 4}
# KDENGINE: the command to run the CLI (default: dotnet run -c Release --project src/KdEngine.Cli --).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; seeds=$2; grid=$3
cli=${4:-"dotnet run -c Release --project src/KdEngine.Cli --"}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
results="$tmp/results"; : > "$results"
n=0
while IFS='|' read -r training config || [ -n "$training" ]; do
  [[ -z "${training// }" || "$training" == \#* ]] && continue
  n=$((n + 1))
  printf '{"training": %s, "minCount": 2, "models": {"%s": %s}}\n' "$training" "$model" "$config" > "$tmp/c$n.json"
  $cli experiment zoo --models "$model" --seeds "$seeds" --config "$tmp/c$n.json" > "$tmp/out$n" 2>&1 || { echo "candidate $n failed:"; tail -5 "$tmp/out$n"; exit 1; }
  # "  ffm seed 1: test AUC … logloss … (valid AUC 0.7220), …" → the validation AUC only.
  line=$(sed -nE 's/.*\(valid AUC ([0-9.]+)\).*/\1/p' "$tmp/out$n" | awk '{s += $1; q += $1 * $1; k++} END {m = s / k; printf "%.4f ± %.4f", m, (k > 1 ? sqrt((q - k * m * m) / (k - 1)) : 0)}')
  echo "$line | $training | $config" | tee -a "$results"
done < "$grid"
echo; echo "sorted by mean validation AUC over seeds 1..$seeds:"
sort -t'|' -k1,1r "$results"
