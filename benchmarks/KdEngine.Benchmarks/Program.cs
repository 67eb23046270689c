using BenchmarkDotNet.Running;

if (args is ["sgemm-probe", ..])
{
    KdEngine.Benchmarks.SgemmProbe.Run(args[1..]);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
