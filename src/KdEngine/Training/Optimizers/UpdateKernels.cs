using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KdEngine.Training;

/// <summary>
/// Fused, in-place parameter-update loops: one pass over weights, gradient and optimizer state per call,
/// Vector512 where the hardware has it, Vector256 otherwise, then a scalar tail. A call covers one contiguous
/// block — a whole dense parameter or one touched row of an embedding table.
/// </summary>
/// <remarks>
/// Every kernel first forms the effective gradient ĝ = s·g + λ·w (s = the clipping scale, λ = the L2 coefficient), and
/// scales the weights by keep = 1 − lr·δ (decoupled weight decay δ; keep = 1 leaves them bit-for-bit) before the step.
/// The vector body and the scalar tail use the same operations in the same order with fused multiply-adds
/// (Vector512/Vector256.FusedMultiplyAdd ≡ MathF.FusedMultiplyAdd; Sqrt and division are correctly rounded
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
        if (Vector512.IsHardwareAccelerated)
        {
            var sv = Vector512.Create(s); var l2v = Vector512.Create(l2); var nl = Vector512.Create(negLr); var kv = Vector512.Create(keep);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var wv = Vector512.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                Vector512.FusedMultiplyAdd(nl, ge, kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s); var l2v = Vector256.Create(l2); var nl = Vector256.Create(negLr); var kv = Vector256.Create(keep);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var wv = Vector256.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                Vector256.FusedMultiplyAdd(nl, ge, kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            float ge = MathF.FusedMultiplyAdd(Unsafe.Add(ref gr, i), s, l2 * wi);
            wi = MathF.FusedMultiplyAdd(negLr, ge, keep * wi);
        }
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
        {
            var sv = Vector512.Create(s); var l2v = Vector512.Create(l2); var nl = Vector512.Create(negLr); var mv = Vector512.Create(mu); var kv = Vector512.Create(keep);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var wv = Vector512.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                var bv = Vector512.FusedMultiplyAdd(mv, Vector512.LoadUnsafe(ref br, (nuint)i), ge);
                bv.StoreUnsafe(ref br, (nuint)i);
                var d = nesterov ? Vector512.FusedMultiplyAdd(mv, bv, ge) : bv;
                Vector512.FusedMultiplyAdd(nl, d, kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s); var l2v = Vector256.Create(l2); var nl = Vector256.Create(negLr); var mv = Vector256.Create(mu); var kv = Vector256.Create(keep);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var wv = Vector256.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                var bv = Vector256.FusedMultiplyAdd(mv, Vector256.LoadUnsafe(ref br, (nuint)i), ge);
                bv.StoreUnsafe(ref br, (nuint)i);
                var d = nesterov ? Vector256.FusedMultiplyAdd(mv, bv, ge) : bv;
                Vector256.FusedMultiplyAdd(nl, d, kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
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
        {
            var sv = Vector512.Create(s); var l2v = Vector512.Create(l2); var ns = Vector512.Create(negStep);
            var b1 = Vector512.Create(beta1); var b2 = Vector512.Create(beta2); var o1 = Vector512.Create(omb1); var o2 = Vector512.Create(omb2);
            var ibc = Vector512.Create(invSqrtBc2); var ev = Vector512.Create(eps); var kv = Vector512.Create(keep);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var wv = Vector512.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                var mv = Vector512.FusedMultiplyAdd(b1, Vector512.LoadUnsafe(ref mr, (nuint)i), o1 * ge);
                var vv = Vector512.FusedMultiplyAdd(b2, Vector512.LoadUnsafe(ref vr, (nuint)i), o2 * ge * ge);
                mv.StoreUnsafe(ref mr, (nuint)i);
                vv.StoreUnsafe(ref vr, (nuint)i);
                var denom = Vector512.FusedMultiplyAdd(Vector512.Sqrt(vv), ibc, ev);
                Vector512.FusedMultiplyAdd(ns, mv / denom, kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s); var l2v = Vector256.Create(l2); var ns = Vector256.Create(negStep);
            var b1 = Vector256.Create(beta1); var b2 = Vector256.Create(beta2); var o1 = Vector256.Create(omb1); var o2 = Vector256.Create(omb2);
            var ibc = Vector256.Create(invSqrtBc2); var ev = Vector256.Create(eps); var kv = Vector256.Create(keep);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var wv = Vector256.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                var mv = Vector256.FusedMultiplyAdd(b1, Vector256.LoadUnsafe(ref mr, (nuint)i), o1 * ge);
                var vv = Vector256.FusedMultiplyAdd(b2, Vector256.LoadUnsafe(ref vr, (nuint)i), o2 * ge * ge);
                mv.StoreUnsafe(ref mr, (nuint)i);
                vv.StoreUnsafe(ref vr, (nuint)i);
                var denom = Vector256.FusedMultiplyAdd(Vector256.Sqrt(vv), ibc, ev);
                Vector256.FusedMultiplyAdd(ns, mv / denom, kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
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

    /// <summary>Adagrad: a ← a + ĝ²; w ← keep·w − lr · ĝ / (√a + ε).</summary>
    public static void Adagrad(Span<float> w, ReadOnlySpan<float> g, Span<float> a, float s, float l2, float lr, float eps, float keep = 1f)
    {
        CheckLengths(w, g, a, w, "Adagrad");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float ar = ref MemoryMarshal.GetReference(a);
        int n = w.Length, i = 0;
        float negLr = -lr;
        if (Vector512.IsHardwareAccelerated)
        {
            var sv = Vector512.Create(s); var l2v = Vector512.Create(l2); var nl = Vector512.Create(negLr); var ev = Vector512.Create(eps); var kv = Vector512.Create(keep);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var wv = Vector512.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                var av = Vector512.FusedMultiplyAdd(ge, ge, Vector512.LoadUnsafe(ref ar, (nuint)i));
                av.StoreUnsafe(ref ar, (nuint)i);
                Vector512.FusedMultiplyAdd(nl, ge / (Vector512.Sqrt(av) + ev), kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s); var l2v = Vector256.Create(l2); var nl = Vector256.Create(negLr); var ev = Vector256.Create(eps); var kv = Vector256.Create(keep);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var wv = Vector256.LoadUnsafe(ref wr, (nuint)i);
                var ge = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref gr, (nuint)i), sv, l2v * wv);
                var av = Vector256.FusedMultiplyAdd(ge, ge, Vector256.LoadUnsafe(ref ar, (nuint)i));
                av.StoreUnsafe(ref ar, (nuint)i);
                Vector256.FusedMultiplyAdd(nl, ge / (Vector256.Sqrt(av) + ev), kv * wv).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            ref float wi = ref Unsafe.Add(ref wr, i);
            ref float ai = ref Unsafe.Add(ref ar, i);
            float ge = MathF.FusedMultiplyAdd(Unsafe.Add(ref gr, i), s, l2 * wi);
            ai = MathF.FusedMultiplyAdd(ge, ge, ai);
            wi = MathF.FusedMultiplyAdd(negLr, ge / (MathF.Sqrt(ai) + eps), keep * wi);
        }
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
        {
            var sv = Vector512.Create(s); var ia = Vector512.Create(invAlpha); var bv = Vector512.Create(beta);
            var l1v = Vector512.Create(l1); var l2v = Vector512.Create(l2);
            for (; i <= len - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var gi = Vector512.LoadUnsafe(ref gr, (nuint)i) * sv;
                var nOld = Vector512.LoadUnsafe(ref nr, (nuint)i);
                var nNew = Vector512.FusedMultiplyAdd(gi, gi, nOld);
                var sqNew = Vector512.Sqrt(nNew);
                var sigma = (sqNew - Vector512.Sqrt(nOld)) * ia;
                var zNew = Vector512.FusedMultiplyAdd(-sigma, Vector512.LoadUnsafe(ref wr, (nuint)i), Vector512.LoadUnsafe(ref zr, (nuint)i) + gi);
                zNew.StoreUnsafe(ref zr, (nuint)i);
                nNew.StoreUnsafe(ref nr, (nuint)i);
                var den = Vector512.FusedMultiplyAdd(bv + sqNew, ia, l2v);
                var wNew = -((zNew - Vector512.CopySign(l1v, zNew)) / den);
                Vector512.ConditionalSelect(Vector512.LessThanOrEqual(Vector512.Abs(zNew), l1v), Vector512<float>.Zero, wNew).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s); var ia = Vector256.Create(invAlpha); var bv = Vector256.Create(beta);
            var l1v = Vector256.Create(l1); var l2v = Vector256.Create(l2);
            for (; i <= len - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var gi = Vector256.LoadUnsafe(ref gr, (nuint)i) * sv;
                var nOld = Vector256.LoadUnsafe(ref nr, (nuint)i);
                var nNew = Vector256.FusedMultiplyAdd(gi, gi, nOld);
                var sqNew = Vector256.Sqrt(nNew);
                var sigma = (sqNew - Vector256.Sqrt(nOld)) * ia;
                var zNew = Vector256.FusedMultiplyAdd(-sigma, Vector256.LoadUnsafe(ref wr, (nuint)i), Vector256.LoadUnsafe(ref zr, (nuint)i) + gi);
                zNew.StoreUnsafe(ref zr, (nuint)i);
                nNew.StoreUnsafe(ref nr, (nuint)i);
                var den = Vector256.FusedMultiplyAdd(bv + sqNew, ia, l2v);
                var wNew = -((zNew - Vector256.CopySign(l1v, zNew)) / den);
                Vector256.ConditionalSelect(Vector256.LessThanOrEqual(Vector256.Abs(zNew), l1v), Vector256<float>.Zero, wNew).StoreUnsafe(ref wr, (nuint)i);
            }
        }
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
