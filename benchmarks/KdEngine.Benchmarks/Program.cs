using BenchmarkDotNet.Running;

if (args is ["sgemm-probe"])
{
    KdEngine.Benchmarks.SgemmProbe.Run();
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
