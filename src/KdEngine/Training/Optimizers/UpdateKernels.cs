using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KdEngine.Backends;

namespace KdEngine.Training;

/// <summary>
/// Fused, in-place parameter-update loops: one pass over weights, gradient and optimizer state per call,
/// Vector512 where the hardware has it, Vector256 otherwise, then a scalar tail. A call covers one contiguous
/// block — a whole dense parameter or one touched row of an embedding table. Each vector loop is written once over
/// <see cref="IVectorOps{T, TV}"/> and instantiated for <see cref="Vector512Ops{T}"/> and <see cref="Vector256Ops{T}"/>.
/// </summary>
/// <remarks>
/// Every kernel first forms the effective gradient ĝ = s·g + λ·w (s = the clipping scale, λ = the L2 coefficient), and
/// scales the weights by keep = 1 − lr·δ (decoupled weight decay δ; keep = 1 leaves them bit-for-bit) before the step.
/// The vector body and the scalar tail use the same operations in the same order with fused multiply-adds
/// (IVectorOps.FusedMultiplyAdd ≡ MathF.FusedMultiplyAdd; Sqrt and division are correctly rounded
/// in both), so an element's result does not depend on where it sits in the block: a table row updated
/// sparsely gets bit-for-bit the same numbers as the same row updated densely. These loops run on CPU spans;
/// a GPU backend will need them as backend primitives.
/// </remarks>
internal static class UpdateKernels
{
    /// <summary>Plain SGD: w ← keep·w − lr·ĝ.</summary>
    public static void Sgd(Span<float> w, ReadOnlySpan<float> g, float s, float l2, float lr, float keep = 1f)
    {
        CheckLengths(w, g, w, w, "Sgd");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        int n = w.Length, i = 0;
        float negLr = -lr;
        if (Vector512.IsHardwareAccelerated) i = Sgd<Vector512<float>, Vector512Ops<float>>(ref wr, ref gr, s, l2, negLr, keep, n);
        else if (Vector256.IsHardwareAccelerated) i = Sgd<Vector256<float>, Vector256Ops<float>>(ref wr, ref gr, s, l2, negLr, keep, n);
        for (; i < n; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            float ge = MathF.FusedMultiplyAdd(Unsafe.Add(ref gr, i), s, l2 * wi);
            wi = MathF.FusedMultiplyAdd(negLr, ge, keep * wi);
        }
    }

    /// <summary>The vector part of <see cref="Sgd(Span{float}, ReadOnlySpan{float}, float, float, float, float)"/> at one width; returns where the scalar tail starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Sgd<TV, TS>(ref float wr, ref float gr, float s, float l2, float negLr, float keep, int n)
        where TV : struct where TS : IVectorOps<float, TV>
    {
        TV sv = TS.Create(s), l2v = TS.Create(l2), nl = TS.Create(negLr), kv = TS.Create(keep);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
        {
            var wv = TS.Load(ref wr, i);
            var ge = TS.FusedMultiplyAdd(TS.Load(ref gr, i), sv, TS.Multiply(l2v, wv));
            TS.Store(TS.FusedMultiplyAdd(nl, ge, TS.Multiply(kv, wv)), ref wr, i);
        }
        return i;
    }

    /// <summary>
    /// SGD with momentum (PyTorch form, no dampening): b ← μ·b + ĝ; d = Nesterov ? ĝ + μ·b : b; w ← keep·w − lr·d.
    /// </summary>
    public static void SgdMomentum(Span<float> w, ReadOnlySpan<float> g, Span<float> b, float s, float l2, float lr, float mu, bool nesterov, float keep = 1f)
    {
        CheckLengths(w, g, b, w, "SgdMomentum");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float br = ref MemoryMarshal.GetReference(b);
        int n = w.Length, i = 0;
        float negLr = -lr;
        if (Vector512.IsHardwareAccelerated)
            i = SgdMomentum<Vector512<float>, Vector512Ops<float>>(ref wr, ref gr, ref br, s, l2, negLr, mu, nesterov, keep, n);
        else if (Vector256.IsHardwareAccelerated)
            i = SgdMomentum<Vector256<float>, Vector256Ops<float>>(ref wr, ref gr, ref br, s, l2, negLr, mu, nesterov, keep, n);
        for (; i < n; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            ref float bi = ref Unsafe.Add(ref br, i);
            float ge = MathF.FusedMultiplyAdd(Unsafe.Add(ref gr, i), s, l2 * wi);
            bi = MathF.FusedMultiplyAdd(mu, bi, ge);
            float d = nesterov ? MathF.FusedMultiplyAdd(mu, bi, ge) : bi;
            wi = MathF.FusedMultiplyAdd(negLr, d, keep * wi);
        }
    }

