using System.Numerics;
using System.Numerics.Tensors;
using KdEngine.Tensors;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// Softmax / log-softmax along the middle axis of [outer, axis, inner], max-subtracted. inner = 1 (the last
/// axis, the usual case) works row by row on contiguous spans; inner &gt; 1 works on whole [inner] slices
/// at once (the axis stride is inner), so both cases stay vectorised via TensorPrimitives.
/// </summary>
internal static class SoftmaxKernels
{
    public static void Forward<T>(ReadOnlySpan<T> x, Span<T> y, int outer, int axis, int inner, T invT, bool log)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (axis == 0 || outer == 0 || inner == 0) return;
        if (inner == 1)
        {
            for (int o = 0; o < outer; o++)
            {
                var xr = x.Slice(o * axis, axis);
                var yr = y.Slice(o * axis, axis);
                // Since invT > 0, max(x·invT) = max(x)·invT: y = (x − max)·invT ≤ 0, so exp(y) ≤ 1.
                T max = TensorPrimitives.Max<T>(xr);
                TensorPrimitives.Subtract<T>(xr, max, yr);
                TensorPrimitives.Multiply<T>(yr, invT, yr);
                if (log)
                {
                    // log softmax = y − log Σ exp(y); exp(y) is summed without a scratch buffer by
                    // exponentiating in place and then recomputing y (cheaper than renting for short rows).
                    TensorPrimitives.Exp<T>(yr, yr);
                    T lse = T.Log(TensorPrimitives.Sum<T>(yr));
                    TensorPrimitives.Subtract<T>(xr, max, yr);
                    TensorPrimitives.Multiply<T>(yr, invT, yr);
                    TensorPrimitives.Subtract<T>(yr, lse, yr);
                }
                else
                {
                    TensorPrimitives.Exp<T>(yr, yr);
                    TensorPrimitives.Multiply<T>(yr, T.One / TensorPrimitives.Sum<T>(yr), yr);
                }
            }
            return;
        }

        T[] maxBuf = BufferPool<T>.Rent(inner, clear: false), sumBuf = BufferPool<T>.Rent(inner, clear: false);
        try
        {
            var max = maxBuf.AsSpan(0, inner);
            var sum = sumBuf.AsSpan(0, inner);
            for (int o = 0; o < outer; o++)
            {
                int b = o * axis * inner;
                x.Slice(b, inner).CopyTo(max);
                for (int a = 1; a < axis; a++) TensorPrimitives.Max<T>(max, x.Slice(b + a * inner, inner), max);
                sum.Clear();
                for (int a = 0; a < axis; a++)
                {
                    var ys = y.Slice(b + a * inner, inner);
                    TensorPrimitives.Subtract<T>(x.Slice(b + a * inner, inner), max, ys);
                    TensorPrimitives.Multiply<T>(ys, invT, ys);
                    TensorPrimitives.Exp<T>(ys, ys);
                    TensorPrimitives.Add<T>(sum, ys, sum);
                }
                if (log)
                {
                    TensorPrimitives.Log<T>(sum, sum);
                    for (int a = 0; a < axis; a++)
                    {
                        var ys = y.Slice(b + a * inner, inner);
                        TensorPrimitives.Subtract<T>(x.Slice(b + a * inner, inner), max, ys);
                        TensorPrimitives.Multiply<T>(ys, invT, ys);
                        TensorPrimitives.Subtract<T>(ys, sum, ys);
                    }
                }
                else
                {
                    for (int a = 0; a < axis; a++)
                    {
                        var ys = y.Slice(b + a * inner, inner);
                        TensorPrimitives.Divide<T>(ys, sum, ys);
                    }
                }
            }
        }
        finally
        {
            BufferPool<T>.Return(maxBuf);
            BufferPool<T>.Return(sumBuf);
        }
    }

    public static void Backward<T>(ReadOnlySpan<T> y, ReadOnlySpan<T> gy, Span<T> gx, int outer, int axis, int inner, T invT, bool log)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (axis == 0 || outer == 0 || inner == 0) return;
        T[] tmpBuf = BufferPool<T>.Rent(inner == 1 ? axis : inner, clear: false);
        T[] accBuf = BufferPool<T>.Rent(inner, clear: false);
        try
        {
            if (inner == 1)
            {
                var tmp = tmpBuf.AsSpan(0, axis);
                for (int o = 0; o < outer; o++)
                {
                    var yr = y.Slice(o * axis, axis);
                    var gr = gy.Slice(o * axis, axis);
                    var dx = gx.Slice(o * axis, axis);
                    if (log)
                    {
                        // dx += invT·(g − softmax·Σg), softmax = exp(y).
                        T s = TensorPrimitives.Sum<T>(gr);
                        TensorPrimitives.Exp<T>(yr, tmp);
                        TensorPrimitives.MultiplyAdd<T>(tmp, -s, gr, tmp);
                    }
                    else
                    {
                        // dx += invT·y∘(g − ⟨g, y⟩).
                        T dot = TensorPrimitives.Dot<T>(gr, yr);
                        TensorPrimitives.Subtract<T>(gr, dot, tmp);
                        TensorPrimitives.Multiply<T>(tmp, yr, tmp);
                    }
                    TensorPrimitives.MultiplyAdd<T>(tmp, invT, dx, dx);
                }
                return;
            }

            var t = tmpBuf.AsSpan(0, inner);
            var acc = accBuf.AsSpan(0, inner);
            for (int o = 0; o < outer; o++)
            {
                int b = o * axis * inner;
                acc.Clear();
                // acc = Σ_a g (log) or Σ_a g∘y (softmax), per inner position.
                for (int a = 0; a < axis; a++)
                {
                    var gs = gy.Slice(b + a * inner, inner);
                    if (log) TensorPrimitives.Add<T>(acc, gs, acc);
                    else TensorPrimitives.MultiplyAdd<T>(gs, y.Slice(b + a * inner, inner), acc, acc);
                }
                for (int a = 0; a < axis; a++)
                {
                    var ys = y.Slice(b + a * inner, inner);
                    var gs = gy.Slice(b + a * inner, inner);
                    var dx = gx.Slice(b + a * inner, inner);
                    if (log)
                    {
                        TensorPrimitives.Exp<T>(ys, t);
                        TensorPrimitives.Multiply<T>(t, acc, t);
                        TensorPrimitives.Subtract<T>(gs, t, t);
                    }
                    else
                    {
                        TensorPrimitives.Subtract<T>(gs, acc, t);
                        TensorPrimitives.Multiply<T>(t, ys, t);
                    }
                    TensorPrimitives.MultiplyAdd<T>(t, invT, dx, dx);
                }
            }
        }
        finally
        {
            BufferPool<T>.Return(tmpBuf);
            BufferPool<T>.Return(accBuf);
        }
    }
}
