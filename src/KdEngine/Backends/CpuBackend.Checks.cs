using System.Numerics;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public int FirstNonFinite(TensorStorage<T> x, int length) => CheckKernels.FirstNonFinite<T>(S(x)[..length]);
}
