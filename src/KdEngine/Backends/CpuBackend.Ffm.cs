using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void FieldAwarePairs(TensorStorage<T> x, TensorStorage<T> z, int batch, int fields, int width)
        => FfmKernels.Forward<T>(S(x), S(z), batch, fields, width);

    /// <inheritdoc/>
    public void FieldAwarePairsBackward(TensorStorage<T> x, TensorStorage<T> gradZ, TensorStorage<T> gradX, int batch, int fields, int width)
        => FfmKernels.Backward<T>(S(x), S(gradZ), S(gradX), batch, fields, width);
}
