using BenchmarkDotNet.Running;

if (args is ["predictor-probe", ..])
{
    KdEngine.Benchmarks.PredictorProbe.Run(args[1..]);
    return;
}
if (args is ["serving-tradeoff", ..])
{
    KdEngine.Benchmarks.ServingTradeoff.Run(args[1..]);
    return;
}
if (args is ["sgemm-probe", ..])
{
    KdEngine.Benchmarks.SgemmProbe.Run(args[1..]);
    return;
}
if (args is ["ingest-probe", ..])
{
    KdEngine.Benchmarks.IngestProbe.Run(args[1..]);
    return;
}
if (args is ["ingest-stages", ..])
{
    KdEngine.Benchmarks.IngestStages.Run(args[1..]);
    return;
}
if (args is ["compare-reports", ..])
{
    KdEngine.Benchmarks.CompareReports.Run(args[1..]);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