    /// <summary>The vector part of <see cref="SgdMomentum(Span{float}, ReadOnlySpan{float}, Span{float}, float, float, float, float, bool, float)"/> at one width; returns where the scalar tail starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int SgdMomentum<TV, TS>(ref float wr, ref float gr, ref float br, float s, float l2, float negLr, float mu, bool nesterov, float keep, int n)
        where TV : struct where TS : IVectorOps<float, TV>
    {
        TV sv = TS.Create(s), l2v = TS.Create(l2), nl = TS.Create(negLr), mv = TS.Create(mu), kv = TS.Create(keep);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
        {
            var wv = TS.Load(ref wr, i);
            var ge = TS.FusedMultiplyAdd(TS.Load(ref gr, i), sv, TS.Multiply(l2v, wv));
            var bv = TS.FusedMultiplyAdd(mv, TS.Load(ref br, i), ge);
            TS.Store(bv, ref br, i);
            var d = nesterov ? TS.FusedMultiplyAdd(mv, bv, ge) : bv;
            TS.Store(TS.FusedMultiplyAdd(nl, d, TS.Multiply(kv, wv)), ref wr, i);
        }
        return i;
    }

    /// <summary>
    /// Adam (PyTorch's formula): m ← β1·m + (1−β1)·ĝ; v ← β2·v + (1−β2)·ĝ²;
    /// w ← keep·w − stepSize · m / (√v · invSqrtBc2 + ε), with stepSize = lr/(1−β1ᵗ) and invSqrtBc2 = 1/√(1−β2ᵗ)
    /// (keep = 1 − lr·δ: AdamW's decoupled decay, applied to the weights before the step as torch.optim.AdamW does).
    /// </summary>
    public static void Adam(Span<float> w, ReadOnlySpan<float> g, Span<float> m, Span<float> v, float s, float l2,
        float stepSize, float beta1, float beta2, float invSqrtBc2, float eps, float keep = 1f)
    {
        CheckLengths(w, g, m, v, "Adam");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float mr = ref MemoryMarshal.GetReference(m);
        ref float vr = ref MemoryMarshal.GetReference(v);
        int n = w.Length, i = 0;
        float negStep = -stepSize, omb1 = 1f - beta1, omb2 = 1f - beta2;
        if (Vector512.IsHardwareAccelerated)
            i = Adam<Vector512<float>, Vector512Ops<float>>(ref wr, ref gr, ref mr, ref vr, s, l2, negStep, beta1, beta2, invSqrtBc2, eps, keep, n);
        else if (Vector256.IsHardwareAccelerated)
            i = Adam<Vector256<float>, Vector256Ops<float>>(ref wr, ref gr, ref mr, ref vr, s, l2, negStep, beta1, beta2, invSqrtBc2, eps, keep, n);
        for (; i < n; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            ref float mi = ref Unsafe.Add(ref mr, i);
            ref float vi = ref Unsafe.Add(ref vr, i);
            float ge = MathF.FusedMultiplyAdd(Unsafe.Add(ref gr, i), s, l2 * wi);
            mi = MathF.FusedMultiplyAdd(beta1, mi, omb1 * ge);
            vi = MathF.FusedMultiplyAdd(beta2, vi, omb2 * ge * ge);
            float denom = MathF.FusedMultiplyAdd(MathF.Sqrt(vi), invSqrtBc2, eps);
            wi = MathF.FusedMultiplyAdd(negStep, mi / denom, keep * wi);
        }
    }

