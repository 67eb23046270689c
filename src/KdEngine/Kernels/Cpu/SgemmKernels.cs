using System.Runtime.CompilerServices;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// Register-blocked SGEMM kernels, written once over <see cref="ISimdF32{TV}"/> (W = vector width in floats:
/// 16 for Vector512, 8 for Vector256). All of them accumulate each C element as one FMA chain over k in
/// ascending order starting from zero, then merge it into C with the same formula (see <see cref="Merge"/>),
/// so which kernel or which thread computes an element never changes its bits.
/// </summary>
/// <remarks>
/// Merge modes: 0 = C ← alpha·acc (beta == 0: old C, even NaN, is never read); 1 = C ← fma(acc, alpha, C);
/// 2 = C ← fma(acc, alpha, beta·C); 3 = C ← acc (raw, into a scratch tile that the caller merges itself).
/// </remarks>
internal static unsafe class SgemmKernels
{
    public const int MR = 6; // rows per register tile: 6 rows × 2 vectors = 12 accumulators (+2 B, +1 broadcast)

    public const int Overwrite = 0, Accumulate = 1, Scale = 2, Raw = 3;

    /// <summary>Benchmark hook: prefetch the C tile before a 12-row tile runs (default on).</summary>
    internal static bool PrefetchC = true;

