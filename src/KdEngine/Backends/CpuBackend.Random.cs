using System.Numerics;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void DropoutMask(TensorStorage<T> mask, int length, double rate, ulong seed)
        => RandomKernels.DropoutMask<T>(S(mask)[..length], rate, seed);
}
