using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using KdEngine.Backends;
using KdEngine.Gpu.Kernels;

namespace KdEngine.Gpu;

/// <summary>
/// Compiled generic kernels, one set per (operator type, accelerator): a static generic class per operator
/// gives each TOp its own slot, and the accelerator-keyed weak table lets several backends coexist. A kernel
/// is compiled on its first use and reused for every later launch (compilation costs milliseconds to seconds).
/// </summary>
internal static class UnaryKernels<TOp> where TOp : IUnaryOperator<float>
{
    public sealed record Set(
        Action<Index1D, ArrayView<float>, ArrayView<float>, float> Map,
        Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float> Backward);

    private static readonly ConditionalWeakTable<Accelerator, Set> Cache = new();

    public static Set For(Accelerator accelerator) => Cache.GetValue(accelerator, acc => new Set(
        acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, float>(ElementwiseKernels.Map<TOp>),
        acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float>(
            ElementwiseKernels.MapBackward<TOp>)));
}

/// <summary>The binary-operator counterpart of <see cref="UnaryKernels{TOp}"/>.</summary>
internal static class BinaryKernels<TOp> where TOp : IBinaryOperator<float>
{
    public sealed record Set(
        Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> Map,
        Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> BackwardA,
        Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> BackwardB);

    private static readonly ConditionalWeakTable<Accelerator, Set> Cache = new();

    public static Set For(Accelerator accelerator) => Cache.GetValue(accelerator, acc => new Set(
        acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ElementwiseKernels.Map2<TOp>),
        acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(
            ElementwiseKernels.Map2BackwardA<TOp>),
        acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(
            ElementwiseKernels.Map2BackwardB<TOp>)));
}