    /// <summary>
    /// Asks for the C tile's lines before the k loop: the merge after the loop would otherwise wait on C lines
    /// that a K slice ago were evicted to L3 (1024×400 floats of C do not fit the 1 MiB L2), ~100 cycles per tile.
    /// Called by the driver, not inside the kernel, so that the kernel's register allocation stays clean.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchTile(float* c, nint ldc, int rows, nint cols)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        for (int r = 0; r < rows; r++)
        {
            float* row = c + r * ldc;
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(row);
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(row + cols - 1);
        }
    }

    public static int FirstMode(float beta) => beta == 0f ? Overwrite : beta == 1f ? Accumulate : Scale;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Merge(float acc, float old, int mode, float alpha, float beta) => mode switch
    {
        Overwrite => acc * alpha,
        Accumulate => MathF.FusedMultiplyAdd(acc, alpha, old),
        Scale => MathF.FusedMultiplyAdd(acc, alpha, old * beta),
        _ => acc,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<TS, TV>(float* c, TV acc, int mode, TV va, TV vb)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        switch (mode)
        {
            case Overwrite: TS.Store(c, TS.Mul(acc, va)); break;
            case Accumulate: TS.Store(c, TS.Fma(acc, va, TS.Load(c))); break;
            case Scale: TS.Store(c, TS.Fma(acc, va, TS.Mul(TS.Load(c), vb))); break;
            default: TS.Store(c, acc); break;
        }
    }

    /// <summary>
    /// C[rows, 2W] (op) A[rows, kc] · B[kc, 2W]. A element (r, p) is at a[r·ars + p·aps] — a packed panel
    /// ([kc][6]: ars = 1, aps = 6) or the caller's matrix directly (row-major: ars = k, aps = 1; transposed:
    /// ars = 1, aps = m). B row p is the 2W floats at b + p·ldb. Rows ≥ <paramref name="rows"/> reuse the last
    /// valid row's address (so nothing out of range is read) and are not stored.
    /// </summary>
    public static void Tile6x2<TS, TV>(int kc, float* a, nint ars, nint aps, int rows, float* b, nint ldb,
        float* c, nint ldc, int mode, float alpha, float beta)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        nint w = TS.Width;
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * ars, a2 = a + Math.Min(2, rows - 1) * ars;
        float* a3 = a + Math.Min(3, rows - 1) * ars, a4 = a + Math.Min(4, rows - 1) * ars, a5 = a + Math.Min(5, rows - 1) * ars;
        TV c00 = TS.Zero, c01 = TS.Zero, c10 = TS.Zero, c11 = TS.Zero, c20 = TS.Zero, c21 = TS.Zero;
        TV c30 = TS.Zero, c31 = TS.Zero, c40 = TS.Zero, c41 = TS.Zero, c50 = TS.Zero, c51 = TS.Zero;
        nint pa = 0;
        float* bp = b;
        for (int p = 0; p < kc; p++, pa += aps, bp += ldb)
        {
            TV b0 = TS.Load(bp), b1 = TS.Load(bp + w);
            TV x = TS.Broadcast(a0[pa]); c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01);
            x = TS.Broadcast(a1[pa]); c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11);
            x = TS.Broadcast(a2[pa]); c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21);
            x = TS.Broadcast(a3[pa]); c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31);
            x = TS.Broadcast(a4[pa]); c40 = TS.Fma(x, b0, c40); c41 = TS.Fma(x, b1, c41);
            x = TS.Broadcast(a5[pa]); c50 = TS.Fma(x, b0, c50); c51 = TS.Fma(x, b1, c51);
        }
        TV va = TS.Broadcast(alpha), vb = TS.Broadcast(beta);
        Put<TS, TV>(c, c00, mode, va, vb); Put<TS, TV>(c + w, c01, mode, va, vb);
        if (rows > 1) { Put<TS, TV>(c + ldc, c10, mode, va, vb); Put<TS, TV>(c + ldc + w, c11, mode, va, vb); }
        if (rows > 2) { Put<TS, TV>(c + 2 * ldc, c20, mode, va, vb); Put<TS, TV>(c + 2 * ldc + w, c21, mode, va, vb); }
        if (rows > 3) { Put<TS, TV>(c + 3 * ldc, c30, mode, va, vb); Put<TS, TV>(c + 3 * ldc + w, c31, mode, va, vb); }
        if (rows > 4) { Put<TS, TV>(c + 4 * ldc, c40, mode, va, vb); Put<TS, TV>(c + 4 * ldc + w, c41, mode, va, vb); }
        if (rows > 5) { Put<TS, TV>(c + 5 * ldc, c50, mode, va, vb); Put<TS, TV>(c + 5 * ldc + w, c51, mode, va, vb); }
    }

    /// <summary>As <see cref="Tile6x2{TS,TV}"/> for one vector of columns (the ≤ W-wide edge of a panel).</summary>
    public static void Tile6x1<TS, TV>(int kc, float* a, nint ars, nint aps, int rows, float* b, nint ldb,
        float* c, nint ldc, int mode, float alpha, float beta)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * ars, a2 = a + Math.Min(2, rows - 1) * ars;
        float* a3 = a + Math.Min(3, rows - 1) * ars, a4 = a + Math.Min(4, rows - 1) * ars, a5 = a + Math.Min(5, rows - 1) * ars;
        TV c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero, c4 = TS.Zero, c5 = TS.Zero;
        nint pa = 0;
        float* bp = b;
        for (int p = 0; p < kc; p++, pa += aps, bp += ldb)
        {
            TV b0 = TS.Load(bp);
            c0 = TS.Fma(TS.Broadcast(a0[pa]), b0, c0);
            c1 = TS.Fma(TS.Broadcast(a1[pa]), b0, c1);
            c2 = TS.Fma(TS.Broadcast(a2[pa]), b0, c2);
            c3 = TS.Fma(TS.Broadcast(a3[pa]), b0, c3);
            c4 = TS.Fma(TS.Broadcast(a4[pa]), b0, c4);
            c5 = TS.Fma(TS.Broadcast(a5[pa]), b0, c5);
        }
        TV va = TS.Broadcast(alpha), vb = TS.Broadcast(beta);
        Put<TS, TV>(c, c0, mode, va, vb);
        if (rows > 1) Put<TS, TV>(c + ldc, c1, mode, va, vb);
        if (rows > 2) Put<TS, TV>(c + 2 * ldc, c2, mode, va, vb);
        if (rows > 3) Put<TS, TV>(c + 3 * ldc, c3, mode, va, vb);
        if (rows > 4) Put<TS, TV>(c + 4 * ldc, c4, mode, va, vb);
        if (rows > 5) Put<TS, TV>(c + 5 * ldc, c5, mode, va, vb);
    }

    /// <summary>
    /// The AVX-512 micro-kernel: C[12, 2W] = (or +=) A[12, kc] · B[kc, 2W]. A element (r, p) is at a[r·ars + p·aps]:
    /// a packed panel ([kc][12]: ars = 1, aps = 12), or the caller's matrix read in place (row-major: ars = k,
    /// aps = 1; transposed: ars = 1, aps = m). B row p is the 2W floats at b + p·ldb. All 12 rows are computed and
    /// stored: a caller with fewer rows, or with a merge other than "store" / "add" (alpha ≠ 1, beta ∉ {0, 1}),
    /// points <paramref name="c"/> at a scratch tile and merges it itself (<see cref="IsPlainMerge"/>).
    /// </summary>
    /// <remarks>
    /// Register budget: 24 accumulators + 2 B vectors + 1 broadcast = 27 of the 32 zmm registers; per k step 2 vector
    /// loads and 12 broadcasts feed 24 FMAs (FMA-bound). Rows are reached from three base pointers (rows 0, 4, 8) plus
    /// 0/1/2/3 row strides, so the loop needs 10 general registers. The epilogue is deliberately two straight-line
    /// forms: with the general merge (24 inlined mode switches over c, ldc, rows, alpha, beta) the JIT kept those
    /// values in registers and spilled the loop's row pointers instead — 7 stack round trips per k step, measured
    /// 8–10 % of the kernel's time on 1024×624·624×400.
    /// </remarks>
    public static void Tile12x2<TS, TV>(int kc, float* a, nint ars, nint aps, float* b, nint ldb,
        float* c, nint ldc, bool accumulate)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        nint w = TS.Width;
        float* a0 = a, a4 = a + 4 * ars, a8 = a + 8 * ars;
        nint s1 = ars, s2 = 2 * ars, s3 = 3 * ars;
        TV c00 = TS.Zero, c01 = TS.Zero, c10 = TS.Zero, c11 = TS.Zero, c20 = TS.Zero, c21 = TS.Zero, c30 = TS.Zero, c31 = TS.Zero, c40 = TS.Zero, c41 = TS.Zero, c50 = TS.Zero, c51 = TS.Zero;
        TV c60 = TS.Zero, c61 = TS.Zero, c70 = TS.Zero, c71 = TS.Zero, c80 = TS.Zero, c81 = TS.Zero, c90 = TS.Zero, c91 = TS.Zero, c100 = TS.Zero, c101 = TS.Zero, c110 = TS.Zero, c111 = TS.Zero;
        for (int p = 0; p < kc; p++, a0 += aps, a4 += aps, a8 += aps, b += ldb)
        {
            TV b0 = TS.Load(b), b1 = TS.Load(b + w);
            TV x = TS.Broadcast(a0[0]); c00 = TS.Fma(x, b0, c00); c01 = TS.Fma(x, b1, c01);
            x = TS.Broadcast(a0[s1]); c10 = TS.Fma(x, b0, c10); c11 = TS.Fma(x, b1, c11);
            x = TS.Broadcast(a0[s2]); c20 = TS.Fma(x, b0, c20); c21 = TS.Fma(x, b1, c21);
            x = TS.Broadcast(a0[s3]); c30 = TS.Fma(x, b0, c30); c31 = TS.Fma(x, b1, c31);
            x = TS.Broadcast(a4[0]); c40 = TS.Fma(x, b0, c40); c41 = TS.Fma(x, b1, c41);
            x = TS.Broadcast(a4[s1]); c50 = TS.Fma(x, b0, c50); c51 = TS.Fma(x, b1, c51);
            x = TS.Broadcast(a4[s2]); c60 = TS.Fma(x, b0, c60); c61 = TS.Fma(x, b1, c61);
            x = TS.Broadcast(a4[s3]); c70 = TS.Fma(x, b0, c70); c71 = TS.Fma(x, b1, c71);
            x = TS.Broadcast(a8[0]); c80 = TS.Fma(x, b0, c80); c81 = TS.Fma(x, b1, c81);
            x = TS.Broadcast(a8[s1]); c90 = TS.Fma(x, b0, c90); c91 = TS.Fma(x, b1, c91);
            x = TS.Broadcast(a8[s2]); c100 = TS.Fma(x, b0, c100); c101 = TS.Fma(x, b1, c101);
            x = TS.Broadcast(a8[s3]); c110 = TS.Fma(x, b0, c110); c111 = TS.Fma(x, b1, c111);
        }
        if (accumulate)
        {
            TS.Store(c, TS.Add(c00, TS.Load(c))); TS.Store(c + w, TS.Add(c01, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c10, TS.Load(c))); TS.Store(c + w, TS.Add(c11, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c20, TS.Load(c))); TS.Store(c + w, TS.Add(c21, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c30, TS.Load(c))); TS.Store(c + w, TS.Add(c31, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c40, TS.Load(c))); TS.Store(c + w, TS.Add(c41, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c50, TS.Load(c))); TS.Store(c + w, TS.Add(c51, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c60, TS.Load(c))); TS.Store(c + w, TS.Add(c61, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c70, TS.Load(c))); TS.Store(c + w, TS.Add(c71, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c80, TS.Load(c))); TS.Store(c + w, TS.Add(c81, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c90, TS.Load(c))); TS.Store(c + w, TS.Add(c91, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c100, TS.Load(c))); TS.Store(c + w, TS.Add(c101, TS.Load(c + w))); c += ldc;
            TS.Store(c, TS.Add(c110, TS.Load(c))); TS.Store(c + w, TS.Add(c111, TS.Load(c + w))); c += ldc;
        }
        else
        {
            TS.Store(c, c00); TS.Store(c + w, c01); c += ldc;
            TS.Store(c, c10); TS.Store(c + w, c11); c += ldc;
            TS.Store(c, c20); TS.Store(c + w, c21); c += ldc;
            TS.Store(c, c30); TS.Store(c + w, c31); c += ldc;
            TS.Store(c, c40); TS.Store(c + w, c41); c += ldc;
            TS.Store(c, c50); TS.Store(c + w, c51); c += ldc;
            TS.Store(c, c60); TS.Store(c + w, c61); c += ldc;
            TS.Store(c, c70); TS.Store(c + w, c71); c += ldc;
            TS.Store(c, c80); TS.Store(c + w, c81); c += ldc;
            TS.Store(c, c90); TS.Store(c + w, c91); c += ldc;
            TS.Store(c, c100); TS.Store(c + w, c101); c += ldc;
            TS.Store(c, c110); TS.Store(c + w, c111); c += ldc;
        }
    }

    /// <summary>As <see cref="Tile12x2{TS,TV}"/> for one vector of columns (the W-wide edge of a panel).</summary>
    public static void Tile12x1<TS, TV>(int kc, float* a, nint ars, nint aps, float* b, nint ldb,
        float* c, nint ldc, bool accumulate)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        float* a0 = a, a4 = a + 4 * ars, a8 = a + 8 * ars;
        nint s1 = ars, s2 = 2 * ars, s3 = 3 * ars;
        TV c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero, c4 = TS.Zero, c5 = TS.Zero, c6 = TS.Zero, c7 = TS.Zero, c8 = TS.Zero, c9 = TS.Zero, c10 = TS.Zero, c11 = TS.Zero;
        for (int p = 0; p < kc; p++, a0 += aps, a4 += aps, a8 += aps, b += ldb)
        {
            TV b0 = TS.Load(b);
            c0 = TS.Fma(TS.Broadcast(a0[0]), b0, c0);
            c1 = TS.Fma(TS.Broadcast(a0[s1]), b0, c1);
            c2 = TS.Fma(TS.Broadcast(a0[s2]), b0, c2);
            c3 = TS.Fma(TS.Broadcast(a0[s3]), b0, c3);
            c4 = TS.Fma(TS.Broadcast(a4[0]), b0, c4);
            c5 = TS.Fma(TS.Broadcast(a4[s1]), b0, c5);
            c6 = TS.Fma(TS.Broadcast(a4[s2]), b0, c6);
            c7 = TS.Fma(TS.Broadcast(a4[s3]), b0, c7);
            c8 = TS.Fma(TS.Broadcast(a8[0]), b0, c8);
            c9 = TS.Fma(TS.Broadcast(a8[s1]), b0, c9);
            c10 = TS.Fma(TS.Broadcast(a8[s2]), b0, c10);
            c11 = TS.Fma(TS.Broadcast(a8[s3]), b0, c11);
        }
        if (accumulate)
        {
            TS.Store(c, TS.Add(c0, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c1, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c2, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c3, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c4, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c5, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c6, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c7, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c8, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c9, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c10, TS.Load(c))); c += ldc;
            TS.Store(c, TS.Add(c11, TS.Load(c))); c += ldc;
        }
        else
        {
            TS.Store(c, c0); c += ldc;
            TS.Store(c, c1); c += ldc;
            TS.Store(c, c2); c += ldc;
            TS.Store(c, c3); c += ldc;
            TS.Store(c, c4); c += ldc;
            TS.Store(c, c5); c += ldc;
            TS.Store(c, c6); c += ldc;
            TS.Store(c, c7); c += ldc;
            TS.Store(c, c8); c += ldc;
            TS.Store(c, c9); c += ldc;
            TS.Store(c, c10); c += ldc;
            TS.Store(c, c11); c += ldc;
        }
    }

    /// <summary>
    /// Whether a 12-row kernel may write C directly: the merge is a plain store (Overwrite) or add (Accumulate)
    /// with alpha = 1 — fma(acc, 1, C) and acc·1 round exactly as acc + C and acc do, so the bits match the
    /// general <see cref="Merge"/>. Otherwise the caller runs the kernel into a scratch tile and merges that.
    /// </summary>
    public static bool IsPlainMerge(int mode, float alpha) => alpha == 1f && (mode == Overwrite || mode == Accumulate);

    /// <summary>
    /// Dot-product tile for B stored transposed ([n, k]) and few rows: C[i, j] = Σ_p A[i, p]·B[j, p] for up to
    /// 4 rows × 4 columns, vectors along k (both operands contiguous there), k tail in scalar FMA after the
    /// horizontal sum. Rows/columns past <paramref name="rows"/>/<paramref name="cols"/> reuse the last valid
    /// address and are not stored.
    /// </summary>
    public static void Dot4x4<TS, TV>(int k, float* a, nint lda, int rows, float* b, nint ldb, int cols,
        float* c, nint ldc, int mode, float alpha, float beta)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        int w = TS.Width;
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * lda, a2 = a + Math.Min(2, rows - 1) * lda, a3 = a + Math.Min(3, rows - 1) * lda;
        float* b0 = b, b1 = b + Math.Min(1, cols - 1) * ldb, b2 = b + Math.Min(2, cols - 1) * ldb, b3 = b + Math.Min(3, cols - 1) * ldb;
        TV s00 = TS.Zero, s01 = TS.Zero, s02 = TS.Zero, s03 = TS.Zero, s10 = TS.Zero, s11 = TS.Zero, s12 = TS.Zero, s13 = TS.Zero;
        TV s20 = TS.Zero, s21 = TS.Zero, s22 = TS.Zero, s23 = TS.Zero, s30 = TS.Zero, s31 = TS.Zero, s32 = TS.Zero, s33 = TS.Zero;
        int p = 0;
        for (; p <= k - w; p += w)
        {
            TV y0 = TS.Load(b0 + p), y1 = TS.Load(b1 + p), y2 = TS.Load(b2 + p), y3 = TS.Load(b3 + p);
            TV x = TS.Load(a0 + p);
            s00 = TS.Fma(x, y0, s00); s01 = TS.Fma(x, y1, s01); s02 = TS.Fma(x, y2, s02); s03 = TS.Fma(x, y3, s03);
            x = TS.Load(a1 + p);
            s10 = TS.Fma(x, y0, s10); s11 = TS.Fma(x, y1, s11); s12 = TS.Fma(x, y2, s12); s13 = TS.Fma(x, y3, s13);
            x = TS.Load(a2 + p);
            s20 = TS.Fma(x, y0, s20); s21 = TS.Fma(x, y1, s21); s22 = TS.Fma(x, y2, s22); s23 = TS.Fma(x, y3, s23);
            x = TS.Load(a3 + p);
            s30 = TS.Fma(x, y0, s30); s31 = TS.Fma(x, y1, s31); s32 = TS.Fma(x, y2, s32); s33 = TS.Fma(x, y3, s33);
        }
        float* row0 = stackalloc float[16];
        row0[0] = TS.Sum(s00); row0[1] = TS.Sum(s01); row0[2] = TS.Sum(s02); row0[3] = TS.Sum(s03);
        row0[4] = TS.Sum(s10); row0[5] = TS.Sum(s11); row0[6] = TS.Sum(s12); row0[7] = TS.Sum(s13);
        row0[8] = TS.Sum(s20); row0[9] = TS.Sum(s21); row0[10] = TS.Sum(s22); row0[11] = TS.Sum(s23);
        row0[12] = TS.Sum(s30); row0[13] = TS.Sum(s31); row0[14] = TS.Sum(s32); row0[15] = TS.Sum(s33);
        float** ar = stackalloc float*[4] { a0, a1, a2, a3 };
        float** br = stackalloc float*[4] { b0, b1, b2, b3 };
        for (int r = 0; r < rows; r++)
        for (int q = 0; q < cols; q++)
        {
            float s = row0[r * 4 + q];
            for (int t = p; t < k; t++) s = MathF.FusedMultiplyAdd(ar[r][t], br[q][t], s);
            float* dst = c + r * ldc + q;
            *dst = Merge(s, mode == Overwrite ? 0f : *dst, mode, alpha, beta);
        }
    }

    /// <summary>
    /// One output row, B row-major (axpy form): C[0, j] = Σ_p A[p]·B[p, j], A element p at a[p·aps]. B is streamed
    /// row after row, front to back — the order the hardware prefetcher follows best — into an accumulator row
    /// <paramref name="acc"/> [n] in L1, then merged into C. Column blocks held in registers would walk B's rows at a
    /// stride instead (measured 38 vs 32 µs for 624 × 400 in sgemm-probe). Each element is still one FMA chain over k
    /// in ascending order from zero, as in every other kernel.
    /// </summary>
    public static void Row1<TS, TV>(int k, float* a, nint aps, float* b, nint ldb, int n,
        float* c, float* acc, int mode, float alpha, float beta)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        int w = TS.Width;
        new Span<float>(acc, n).Clear();
        int nv = n - n % w;
        for (int p = 0; p < k; p++, a += aps, b += ldb)
        {
            TV x = TS.Broadcast(*a);
            int j = 0;
            for (; j <= nv - 4 * w; j += 4 * w)
            {
                TS.Store(acc + j, TS.Fma(x, TS.Load(b + j), TS.Load(acc + j)));
                TS.Store(acc + j + w, TS.Fma(x, TS.Load(b + j + w), TS.Load(acc + j + w)));
                TS.Store(acc + j + 2 * w, TS.Fma(x, TS.Load(b + j + 2 * w), TS.Load(acc + j + 2 * w)));
                TS.Store(acc + j + 3 * w, TS.Fma(x, TS.Load(b + j + 3 * w), TS.Load(acc + j + 3 * w)));
            }
            for (; j < nv; j += w) TS.Store(acc + j, TS.Fma(x, TS.Load(b + j), TS.Load(acc + j)));
            for (; j < n; j++) acc[j] = MathF.FusedMultiplyAdd(*a, b[j], acc[j]);
        }
        TV va = TS.Broadcast(alpha), vb = TS.Broadcast(beta);
        int q = 0;
        for (; q < nv; q += w) Put<TS, TV>(c + q, TS.Load(acc + q), mode, va, vb);
        for (; q < n; q++) c[q] = Merge(acc[q], mode == Overwrite ? 0f : c[q], mode, alpha, beta);
    }
}
