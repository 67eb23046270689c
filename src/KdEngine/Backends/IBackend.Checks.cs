using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public partial interface IBackend<T>
{
    /// <summary>The index of the first NaN or ±∞ among the first <paramref name="length"/> elements, or −1 if all are finite.</summary>
    int FirstNonFinite(TensorStorage<T> x, int length);
}
