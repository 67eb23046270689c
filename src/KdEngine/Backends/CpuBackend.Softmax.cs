using System.Numerics;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void Softmax(TensorStorage<T> x, TensorStorage<T> y, int outer, int axis, int inner, T invTemperature, bool log)
    {
        int n = outer * axis * inner;
        SoftmaxKernels.Forward<T>(S(x)[..n], S(y)[..n], outer, axis, inner, invTemperature, log);
    }

    /// <inheritdoc/>
    public void SoftmaxBackward(TensorStorage<T> y, TensorStorage<T> gradY, TensorStorage<T> gradX,
        int outer, int axis, int inner, T invTemperature, bool log)
    {
        int n = outer * axis * inner;
        SoftmaxKernels.Backward<T>(S(y)[..n], S(gradY)[..n], S(gradX)[..n], outer, axis, inner, invTemperature, log);
    }
}