    /// <summary>The vector part of <see cref="Adam(Span{float}, ReadOnlySpan{float}, Span{float}, Span{float}, float, float, float, float, float, float, float, float)"/> at one width; returns where the scalar tail starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Adam<TV, TS>(ref float wr, ref float gr, ref float mr, ref float vr, float s, float l2,
        float negStep, float beta1, float beta2, float invSqrtBc2, float eps, float keep, int n)
        where TV : struct where TS : IVectorOps<float, TV>
    {
        TV sv = TS.Create(s), l2v = TS.Create(l2), ns = TS.Create(negStep);
        TV b1 = TS.Create(beta1), b2 = TS.Create(beta2), o1 = TS.Create(1f - beta1), o2 = TS.Create(1f - beta2);
        TV ibc = TS.Create(invSqrtBc2), ev = TS.Create(eps), kv = TS.Create(keep);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
        {
            var wv = TS.Load(ref wr, i);
            var ge = TS.FusedMultiplyAdd(TS.Load(ref gr, i), sv, TS.Multiply(l2v, wv));
            var mv = TS.FusedMultiplyAdd(b1, TS.Load(ref mr, i), TS.Multiply(o1, ge));
            var vv = TS.FusedMultiplyAdd(b2, TS.Load(ref vr, i), TS.Multiply(TS.Multiply(o2, ge), ge));
            TS.Store(mv, ref mr, i);
            TS.Store(vv, ref vr, i);
            var denom = TS.FusedMultiplyAdd(TS.Sqrt(vv), ibc, ev);
            TS.Store(TS.FusedMultiplyAdd(ns, TS.Divide(mv, denom), TS.Multiply(kv, wv)), ref wr, i);
        }
        return i;
    }

    /// <summary>Adagrad: a ← a + ĝ²; w ← keep·w − lr · ĝ / (√a + ε).</summary>
    public static void Adagrad(Span<float> w, ReadOnlySpan<float> g, Span<float> a, float s, float l2, float lr, float eps, float keep = 1f)
    {
        CheckLengths(w, g, a, w, "Adagrad");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float ar = ref MemoryMarshal.GetReference(a);
        int n = w.Length, i = 0;
        float negLr = -lr;
        if (Vector512.IsHardwareAccelerated) i = Adagrad<Vector512<float>, Vector512Ops<float>>(ref wr, ref gr, ref ar, s, l2, negLr, eps, keep, n);
        else if (Vector256.IsHardwareAccelerated) i = Adagrad<Vector256<float>, Vector256Ops<float>>(ref wr, ref gr, ref ar, s, l2, negLr, eps, keep, n);
        for (; i < n; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            ref float ai = ref Unsafe.Add(ref ar, i);
            float ge = MathF.FusedMultiplyAdd(Unsafe.Add(ref gr, i), s, l2 * wi);
            ai = MathF.FusedMultiplyAdd(ge, ge, ai);
            wi = MathF.FusedMultiplyAdd(negLr, ge / (MathF.Sqrt(ai) + eps), keep * wi);
        }
    }

    /// <summary>The vector part of <see cref="Adagrad(Span{float}, ReadOnlySpan{float}, Span{float}, float, float, float, float, float)"/> at one width; returns where the scalar tail starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Adagrad<TV, TS>(ref float wr, ref float gr, ref float ar, float s, float l2, float negLr, float eps, float keep, int n)
        where TV : struct where TS : IVectorOps<float, TV>
    {
        TV sv = TS.Create(s), l2v = TS.Create(l2), nl = TS.Create(negLr), ev = TS.Create(eps), kv = TS.Create(keep);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
        {
            var wv = TS.Load(ref wr, i);
            var ge = TS.FusedMultiplyAdd(TS.Load(ref gr, i), sv, TS.Multiply(l2v, wv));
            var av = TS.FusedMultiplyAdd(ge, ge, TS.Load(ref ar, i));
            TS.Store(av, ref ar, i);
            TS.Store(TS.FusedMultiplyAdd(nl, TS.Divide(ge, TS.Add(TS.Sqrt(av), ev)), TS.Multiply(kv, wv)), ref wr, i);
        }
        return i;
    }

    /// <summary>
    /// FTRL-Proximal per coordinate (McMahan et al., KDD 2013, Algorithm 1) with the gradient ĝ = s·g:
    /// σ = (√(n + ĝ²) − √n)/α; z ← z + ĝ − σ·w; n ← n + ĝ²; then w from (z, n) as in <see cref="FtrlWeights"/>.
    /// </summary>
    public static void Ftrl(Span<float> w, ReadOnlySpan<float> g, Span<float> z, Span<float> n, float s, float invAlpha, float beta, float l1, float l2)
    {
        CheckLengths(w, g, z, n, "Ftrl");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float zr = ref MemoryMarshal.GetReference(z);
        ref float nr = ref MemoryMarshal.GetReference(n);
        int len = w.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            i = Ftrl<Vector512<float>, Vector512Ops<float>>(ref wr, ref gr, ref zr, ref nr, s, invAlpha, beta, l1, l2, len);
        else if (Vector256.IsHardwareAccelerated)
            i = Ftrl<Vector256<float>, Vector256Ops<float>>(ref wr, ref gr, ref zr, ref nr, s, invAlpha, beta, l1, l2, len);
        for (; i < len; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            ref float zi = ref Unsafe.Add(ref zr, i);
            ref float ni = ref Unsafe.Add(ref nr, i);
            float gi = Unsafe.Add(ref gr, i) * s;
            float nNew = MathF.FusedMultiplyAdd(gi, gi, ni);
            float sqNew = MathF.Sqrt(nNew);
            float sigma = (sqNew - MathF.Sqrt(ni)) * invAlpha;
            zi = MathF.FusedMultiplyAdd(-sigma, wi, zi + gi);
            ni = nNew;
            float den = MathF.FusedMultiplyAdd(beta + sqNew, invAlpha, l2);
            wi = MathF.Abs(zi) <= l1 ? 0f : -((zi - MathF.CopySign(l1, zi)) / den);
        }
    }

    /// <summary>The vector part of <see cref="Ftrl(Span{float}, ReadOnlySpan{float}, Span{float}, Span{float}, float, float, float, float, float)"/> at one width; returns where the scalar tail starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Ftrl<TV, TS>(ref float wr, ref float gr, ref float zr, ref float nr, float s, float invAlpha, float beta, float l1, float l2, int len)
        where TV : struct where TS : IVectorOps<float, TV>
    {
        TV sv = TS.Create(s), ia = TS.Create(invAlpha), bv = TS.Create(beta), l1v = TS.Create(l1), l2v = TS.Create(l2);
        int i = 0;
        for (; i <= len - TS.Count; i += TS.Count)
        {
            var gi = TS.Multiply(TS.Load(ref gr, i), sv);
            var nOld = TS.Load(ref nr, i);
            var nNew = TS.FusedMultiplyAdd(gi, gi, nOld);
            var sqNew = TS.Sqrt(nNew);
            var sigma = TS.Multiply(TS.Subtract(sqNew, TS.Sqrt(nOld)), ia);
            var zNew = TS.FusedMultiplyAdd(TS.Negate(sigma), TS.Load(ref wr, i), TS.Add(TS.Load(ref zr, i), gi));
            TS.Store(zNew, ref zr, i);
            TS.Store(nNew, ref nr, i);
            var den = TS.FusedMultiplyAdd(TS.Add(bv, sqNew), ia, l2v);
            var wNew = TS.Negate(TS.Divide(TS.Subtract(zNew, TS.CopySign(l1v, zNew)), den));
            // |z| ≤ λ1 → exactly 0 (the L1 prox); else the closed form
            TS.Store(TS.ConditionalSelect(TS.LessThanOrEqual(TS.Abs(zNew), l1v), TS.Zero, wNew), ref wr, i);
        }
        return i;
    }

    /// <summary>FTRL-Proximal's weights from its state: w = 0 if |z| ≤ λ1, else −(z − sgn(z)·λ1) / ((β + √n)/α + λ2).</summary>
    public static void FtrlWeights(Span<float> w, ReadOnlySpan<float> z, ReadOnlySpan<float> n, float invAlpha, float beta, float l1, float l2)
    {
        CheckLengths(w, z, n, w, "FtrlWeights");
        for (int i = 0; i < w.Length; i++)
        {
            float den = MathF.FusedMultiplyAdd(beta + MathF.Sqrt(n[i]), invAlpha, l2);
            w[i] = MathF.Abs(z[i]) <= l1 ? 0f : -((z[i] - MathF.CopySign(l1, z[i])) / den);
        }
    }

    /// <summary>
    /// Σ x² with a fixed summation order (16 float lanes from index 0, reduced lane by lane in double, then the
    /// tail). TensorPrimitives.SumOfSquares may block its loop by the buffer's memory alignment; here the result
    /// depends only on the values — so a sparse row's contribution is the same wherever its slot lies. Vector512
    /// is used even where it is not hardware-accelerated (the JIT emulates it with narrower vectors), so the
    /// summation order, and the norm, are the same on every machine.
    /// </summary>
    public static double SumOfSquares(ReadOnlySpan<float> x)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        double total = 0;
        if (n >= Vector512<float>.Count)
        {
            var acc = Vector512<float>.Zero;
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.LoadUnsafe(ref xr, (nuint)i);
                acc = Vector512.FusedMultiplyAdd(v, v, acc);
            }
            for (int lane = 0; lane < Vector512<float>.Count; lane++) total += acc.GetElement(lane);
        }
        for (; i < n; i++)
        {
            double v = Unsafe.Add(ref xr, i);
            total += v * v;
        }
        return total;
    }

    private static void CheckLengths(ReadOnlySpan<float> w, ReadOnlySpan<float> g, ReadOnlySpan<float> s1, ReadOnlySpan<float> s2, string kernel)
    {
        if (g.Length != w.Length || s1.Length != w.Length || s2.Length != w.Length)
            throw new ArgumentException(
                $"{kernel} update: weights ({w.Length}), gradient ({g.Length}) and state ({s1.Length}, {s2.Length}) lengths differ.");
    }
}
