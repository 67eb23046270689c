#!/usr/bin/env bash
# Reproduces the peer comparison of docs/benchmarks.md in one command, from anywhere:
#   bash benchmarks/run-peers.sh            # full run (~15 min on 2 cores)
#   bash benchmarks/run-peers.sh --quick    # smoke test: short job, numbers not for the write-up
# Extra arguments go to the benchmark program, e.g. --threads 1, or --filter '*PeerInference*'.
# Steps: build benchmarks/KdEngine.Peers in Release (restores TorchSharp-cpu, ~1.4 GB, the first time; the build marks
# GLIBCXX_3.4.32 weak in the output copy of libLibTorchSharp.so), check that ONNX Runtime and TorchSharp compute the same
# logits and training losses as KdEngine, run the BenchmarkDotNet suites (KdEngine Predictor / ONNX Runtime / TorchSharp
# inference at batch 1-1024 on 1 and 2 threads; training steps at batch 1024), then write the tables into
# docs/benchmarks.md (between the peers markers) and the chart into docs/img/peer-latency.png.
# Raw BenchmarkDotNet reports: BenchmarkDotNet.Artifacts/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release benchmarks/KdEngine.Peers -v quiet -nologo
dotnet run -c Release --no-build --project benchmarks/KdEngine.Peers -- all "$@"
