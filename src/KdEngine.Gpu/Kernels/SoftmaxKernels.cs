using ILGPU;
using ILGPU.Algorithms;

namespace KdEngine.Gpu.Kernels;

/// <summary>Softmax along the middle axis of [outer, axis, inner]: one thread per (outer, inner) line, max subtracted first.</summary>
internal static class SoftmaxKernels
{
    public static void Forward(Index1D t, ArrayView<float> x, ArrayView<float> y, int axis, int inner, float invT, int log)
    {
        int o = t / inner, n = t % inner;
        int b = o * axis * inner + n;
        float max = x[b];
        for (int a = 1; a < axis; a++) max = XMath.Max(max, x[b + a * inner]);
        float sum = 0f;
        for (int a = 0; a < axis; a++) sum += XMath.Exp((x[b + a * inner] - max) * invT);
        if (log != 0)
        {
            float lse = XMath.Log(sum);
            for (int a = 0; a < axis; a++) y[b + a * inner] = (x[b + a * inner] - max) * invT - lse;
        }
        else
        {
            float inv = 1f / sum;
            for (int a = 0; a < axis; a++) y[b + a * inner] = XMath.Exp((x[b + a * inner] - max) * invT) * inv;
        }
    }

    /// <summary>softmax: gx += invT·y∘(g − Σ g∘y); log-softmax: gx += invT·(g − exp(y)·Σ g).</summary>
    public static void Backward(Index1D t, ArrayView<float> y, ArrayView<float> g, ArrayView<float> gx, int axis, int inner, float invT, int log)
    {
        int o = t / inner, n = t % inner;
        int b = o * axis * inner + n;
        float acc = 0f;
        for (int a = 0; a < axis; a++) acc += log != 0 ? g[b + a * inner] : g[b + a * inner] * y[b + a * inner];
        for (int a = 0; a < axis; a++)
        {
            int i = b + a * inner;
            gx[i] += log != 0 ? invT * (g[i] - XMath.Exp(y[i]) * acc) : invT * y[i] * (g[i] - acc);
        }
    }
}
