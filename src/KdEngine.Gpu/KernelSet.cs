using ILGPU;
using ILGPU.Runtime;
using KdEngine.Gpu.Kernels;

namespace KdEngine.Gpu;

/// <summary>The non-generic kernels of one accelerator, each compiled once when the backend is created.</summary>
internal sealed class KernelSet(Accelerator a)
{
    public readonly Action<Index1D, ArrayView<float>, float> Fill =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float>(ElementwiseKernels.Fill);
    public readonly Action<Index1D, ArrayView<int>, int> FillInt =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, int>(ElementwiseKernels.FillInt);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, float> Axpy =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, float>(ElementwiseKernels.Axpy);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int, int> SumAxis =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(ElementwiseKernels.SumAxis);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int, float> BroadcastAxisAdd =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, float>(ElementwiseKernels.BroadcastAxisAdd);
    public readonly Action<Index1D, ArrayView<float>, int, int, ArrayView<float>, int, int, int, int> CopyBlocks =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, ArrayView<float>, int, int, int, int>(ElementwiseKernels.CopyBlocks);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<int>> FirstNonFinite =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>>(ElementwiseKernels.FirstNonFinite);
    public readonly Action<Index1D, ArrayView<float>, double, ulong, float> DropoutMask =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, double, ulong, float>(ElementwiseKernels.DropoutMask);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> ScaleRows =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ElementwiseKernels.ScaleRows);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> ScaleRowsBackwardX =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ElementwiseKernels.ScaleRowsBackwardX);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> ScaleRowsBackwardS =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ElementwiseKernels.ScaleRowsBackwardS);

    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int, float, int> Softmax =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, float, int>(SoftmaxKernels.Forward);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float, int> SoftmaxBackward =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float, int>(SoftmaxKernels.Backward);

    public readonly Action<Index1D, ArrayView<float>, int, int, ArrayView<int>, ArrayView<float>, int, int, ArrayView<int>, int> Gather =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, ArrayView<int>, ArrayView<float>, int, int, ArrayView<int>, int>(EmbeddingKernels.Gather);
    public readonly Action<Index1D, ArrayView<float>, int, int, int, ArrayView<float>> PackRows =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, int, ArrayView<float>>(EmbeddingKernels.PackRows);
    public readonly Action<Index1D, ArrayView<float>, int, int, int, ArrayView<int>, int, ArrayView<float>> ScatterAddDense =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, int, ArrayView<int>, int, ArrayView<float>>(EmbeddingKernels.ScatterAddDense);
    public readonly Action<Index1D, ArrayView<float>, int, int, ArrayView<int>, ArrayView<int>, int, ArrayView<float>, ArrayView<int>, int> BagSum =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, ArrayView<int>, ArrayView<int>, int, ArrayView<float>, ArrayView<int>, int>(EmbeddingKernels.BagSum);
    public readonly Action<Index1D, ArrayView<float>, int, ArrayView<int>, ArrayView<int>, int, int, ArrayView<float>> BagSumBackwardDense =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, ArrayView<int>, ArrayView<int>, int, int, ArrayView<float>>(EmbeddingKernels.BagSumBackwardDense);
    public readonly Action<Index1D, ArrayView<float>, int, ArrayView<int>, ArrayView<float>> ScatterRows =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, ArrayView<int>, ArrayView<float>>(EmbeddingKernels.ScatterRows);

    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int> OuterProduct =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>(CinKernels.OuterProduct);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int> OuterBackwardH =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>(CinKernels.OuterBackwardH);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int> OuterBackwardX0 =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>(CinKernels.OuterBackwardX0);
    public readonly Action<Index1D, ArrayView<float>, int, ArrayView<float>, int, int, int, int, int> TransposeBlocks =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, ArrayView<float>, int, int, int, int, int>(CinKernels.TransposeBlocks);

    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> FfmForward =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(FfmKernels.Forward);
    public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> FfmBackward =
        a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(FfmKernels.Backward);

    public readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float, float, int, int, int> Gemm =
        a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float, float, int, int, int>(GemmKernels.Tiled);

    /// <summary>The GEMM tile edge: 16, or less where a group cannot hold 16×16 threads.</summary>
    public readonly int GemmTile = Math.Min(GemmKernels.MaxTile, (int)Math.Sqrt(a.MaxNumThreadsPerGroup));
}
